#!/usr/bin/env python3
# usage: python3 scripts/measure_upstream_down.py target/debug/ai-incident-mcp [TRIALS]  (absolute path or relative to the repo)
# Measures the time from a real local HTTP upstream going down (its process killed) to the
# llm_api_failure incident, with the DEFAULT monitor.interval and upstream interval (30 s).
import json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request
BIN = os.path.abspath(sys.argv[1])
TRIALS = int(sys.argv[2]) if len(sys.argv) > 2 else 3

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def trial(i, delay):
    d = tempfile.mkdtemp()
    port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                          cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cfg = os.path.join(d, "c.toml")
    open(cfg, "w").write(f'[[upstreams]]\nname = "llm{i}"\nkind = "http"\nurl = "http://127.0.0.1:{port}/"\n')
    srv = subprocess.Popen([BIN, "--db", os.path.join(d, "s.db"), "--config", cfg, "serve", "--http", "127.0.0.1:0"],
                           cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "AI_INCIDENT_LOG": "info"})
    url = None
    while url is None:
        l = srv.stderr.readline()
        if "listening on " in l:
            url = l.split("listening on ")[1].split()[0]
    return d, up, srv, url, delay, time.monotonic()

def incidents(url):
    with urllib.request.urlopen(f"{url}/api/v1/incidents?limit=50", timeout=5) as r:
        return json.load(r)["incidents"]

# kill each upstream at its own server's start + 31 s + i * 30/TRIALS s: phases spread over one
# probe period (the loop's first pass probes at start, then every 30 s)
runs = [trial(i, 31 + i * 30 / TRIALS) for i in range(TRIALS)]
t_start = time.monotonic()
results = [None] * TRIALS
killed = [None] * TRIALS
while any(r is None for r in results):
    now = time.monotonic()
    for i, (d, up, srv, url, delay, started) in enumerate(runs):
        if killed[i] is None and now - started >= delay:
            up.send_signal(signal.SIGKILL); up.wait(); killed[i] = time.monotonic()
        if killed[i] is not None and results[i] is None:
            if any(x.get("affected_system") == f"llm{i}" or f"llm{i}" in json.dumps(x) for x in incidents(url)):
                results[i] = time.monotonic() - killed[i]
    if time.monotonic() - t_start > 200:
        break
    time.sleep(0.1)
for d, up, srv, url, delay, started in runs:
    srv.terminate(); srv.wait()
    if up.poll() is None: up.kill()
    shutil.rmtree(d, ignore_errors=True)
print(json.dumps({"trials": TRIALS, "kill_after_server_start_s": [round(r[4], 1) for r in runs],
                  "down_to_incident_s": [round(x, 2) if x is not None else None for x in results]}))
