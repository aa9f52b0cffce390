//! The web pages (issue #10): server-rendered HTML, no JavaScript. `/` lists open
//! incidents with their SLA clock, `/incidents/{id}` shows one with its timeline
//! and action forms, `/report-incident` is the manual report form (field errors
//! next to the field, the user's input kept), `/audit` shows the chain check.
//! Each handler parses the form, makes one [`IncidentService`] call and renders;
//! every interpolated value goes through [`esc`]. Form posts must be
//! same-origin (checked from `Origin`, or `Sec-Fetch-Site`), on top of the app's
//! Host/Origin/token guard.
//!
//! May import: `crate::service`, `crate::domain`, `crate::view`, `crate::mcp::principal` (the
//! authenticated caller, recorded as the actor); axum.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

use crate::domain::incident::Incident;
use crate::service::{IncidentService, ListInput, ReportInput, ServiceError, UpdateInput};
use crate::view::IncidentSummary;

/// Who the timeline records for changes made on the page when no token names the caller.
const ACTOR: &str = "web";

type Svc = Arc<IncidentService>;
type Fields = HashMap<String, String>;

/// The page routes, to merge into the app router (behind its guards).
pub fn router<S>(svc: Svc) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(dashboard))
        .route("/report-incident", get(report_form).post(report_submit))
        .route("/incidents/{id}", get(incident_page))
        .route("/incidents/{id}/{action}", post(incident_action))
        .route("/audit", get(audit))
        .with_state(svc)
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Percent-encodes a path segment (ids come from the store, but never trust a string in a URL).
fn url_seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const CSS: &str = "\
*{box-sizing:border-box}body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}\
header{background:#1f2a44;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}\
header a{color:#fff;text-decoration:none;font-weight:600}header nav{display:flex;gap:1rem;flex-wrap:wrap}\
main{max-width:1200px;margin:0 auto;padding:1rem}h1{font-size:1.35rem;margin:.4rem 0 1rem}\
h2{font-size:1.1rem;margin:1.4rem 0 .5rem}.card{background:#fff;border:1px solid #d8dde3;border-radius:6px;padding:1rem;margin-bottom:1rem}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid #e3e6ea;vertical-align:top}th{background:#eef1f4;font-size:.85rem}\
.sev{display:inline-block;padding:0 .45rem;border-radius:3px;font-size:.8rem;font-weight:700;color:#fff}\
.sev-critical{background:#b3261e}.sev-high{background:#d9480f}.sev-medium{background:#b08800}.sev-low{background:#2b8a3e}\
.overdue{color:#b3261e;font-weight:700}.ok{color:#2b8a3e}.muted{color:#5c6670;font-size:.85rem}\
.hash{font-family:ui-monospace,monospace;font-size:.8rem;word-break:break-all}\
form.inline{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin:.4rem 0}\
label{display:block;font-weight:600;margin:.6rem 0 .2rem}input,select,textarea{font:inherit;padding:.4rem;border:1px solid #aab3bd;border-radius:4px;max-width:100%}\
textarea{width:100%;min-height:7rem}input[type=text],input[type=email]{width:28rem}\
button{font:inherit;padding:.4rem .9rem;border:0;border-radius:4px;background:#1f5bd8;color:#fff;cursor:pointer}\
.err{color:#b3261e;font-weight:600;margin:.2rem 0}.field-error input,.field-error select,.field-error textarea{border-color:#b3261e}\
.banner{padding:.6rem 1rem;border-radius:4px;margin-bottom:1rem}.banner.bad{background:#fde8e7;color:#8a1c15}.banner.good{background:#e6f4ea;color:#1e5e2f}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}dt{font-weight:600}dd{margin:0}\
pre{white-space:pre-wrap;background:#fff;border:1px solid #d8dde3;padding:1rem;border-radius:6px}\
@media (max-width:600px){main{padding:.6rem}input[type=text],input[type=email]{width:100%}\
table.list thead{display:none}table.list tr{display:block;border-bottom:2px solid #d8dde3;padding:.3rem 0}\
table.list td{display:flex;gap:.5rem;border:0;padding:.15rem .5rem}table.list td::before{content:attr(data-label);font-weight:600;min-width:7.5rem;color:#5c6670}\
dl{grid-template-columns:1fr}dt{margin-top:.4rem}}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · AI incidents</title><style>{CSS}</style></head><body>\
<header><a href=\"/\">AI incident response</a><nav><a href=\"/\">Open incidents</a>\
<a href=\"/report-incident\">Report an incident</a><a href=\"/audit\">Audit log</a></nav></header>\
<main>{body}</main></body></html>",
        t = esc(title)
    )
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    (status, Html(page(title, body))).into_response()
}

