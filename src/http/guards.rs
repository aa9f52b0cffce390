//! Request guards that run before anything else: `Host` / `Origin` checks against DNS rebinding
//! (authorities parsed strictly, duplicate headers refused), the optional bearer tokens
//! (`Bearer` scheme matched case-insensitively, RFC 9110 §11.1) — the single `--token` (admin) or
//! a named `[[auth.tokens]]` entry, matched by SHA-256 — which put the caller's [`Principal`]
//! into the request, and the write gate: in read-only mode, or for a reader token, a request
//! that changes state is answered 403 with a sentence.
//!
//! May import: `crate::mcp::principal` (the caller), `crate::config` (token entries); axum, sha2,
//! std.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::HttpOptions;
use crate::mcp::principal::Principal;
use sha2::Digest;

/// A parsed `host [":" port]` authority (RFC 3986 §3.2.2, without user info).
#[derive(Debug, PartialEq, Eq)]
pub struct Authority {
    /// Lower-cased host; IPv6 literals keep their brackets (`[::1]`).
    pub host: String,
    /// The port, when one was given.
    pub port: Option<u16>,
}

/// Parses `value` as `host[:port]` where host is a registered name (letters, digits, `-._~`),
/// an IPv4 address or a bracketed IPv6 address. Anything else (`[::1]evil.example`, user info,
/// a path, an empty or out-of-range port, a bare IPv6 address) is `None`.
pub fn parse_authority(value: &str) -> Option<Authority> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let end = rest.find(']')?;
        let inner = rest.get(..end)?;
        inner.parse::<std::net::Ipv6Addr>().ok()?;
        let after = rest.get(end + 1..)?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        (format!("[{}]", inner.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match value.split_once(':') {
            None => (value, None),
            Some((h, p)) => (h, Some(parse_port(p)?)),
        };
        let reg_name_char = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        if host.is_empty() || !host.chars().all(reg_name_char) {
            return None;
        }
        (host.to_ascii_lowercase(), port)
    };
    Some(Authority { host, port })
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

/// Parses a serialized origin `scheme "://" host [":" port]` (RFC 6454 §6.2) with scheme http or
/// https; returns the scheme (lower case) and the authority.
pub fn parse_origin(value: &str) -> Option<(String, Authority)> {
    let (scheme, rest) = value.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    Some((scheme, parse_authority(rest)?))
}

/// Loopback host names accepted in a browser `Origin` without configuration.
const LOOPBACK_ORIGIN_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Whether `origin` is one of the configured extra origins or a loopback origin.
pub fn origin_allowed(origin: &str, opts: &HttpOptions) -> bool {
    if opts
        .allowed_origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    parse_origin(origin).is_some_and(|(_, a)| LOOPBACK_ORIGIN_HOSTS.contains(&a.host.as_str()))
}

/// Whether the `Host` value names one of `allowed` (port ignored).
pub fn host_allowed(value: &str, allowed: &[String]) -> bool {
    let Some(a) = parse_authority(value) else {
        return false;
    };
    allowed.iter().any(|h| {
        let h = h.trim();
        h.eq_ignore_ascii_case(&a.host)
            || (a.host.starts_with('[') && h.eq_ignore_ascii_case(a.host.trim_matches(['[', ']'])))
    })
}

/// The token of an `Authorization: Bearer <token>` value, scheme matched case-insensitively.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    (!token.is_empty()).then_some(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": msg}))).into_response()
}

/// The single value of header `name`: `Err` when it is repeated, `Ok(None)` when absent or
/// not visible ASCII.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, ()> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(());
    }
    Ok(first.and_then(|v| v.to_str().ok()))
}

/// The guard middleware: Host, then Origin, then the bearer token (not on `/healthz`).
pub async fn guard_layer(
    State(opts): State<Arc<HttpOptions>>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let host = match single(headers, &header::HOST) {
        Err(()) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "more than one Host header; send exactly one",
            );
        }
        Ok(h) => h.map(str::to_owned).or_else(|| {
            // HTTP/2 and absolute-form requests carry the authority in the URI.
            req.uri().authority().map(|a| a.as_str().to_owned())
        }),
    };
    if !host.is_some_and(|h| host_allowed(&h, &opts.allowed_hosts)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "Host header is not allowed (DNS-rebinding protection); add the host name with --allow-host",
        );
    }
    match single(headers, &header::ORIGIN) {
        Err(()) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "more than one Origin header; send exactly one",
            );
        }
        Ok(None) if headers.contains_key(header::ORIGIN) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "Origin is not allowed; add it with --allow-origin",
            );
        }
        Ok(Some(o)) if !origin_allowed(o, &opts) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "Origin is not allowed; add it with --allow-origin",
            );
        }
        Ok(_) => {}
    }
    let mut req = req;
    if (opts.bearer_token.is_some() || !opts.tokens.is_empty()) && req.uri().path() != "/healthz" {
        let given = single(req.headers(), &header::AUTHORIZATION)
            .ok()
            .flatten()
            .and_then(bearer_token);
        match given.and_then(|t| authenticate(t, &opts)) {
            Some(p) => {
                req.extensions_mut().insert(p);
            }
            None => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    axum::Json(serde_json::json!({"error": "missing or wrong bearer token; send Authorization: Bearer <token>"})),
                )
                    .into_response();
            }
        }
    }
    next.run(req).await
}

