#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: an initdb cluster in a temp dir, on a free
# loopback port, password authentication over TCP (so the tests can check refused
# credentials), owned by a non-root user when run as root.
#
# Sourced:   . scripts/pg-test-server.sh; pg_test_start; ...; pg_test_stop
#            (pg_test_start exports AI_INCIDENT_TEST_PG and PG_TEST_DIR)
# Executed:  scripts/pg-test-server.sh start   -> prints `export ...` lines (eval them)
#            scripts/pg-test-server.sh restart DIR [PAUSE]
#            scripts/pg-test-server.sh stop DIR
# Needs the Debian package `postgresql` (binaries in /usr/lib/postgresql/*/bin).

pg_test_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    echo "pg-test-server: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin; apt-get install postgresql" >&2
    return 1
  fi
  echo "$d"
}

pg_test_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Runs a command as the cluster's owner (root may not run the server).
pg_test_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$PG_TEST_OWNER" -- "$@"
  else
    "$@"
  fi
}

pg_test_start() {
  local bindir port dir pw
  bindir=$(pg_test_bindir) || return 1
  port=$(pg_test_free_port) || return 1
  dir=$(mktemp -d /tmp/aim-pg.XXXXXX) || return 1
  pw="aim-test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  PG_TEST_OWNER=${PG_TEST_OWNER:-nobody}
  export PG_TEST_OWNER
  printf '%s\n' "$pw" >"$dir/pwfile"
  if [ "$(id -u)" = 0 ]; then
    chown -R "$PG_TEST_OWNER" "$dir"
  fi
  chmod 700 "$dir"
  pg_test_as_owner "$bindir/initdb" -D "$dir/data" -U aim --pwfile="$dir/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2; return 1; }
  rm -f "$dir/pwfile"
  # fsync off: a test cluster need not survive power loss, and tests run faster.
  echo "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400 -c synchronous_commit=off" >"$dir/options"
  pg_test_as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "$(cat "$dir/options")" start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
  PG_TEST_DIR=$dir
  PG_TEST_BINDIR=$bindir
  AI_INCIDENT_TEST_PG="postgres://aim:${pw}@127.0.0.1:${port}/postgres"
  export PG_TEST_DIR PG_TEST_BINDIR AI_INCIDENT_TEST_PG
}

# Stops the server (fast shutdown: open connections are cut) and starts it again on the same
# port, after PAUSE seconds (default 1).
pg_test_restart() {
  local dir=${1:-${PG_TEST_DIR:-}} pause=${2:-1} bindir
  bindir=${PG_TEST_BINDIR:-$(pg_test_bindir)} || return 1
  PG_TEST_OWNER=${PG_TEST_OWNER:-$(stat -c %U "$dir")}
  pg_test_as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || return 1
  sleep "$pause"
  pg_test_as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "$(cat "$dir/options")" start >/dev/null
}

pg_test_stop() {
  local dir=${1:-${PG_TEST_DIR:-}} bindir
  [ -n "$dir" ] && [ -d "$dir/data" ] || return 0
  bindir=${PG_TEST_BINDIR:-$(pg_test_bindir)} || return 0
  PG_TEST_OWNER=${PG_TEST_OWNER:-$(stat -c %U "$dir")}
  pg_test_as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    start)
      pg_test_start
      echo "export AI_INCIDENT_TEST_PG='$AI_INCIDENT_TEST_PG'"
      echo "export PG_TEST_DIR='$PG_TEST_DIR'"
      echo "# stop with: $0 stop $PG_TEST_DIR"
      ;;
    restart)
      pg_test_restart "${2:?usage: $0 restart DIR [PAUSE]}" "${3:-1}"
      ;;
    stop)
      pg_test_stop "${2:?usage: $0 stop DIR}"
      ;;
    *)
      echo "usage: $0 start | restart DIR [PAUSE] | stop DIR" >&2
      exit 2
      ;;
  esac
fi