fn error_page(e: &ServiceError) -> Response {
    let status = match e {
        ServiceError::NotFound(_) | ServiceError::Invalid { .. } => StatusCode::NOT_FOUND,
        ServiceError::Conflict(_) => StatusCode::CONFLICT,
        ServiceError::Unavailable(_) => {
            tracing::warn!(error = %crate::service::error_chain(e), "web page failed: the store is unavailable");
            let mut r = html(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "<div class=\"banner bad\">The incident database cannot be reached right now; \
                 try again in a few seconds.</div>",
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from(crate::service::RETRY_AFTER_SECS),
            );
            return r;
        }
        ServiceError::Internal(_) => {
            tracing::error!(error = %crate::service::error_chain(e), "web page failed");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                "<div class=\"banner bad\">Internal error; the server log has the details.</div>",
            );
        }
    };
    html(
        status,
        "Not found",
        &format!("<div class=\"banner bad\">{}</div>", esc(&e.to_string())),
    )
}

/// Same-origin check for form posts (CSRF): the browser's `Origin` must name this host, or,
/// without one, `Sec-Fetch-Site` must say same-origin.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(o) => {
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            rest.is_some_and(|r| !host.is_empty() && r.eq_ignore_ascii_case(host))
        }
        None => headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "same-origin"),
    }
}

fn cross_site() -> Response {
    html(
        StatusCode::FORBIDDEN,
        "Refused",
        "<div class=\"banner bad\">This form must be sent from this site's own pages (same-origin check); \
reload the page and submit it again.</div>",
    )
}

fn fmt_dur(secs: i64) -> String {
    let s = secs.abs();
    if s >= 86_400 {
        format!("{}d {}h", s / 86_400, (s % 86_400) / 3600)
    } else if s >= 3600 {
        format!("{}h {}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m {}s", s / 60, s % 60)
    }
}

/// The acknowledge-by clock: time left, overdue, or met.
fn sla_cell(svc: &IncidentService, i: &Incident, now: DateTime<Utc>) -> String {
    if i.acknowledged_at().is_some() {
        return "<span class=\"ok\">acknowledged</span>".into();
    }
    if i.status().is_terminal() {
        return "—".into();
    }
    let sla = svc.response_sla(i.severity());
    let due = i.created_at() + chrono::Duration::from_std(sla).unwrap_or_default();
    let left = (due - now).num_seconds();
    if left >= 0 {
        format!("{} left", fmt_dur(left))
    } else {
        format!("<span class=\"overdue\">overdue {}</span>", fmt_dur(left))
    }
}

fn sev(s: &str) -> String {
    format!("<span class=\"sev sev-{0}\">{0}</span>", esc(s))
}

fn ts(t: &DateTime<Utc>) -> String {
    esc(&t.format("%Y-%m-%d %H:%M UTC").to_string())
}

fn select(name: &str, options: &[&str], chosen: Option<&str>, any: bool) -> String {
    let mut o = format!("<select name=\"{0}\" id=\"{0}\">", esc(name));
    if any {
        o.push_str("<option value=\"\">any</option>");
    }
    for v in options {
        let sel = if chosen == Some(*v) { " selected" } else { "" };
        let _ = write!(o, "<option value=\"{0}\"{sel}>{0}</option>", esc(v));
    }
    o.push_str("</select>");
    o
}

const SEVERITIES: &[&str] = &["critical", "high", "medium", "low"];
const TYPES: &[&str] = &["security", "performance", "data_quality", "other"];
const OPEN_STATUSES: &[&str] = &["new", "acknowledged", "contained", "investigating"];