/// The principal `token` authenticates as: the single `--token` is admin `admin`; a named
/// token is matched by its SHA-256 (constant-time).
fn authenticate(token: &str, opts: &HttpOptions) -> Option<Principal> {
    if let Some(t) = &opts.bearer_token
        && constant_time_eq(token.as_bytes(), t.as_bytes())
    {
        return Some(Principal::admin("admin"));
    }
    let digest = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    opts.tokens
        .iter()
        .find(|e| {
            constant_time_eq(
                digest.as_bytes(),
                e.token_sha256.to_ascii_lowercase().as_bytes(),
            )
        })
        .map(|e| Principal {
            name: e.name.clone(),
            role: e.role,
        })
}

/// True for the MCP endpoints (they carry JSON-RPC; the MCP handler decides per tool).
fn is_mcp_path(path: &str) -> bool {
    path == "/mcp" || path.starts_with("/mcp/") || path == "/sse" || path == "/message"
}

/// The write gate: a request that changes state (any method but GET, HEAD and OPTIONS, outside
/// the MCP endpoints) is refused with 403 in read-only mode and for a reader token.
pub async fn write_gate(State(read_only): State<bool>, req: Request, next: Next) -> Response {
    let safe = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if safe || is_mcp_path(req.uri().path()) {
        return next.run(req).await;
    }
    let why = if read_only {
        Some("this server runs read-only (--read-only / [server] read_only = true): it serves reads only; make the change on a writable instance".to_string())
    } else {
        req.extensions()
            .get::<Principal>()
            .filter(|p| !p.can_write())
            .map(|p| {
                format!(
                    "token {:?} has role reader and cannot change incidents; use a responder or admin token",
                    p.name
                )
            })
    };
    match why {
        None => next.run(req).await,
        Some(message) if req.uri().path().starts_with("/api/") => (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({"error": {"code": "forbidden", "message": message}})),
        )
            .into_response(),
        Some(message) => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!(
                "<!doctype html><meta charset=utf-8><title>Forbidden</title><p>{}</p><p><a href=\"/\">Back to the dashboard</a></p>",
                message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
            ),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_parse_strictly() {
        let a = |s| parse_authority(s).map(|a| (a.host, a.port));
        assert_eq!(a("localhost:8080"), Some(("localhost".into(), Some(8080))));
        assert_eq!(a("LocalHost"), Some(("localhost".into(), None)));
        assert_eq!(a("[::1]:8080"), Some(("[::1]".into(), Some(8080))));
        assert_eq!(a("[::1]"), Some(("[::1]".into(), None)));
        assert_eq!(a("127.0.0.1"), Some(("127.0.0.1".into(), None)));
        for bad in [
            "[::1]evil.example",
            "[::1]:80evil",
            "[::1]:",
            "[evil.example]",
            "::1",
            "localhost:",
            "localhost:99999",
            "localhost:80:80",
            "user@localhost",
            "localhost/path",
            "local host",
            "",
            "[::1",
        ] {
            assert_eq!(a(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn hosts() {
        let allowed = super::super::loopback_hosts();
        assert!(host_allowed("localhost:8080", &allowed));
        assert!(host_allowed("[::1]:8080", &allowed));
        assert!(host_allowed("127.0.0.1", &allowed));
        assert!(!host_allowed("[::1]evil.example", &allowed));
        assert!(!host_allowed("localhost.evil.example", &allowed));
        assert!(!host_allowed("evil.example", &allowed));
    }

    #[test]
    fn origins() {
        let o = HttpOptions::default();
        assert!(origin_allowed("http://localhost:3000", &o));
        assert!(origin_allowed("http://127.0.0.1", &o));
        assert!(origin_allowed("https://[::1]:8443", &o));
        assert!(!origin_allowed("http://evil.example", &o));
        assert!(!origin_allowed("http://localhost.evil.example:80", &o));
        assert!(!origin_allowed("http://[::1]evil.example", &o));
        assert!(!origin_allowed("http://localhost@evil.example", &o));
        assert!(!origin_allowed("http://localhost:3000/path", &o));
        assert!(!origin_allowed("file://localhost", &o));
        assert!(!origin_allowed("null", &o));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