async fn dashboard(State(svc): State<Svc>, Query(q): Query<Fields>) -> Response {
    let pick = |k: &str| {
        q.get(k)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let (severity, status, incident_type) = (pick("severity"), pick("status"), pick("type"));
    let page = match svc
        .list(ListInput {
            severity: severity.clone(),
            status: status.clone(),
            incident_type: incident_type.clone(),
            limit: Some(crate::service::LIST_MAX),
            open_only: true,
            ..Default::default()
        })
        .await
    {
        Ok(p) => p,
        Err(e @ ServiceError::Invalid { .. }) => {
            return html(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Open incidents",
                &format!(
                    "<div class=\"banner bad\">Filter {}</div>",
                    esc(&e.to_string())
                ),
            );
        }
        Err(e) => return error_page(&e),
    };
    let now = svc.now();
    let mut b = String::from("<h1>Open incidents</h1>");
    let _ = write!(
        b,
        "<form class=\"inline card\" method=\"get\" action=\"/\"><div><label for=\"severity\">Severity</label>{}</div>\
<div><label for=\"status\">Status</label>{}</div><div><label for=\"type\">Type</label>{}</div>\
<div><button type=\"submit\">Filter</button></div></form>",
        select("severity", SEVERITIES, severity.as_deref(), true),
        select("status", OPEN_STATUSES, status.as_deref(), true),
        select("type", TYPES, incident_type.as_deref(), true),
    );
    if page.items.is_empty() {
        b.push_str("<p class=\"card\">No open incidents match.</p>");
    } else {
        b.push_str(
            "<div class=\"scroll\"><table class=\"list\" id=\"incidents\"><thead><tr><th>Incident</th><th>Severity</th>\
<th>Status</th><th>Step</th><th>Level</th><th>Acknowledge SLA</th><th>Regulatory deadline</th><th>Opened</th></tr></thead><tbody>",
        );
        for inc in &page.items {
            let s = IncidentSummary::from(inc);
            let deadline = match s.report_due_at {
                Some(d) if d < now => {
                    format!("<span class=\"overdue\">{} (overdue)</span>", ts(&d))
                }
                Some(d) => format!("{} ({} left)", ts(&d), fmt_dur((d - now).num_seconds())),
                None => "—".into(),
            };
            let _ = write!(
                b,
                "<tr><td data-label=\"Incident\"><div><a href=\"/incidents/{href}\">{id}</a><br>{title}</div></td>\
<td data-label=\"Severity\">{sev}</td><td data-label=\"Status\">{status}</td><td data-label=\"Step\">{step}</td>\
<td data-label=\"Level\">{lvl}</td><td data-label=\"Acknowledge SLA\">{sla}</td><td data-label=\"Regulatory deadline\">{deadline}</td>\
<td data-label=\"Opened\">{opened}</td></tr>",
                href = url_seg(&s.incident_id),
                id = esc(&s.incident_id),
                title = esc(&s.title),
                sev = sev(&s.severity),
                status = esc(&s.status),
                step = esc(&s.step),
                lvl = s.escalation_level,
                sla = sla_cell(&svc, inc, now),
                opened = ts(&s.created_at),
            );
        }
        b.push_str("</tbody></table></div>");
    }
    html(StatusCode::OK, "Open incidents", &b)
}

// ---- report form -------------------------------------------------------------------------

fn report_page(values: &Fields, error: Option<(&str, &str)>) -> String {
    let v = |k: &str| esc(values.get(k).map(String::as_str).unwrap_or(""));
    let field_err = |k: &str| match error {
        Some((f, m)) if f == k => format!(
            "<p class=\"err\" id=\"{k}-error\" role=\"alert\">{}</p>",
            esc(m)
        ),
        _ => String::new(),
    };
    let cls = |k: &str| match error {
        Some((f, _)) if f == k => " class=\"field-error\"",
        _ => "",
    };
    let mut b = String::from("<h1>Report an incident</h1>");
    if let Some((f, m)) = error
        && ![
            "incident_type",
            "description",
            "reporter_email",
            "severity",
            "affected_system",
        ]
        .contains(&f)
    {
        let _ = write!(
            b,
            "<div class=\"banner bad\" role=\"alert\">{}</div>",
            esc(&format!("{f}: {m}"))
        );
    }
    let chosen_type = values.get("incident_type").map(String::as_str);
    let chosen_sev = values
        .get("severity")
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    let _ = write!(
        b,
        "<form class=\"card\" method=\"post\" action=\"/report-incident\" novalidate>\
<div{c_t}><label for=\"incident_type\">Type</label>{sel_t}{e_t}</div>\
<div{c_d}><label for=\"description\">What happened, where, and who is affected</label>\
<textarea name=\"description\" id=\"description\">{d}</textarea>{e_d}</div>\
<div{c_e}><label for=\"reporter_email\">Your e-mail</label>\
<input type=\"email\" name=\"reporter_email\" id=\"reporter_email\" value=\"{em}\">{e_e}</div>\
<div{c_s}><label for=\"severity\">Severity (assessed from the description when left at “assess”)</label>{sel_s}{e_s}</div>\
<div{c_a}><label for=\"affected_system\">Affected system</label>\
<input type=\"text\" name=\"affected_system\" id=\"affected_system\" value=\"{a}\">{e_a}</div>\
<p><button type=\"submit\" id=\"submit-report\">Report incident</button></p></form>",
        c_t = cls("incident_type"),
        sel_t = select("incident_type", TYPES, chosen_type, false),
        e_t = field_err("incident_type"),
        c_d = cls("description"),
        d = v("description"),
        e_d = field_err("description"),
        c_e = cls("reporter_email"),
        em = v("reporter_email"),
        e_e = field_err("reporter_email"),
        c_s = cls("severity"),
        sel_s = select("severity", SEVERITIES, chosen_sev, true).replacen(">any<", ">assess<", 1),
        e_s = field_err("severity"),
        c_a = cls("affected_system"),
        a = v("affected_system"),
        e_a = field_err("affected_system"),
    );
    b
}

async fn report_form() -> Response {
    html(
        StatusCode::OK,
        "Report an incident",
        &report_page(&Fields::new(), None),
    )
}

async fn report_submit(
    State(svc): State<Svc>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    if !same_origin(&headers) {
        return cross_site();
    }
    let Ok(Form(f)) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            "Report an incident",
            &report_page(
                &Fields::new(),
                Some(("form", "could not be read; fill it in again")),
            ),
        );
    };
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let opt = |k: &str| f.get(k).cloned().filter(|s| !s.trim().is_empty());
    match svc
        .report(ReportInput {
            incident_type: get("incident_type"),
            description: get("description"),
            reporter_email: get("reporter_email"),
            severity: opt("severity"),
            affected_system: opt("affected_system"),
        })
        .await
    {
        Ok(inc) => {
            Redirect::to(&format!("/incidents/{}", url_seg(inc.id().as_str()))).into_response()
        }
        Err(ServiceError::Invalid { field, message }) => html(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Report an incident",
            &report_page(&f, Some((field, &message))),
        ),
        Err(e) => error_page(&e),
    }
}

// ---- one incident ------------------------------------------------------------------------

fn opt_row(b: &mut String, k: &str, v: Option<&str>) {
    if let Some(v) = v {
        let _ = write!(b, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
}

async fn render_incident(
    svc: &IncidentService,
    id: &str,
    notice: Option<(bool, String)>,
) -> Response {
    let (inc, tl) = match svc.get(id).await {
        Ok(x) => x,
        Err(e) => return error_page(&e),
    };
    let status = match &notice {
        Some((false, _)) => StatusCode::CONFLICT,
        _ => StatusCode::OK,
    };
    let now = svc.now();
    let s = IncidentSummary::from(&inc);
    let href = url_seg(inc.id().as_str());
    let mut b = format!(
        "<h1>{} <span class=\"muted\">{}</span></h1>",
        esc(inc.title()),
        esc(inc.id().as_str())
    );
    if let Some((ok, msg)) = &notice {
        let _ = write!(
            b,
            "<div class=\"banner {}\" role=\"alert\" id=\"notice\">{}</div>",
            if *ok { "good" } else { "bad" },
            esc(msg)
        );
    }
    let _ = write!(
        b,
        "<div class=\"card\"><dl><dt>Status</dt><dd id=\"status\">{}</dd><dt>Severity</dt><dd>{}</dd>\
<dt>Type</dt><dd>{}</dd><dt>Step</dt><dd>{}</dd><dt>Escalation level</dt><dd id=\"level\">{}</dd>\
<dt>Acknowledge SLA</dt><dd>{}</dd><dt>Opened</dt><dd>{}</dd>",
        esc(&s.status),
        sev(&s.severity),
        esc(&s.incident_type),
        esc(&s.step),
        s.escalation_level,
        sla_cell(svc, &inc, now),
        ts(&inc.created_at()),
    );
    opt_row(&mut b, "Reporter", inc.reporter());
    opt_row(&mut b, "Owner", inc.owner());
    opt_row(&mut b, "Acknowledged by", inc.acknowledged_by());
    opt_row(&mut b, "Affected system", inc.affected_system());
    opt_row(&mut b, "Affected user", inc.affected_user());
    opt_row(&mut b, "Affected session", inc.affected_session());
    opt_row(&mut b, "Root cause", inc.root_cause());
    opt_row(&mut b, "Resolution", inc.resolution());
    if let Some(d) = s.report_due_at {
        opt_row(
            &mut b,
            "Regulatory report due",
            Some(&d.format("%Y-%m-%d %H:%M UTC").to_string()),
        );
    }
    let _ = write!(
        b,
        "<dt>Description</dt><dd>{}</dd></dl></div>",
        esc(inc.description())
    );
    b.push_str(&actions(&inc, &href));
    b.push_str("<h2>Timeline</h2><div class=\"scroll\"><table class=\"list\" id=\"timeline\"><thead><tr><th>#</th><th>When</th><th>Who</th><th>Event</th><th>Hash</th></tr></thead><tbody>");
    for e in &tl {
        let kind = serde_json::from_str::<serde_json::Value>(&e.data)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
            .unwrap_or_else(|| "event".into());
        let _ = write!(
            b,
            "<tr><td data-label=\"#\">{}</td><td data-label=\"When\">{}</td><td data-label=\"Who\">{}</td>\
<td data-label=\"Event\">{}</td><td data-label=\"Hash\" class=\"hash\">{}</td></tr>",
            e.seq,
            esc(&e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            esc(&e.actor),
            esc(&kind),
            esc(&e.hash),
        );
    }
    b.push_str("</tbody></table></div>");
    if inc.status().is_terminal()
        && let Ok(doc) = svc.postmortem(inc.id().as_str()).await
    {
        let _ = write!(
            b,
            "<h2>Postmortem</h2><pre id=\"postmortem\">{}</pre>",
            esc(&crate::domain::postmortem::render_markdown(&doc))
        );
    }
    html(status, inc.id().as_str(), &b)
}

fn actions(inc: &Incident, href: &str) -> String {
    if inc.status().is_terminal() {
        return format!(
            "<h2>Actions</h2><div class=\"card\"><form class=\"inline\" method=\"post\" action=\"/incidents/{href}/document\">\
<label><input type=\"checkbox\" name=\"close\" value=\"true\"> also close</label>\
<button type=\"submit\" id=\"document\">Write the postmortem</button></form></div>"
        );
    }
    let mut b = String::from("<h2>Actions</h2><div class=\"card\">");
    if inc.acknowledged_at().is_none() {
        let _ = write!(
            b,
            "<form class=\"inline\" method=\"post\" action=\"/incidents/{href}/acknowledge\">\
<div><label for=\"responder\">Responder</label><input type=\"text\" name=\"responder\" id=\"responder\" required></div>\
<button type=\"submit\" id=\"acknowledge\">Acknowledge</button></form>"
        );
    }
    let _ = write!(
        b,
        "<form class=\"inline\" method=\"post\" action=\"/incidents/{href}/escalate\">\
<div><label for=\"esc-reason\">Escalation reason</label><input type=\"text\" name=\"reason\" id=\"esc-reason\"></div>\
<button type=\"submit\" id=\"escalate\">Escalate</button></form>\
<form class=\"inline\" method=\"post\" action=\"/incidents/{href}/contain\">\
<div><label for=\"contain-action\">Containment</label>{sel}</div>\
<div><label for=\"contain-reason\">Reason</label><input type=\"text\" name=\"reason\" id=\"contain-reason\"></div>\
<button type=\"submit\" id=\"contain\">Contain</button></form>\
<form class=\"inline\" method=\"post\" action=\"/incidents/{href}/resolve\">\
<div><label for=\"resolution\">Resolution</label><input type=\"text\" name=\"resolution\" id=\"resolution\" required></div>\
<div><label for=\"root_cause\">Root cause</label><input type=\"text\" name=\"root_cause\" id=\"root_cause\" required></div>\
<button type=\"submit\" id=\"resolve\">Resolve</button></form>",
        sel = select("action", crate::service::CONTAIN_ACTIONS, None, false).replacen(
            "id=\"action\"",
            "id=\"contain-action\"",
            1
        ),
    );
    b.push_str("</div>");
    b
}

async fn incident_page(State(svc): State<Svc>, Path(id): Path<String>) -> Response {
    render_incident(&svc, &id, None).await
}

async fn incident_action(
    State(svc): State<Svc>,
    Path((id, action)): Path<(String, String)>,
    who: Option<axum::Extension<crate::mcp::principal::Principal>>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    if !same_origin(&headers) {
        return cross_site();
    }
    let actor = who.map_or_else(|| ACTOR.to_string(), |axum::Extension(p)| p.name);
    let actor = actor.as_str();
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let opt = |k: &str| f.get(k).cloned().filter(|s| !s.trim().is_empty());
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let r: Result<(), ServiceError> = match action.as_str() {
        "acknowledge" => svc.acknowledge(&id, &get("responder")).await.map(drop),
        "escalate" => svc.escalate(&id, opt("reason"), actor).await.map(drop),
        "contain" => svc
            .contain(&id, &get("action"), opt("reason"), actor)
            .await
            .map(drop),
        "resolve" => svc
            .resolve(&id, &get("resolution"), &get("root_cause"), actor)
            .await
            .map(drop),
        "document" => svc
            .document(&id, opt("close").is_some(), actor)
            .await
            .map(drop),
        "note" => svc
            .update_incident(
                &id,
                UpdateInput {
                    note: opt("note"),
                    ..Default::default()
                },
                actor,
            )
            .await
            .map(drop),
        _ => {
            return html(
                StatusCode::NOT_FOUND,
                "Not found",
                "<div class=\"banner bad\">No such action.</div>",
            );
        }
    };
    match r {
        Ok(()) => Redirect::to(&format!("/incidents/{}", url_seg(&id))).into_response(),
        Err(e @ (ServiceError::Invalid { .. } | ServiceError::Conflict(_))) => {
            render_incident(&svc, &id, Some((false, e.to_string()))).await
        }
        Err(e) => error_page(&e),
    }
}

async fn audit(State(svc): State<Svc>) -> Response {
    match svc.verify_audit_log().await {
        Ok(r) => {
            let verdict = if r.ok {
                format!(
                    "<div class=\"banner good\" id=\"audit\">The hash chain is intact: {} events checked.</div>",
                    r.events_checked
                )
            } else {
                format!(
                    "<div class=\"banner bad\" id=\"audit\">The chain is broken at event {}: {}</div>",
                    r.first_bad_event
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "?".into()),
                    esc(r.problem.as_deref().unwrap_or("unknown problem"))
                )
            };
            html(
                StatusCode::OK,
                "Audit log",
                &format!("<h1>Audit log</h1>{verdict}"),
            )
        }
        Err(e) => error_page(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script>\"&"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"
        );
        assert_eq!(url_seg("INC-1/../x"), "INC-1%2F..%2Fx");
    }

    #[test]
    fn report_page_keeps_input_and_shows_the_field_error() {
        let mut v = Fields::new();
        v.insert("description".into(), "<b>leak</b>".into());
        v.insert("reporter_email".into(), "not-an-email".into());
        let p = report_page(&v, Some(("reporter_email", "is not an e-mail address")));
        assert!(p.contains("&lt;b&gt;leak&lt;/b&gt;</textarea>"));
        assert!(p.contains("value=\"not-an-email\""));
        assert!(p.contains("id=\"reporter_email-error\""));
        assert!(!p.contains("<b>leak"));
    }

    #[test]
    fn same_origin_needs_a_matching_origin_or_fetch_site() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://localhost:9999".parse().unwrap());
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(same_origin(&h));
    }
}
