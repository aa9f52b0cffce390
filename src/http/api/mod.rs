//! The REST adapter at `/api/v1` (issue #10): the MCP tools' use cases over JSON.
//! Each handler parses its input, makes one [`IncidentService`] call and maps the
//! result to the same view the MCP tool returns; failures are mapped once, in
//! [`error::ApiError`]. The OpenAPI 3.1 document is generated from the same Rust
//! types ([`openapi`]).
//!
//! May import: `crate::service`, `crate::domain`, `crate::mcp` (the tools' argument
//! types), `crate::view` (the views shared with MCP and the CLI), `crate::http`; axum, serde, serde_json.

pub mod error;
pub mod openapi;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::mcp::tools::detectors::{AccessOutput, KeyUsageOutput};
use crate::mcp::tools::incidents::ReportIncidentArgs;
use crate::mcp::tools::lifecycle::{
    AcknowledgeArgs, ContainArgs, DocumentArgs, EscalateArgs, LiftArgs, ResolveArgs,
    UpdateIncidentArgs,
};
use crate::mcp::tools::monitoring::{MetricsOutput, RecordMetricsArgs};
use crate::mcp::tools::screening::{ScreenPromptArgs, ScreenPromptOutput};
use crate::service::UpdateInput;
use crate::service::{AccessInput, KeyUsageInput, MetricsInput};
use crate::service::{IncidentService, ListInput, ReportInput, ScreenInput};
use crate::view::{
    AuditOutput, IncidentChange, IncidentDetail, ListIncidentsOutput, ReportIncidentOutput,
};
use error::{ApiError, from_value, json_value};

/// Who the timeline records for REST changes when no token names the caller.
const ACTOR: &str = "api";

/// The authenticated caller, when a token named one.
type Who = Option<axum::Extension<crate::mcp::principal::Principal>>;

/// The actor the timeline records: the token's name, else `api`.
fn actor(who: Who) -> String {
    who.map_or_else(|| ACTOR.to_string(), |axum::Extension(p)| p.name)
}

#[derive(Clone)]
struct ApiState {
    svc: Arc<IncidentService>,
    max_body: usize,
}

type ApiResult = Result<Response, ApiError>;

/// The `/api/v1` routes, to merge into the app router (behind its guards).
pub fn router<S>(svc: Arc<IncidentService>, max_body_bytes: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let st = ApiState {
        svc,
        max_body: max_body_bytes,
    };
    let v1 = Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/incidents/report", post(report))
        .route("/incidents", get(list))
        .route("/incidents/{id}", get(get_incident).patch(update))
        .route("/incidents/{id}/acknowledge", post(acknowledge))
        .route("/incidents/{id}/escalate", post(escalate))
        .route("/incidents/{id}/resolve", post(resolve))
        .route("/incidents/{id}/contain", post(contain))
        .route("/incidents/{id}/lift-containment", post(lift))
        .route("/incidents/{id}/document", post(document))
        .route("/incidents/{id}/postmortem", get(postmortem))
        .route("/screen", post(screen))
        .route("/metrics", post(metrics))
        .route("/key-usage", post(key_usage))
        .route("/access", post(access))
        .route("/audit/verify", get(audit_verify))
        .fallback(fallback)
        .with_state(st);
    Router::new().nest("/api/v1", v1)
}

async fn fallback(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::no_route(uri.path())
}

async fn openapi_json() -> Response {
    axum::Json(openapi::document()).into_response()
}

async fn read_body(max: usize, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "payload_too_large",
        message: format!("the body is over {max} bytes; send less"),
        field: None,
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max as u64
    {
        return Err(too_large());
    }
    axum::body::to_bytes(body, max)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| too_large())
}

/// Reads a JSON body into `T`.
async fn body_args<T: DeserializeOwned>(
    st: &ApiState,
    headers: &HeaderMap,
    body: Body,
    empty_ok: bool,
) -> Result<T, ApiError> {
    let bytes = read_body(st.max_body, headers, body).await?;
    from_value(json_value(headers, &bytes, empty_ok)?)
}

/// Reads a JSON body into the MCP argument struct `T`, whose `incident_id` comes from the path.
async fn id_args<T: DeserializeOwned>(
    st: &ApiState,
    id: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: Body,
    empty_ok: bool,
) -> Result<T, ApiError> {
    let id = path_id(id)?;
    let bytes = read_body(st.max_body, headers, body).await?;
    let mut v = json_value(headers, &bytes, empty_ok)?;
    let Some(obj) = v.as_object_mut() else {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_argument",
            message: "the body must be a JSON object".into(),
            field: None,
        });
    };
    if obj.contains_key("incident_id") {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "unknown_field",
            message: "unknown field `incident_id`; the incident id is in the path, remove it from the body".into(),
            field: Some("incident_id".into()),
        });
    }
    obj.insert("incident_id".into(), serde_json::Value::String(id));
    from_value(v)
}

fn path_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|e| ApiError::invalid("id", format!("the incident id in the path: {e}")))
}

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    (status, axum::Json(v)).into_response()
}

async fn report(State(st): State<ApiState>, headers: HeaderMap, body: Body) -> ApiResult {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::invalid("Idempotency-Key", "must be visible ASCII, e.g. a UUID")
        })?),
    };
    let a: ReportIncidentArgs = body_args(&st, &headers, body, false).await?;
    let up = st
        .svc
        .report_once(
            ReportInput {
                incident_type: a.incident_type,
                description: a.description,
                reporter_email: a.reporter_email,
                severity: a.severity,
                affected_system: a.affected_system,
            },
            key,
        )
        .await?;
    let view = ReportIncidentOutput::new(&up.incident, st.svc.response_sla(up.incident.severity()));
    let status = if up.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/api/v1/incidents/{}", up.incident.id());
    Ok((
        status,
        [(header::LOCATION, location)],
        [(
            "idempotent-replayed",
            if up.created { "false" } else { "true" },
        )],
        axum::Json(view),
    )
        .into_response())
}

async fn list(
    State(st): State<ApiState>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let Query(pairs) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let mut input = ListInput::default();
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "status" => &mut input.status,
            "severity" => &mut input.severity,
            "incident_type" => &mut input.incident_type,
            "since" => &mut input.since,
            "cursor" => &mut input.cursor,
            "limit" => {
                if input.limit.is_some() {
                    return Err(ApiError::invalid("limit", "is given twice; give it once"));
                }
                input.limit = Some(v.trim().parse().map_err(|_| {
                    ApiError::invalid(
                        "limit",
                        format!(
                            "'{}' is not a whole number from 1 to {}",
                            crate::domain::incident::truncate_chars(&v, 40),
                            crate::service::LIST_MAX
                        ),
                    )
                })?);
                continue;
            }
            other => {
                return Err(ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    code: "unknown_field",
                    message: format!(
                        "unknown query parameter `{}`; use status, severity, incident_type, since, limit or cursor",
                        crate::domain::incident::truncate_chars(other, 40)
                    ),
                    field: Some(crate::domain::incident::truncate_chars(other, 40)),
                });
            }
        };
        if slot.is_some() {
            return Err(ApiError::invalid(k, "is given twice; give it once"));
        }
        *slot = Some(v);
    }
    let page = st.svc.list(input).await?;
    Ok(json(StatusCode::OK, &ListIncidentsOutput::from(page)))
}

async fn get_incident(
    State(st): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let (inc, tl) = st.svc.get(&path_id(id)?).await?;
    let response = st.svc.response_metrics(&inc, &tl);
    Ok(json(
        StatusCode::OK,
        &IncidentDetail::new(inc, tl, response),
    ))
}

async fn postmortem(
    State(st): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let doc = st.svc.postmortem(&path_id(id)?).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        crate::domain::postmortem::render_markdown(&doc),
    )
        .into_response())
}

async fn acknowledge(
    State(st): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let a: AcknowledgeArgs = id_args(&st, id, &headers, body, false).await?;
    let inc = st.svc.acknowledge(&a.incident_id, &a.responder).await?;
    Ok(json(StatusCode::OK, &IncidentChange::from(&inc)))
}

async fn escalate(
    State(st): State<ApiState>,
    who: Who,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let a: EscalateArgs = id_args(&st, id, &headers, body, true).await?;
    let inc = st
        .svc
        .escalate(&a.incident_id, a.reason, &actor(who))
        .await?;
    Ok(json(StatusCode::OK, &IncidentChange::from(&inc)))
}

async fn resolve(
    State(st): State<ApiState>,
    who: Who,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let a: ResolveArgs = id_args(&st, id, &headers, body, false).await?;
    let inc = st
        .svc
        .resolve(&a.incident_id, &a.resolution, &a.root_cause, &actor(who))
        .await?;
    Ok(json(StatusCode::OK, &IncidentChange::from(&inc)))
}

async fn contain(
    State(st): State<ApiState>,
    who: Who,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let a: ContainArgs = id_args(&st, id, &headers, body, false).await?;
    let inc = st
        .svc
        .contain(&a.incident_id, &a.action, a.reason, &actor(who))
        .await?;
    Ok(json(StatusCode::OK, &IncidentChange::from(&inc)))
}

async fn lift(
    State(st): State<ApiState>,
    who: Who,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let a: LiftArgs = id_args(&st, id, &headers, body, true).await?;
    let inc = st
        .svc
        .lift_containment(&a.incident_id, a.reason, &actor(who))
        .await?;
    Ok(json(StatusCode::OK, &IncidentChange::from(&inc)))
}

async fn document(
    State(st): State<ApiState>,
    who: Who,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let a: DocumentArgs = id_args(&st, id, &headers, body, true).await?;
    let out = st
        .svc
        .document(&a.incident_id, a.close.unwrap_or(false), &actor(who))
        .await?;
    Ok(json(StatusCode::OK, &out))
}

async fn update(
    State(st): State<ApiState>,
    who: Who,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let a: UpdateIncidentArgs = id_args(&st, id, &headers, body, false).await?;
    let inc = st
        .svc
        .update_incident(
            &a.incident_id,
            UpdateInput {
                status: a.status,
                owner: a.owner,
                note: a.note,
                root_cause: a.root_cause,
                corrective_action: a.corrective_action,
                severity: a.severity,
                step: a.step,
                mark_serious: a.mark_serious,
                widespread: a.widespread,
                regulatory_reported: a.regulatory_reported,
            },
            &actor(who),
        )
        .await?;
    Ok(json(StatusCode::OK, &IncidentChange::from(&inc)))
}

async fn screen(State(st): State<ApiState>, headers: HeaderMap, body: Body) -> ApiResult {
    let a: ScreenPromptArgs = body_args(&st, &headers, body, false).await?;
    let out = st
        .svc
        .screen(ScreenInput {
            text: a.text,
            source: a.source.unwrap_or_default().into(),
            user_id: a.user_id,
            session_id: a.session_id,
        })
        .await?;
    Ok(json(StatusCode::OK, &ScreenPromptOutput::from(out)))
}

async fn metrics(State(st): State<ApiState>, headers: HeaderMap, body: Body) -> ApiResult {
    let a: RecordMetricsArgs = body_args(&st, &headers, body, false).await?;
    let out = st
        .svc
        .record_metrics(MetricsInput {
            source: a.source,
            llm_response_time: a.llm_response_time,
            tool_execution_time: a.tool_execution_time,
            system_response_time: a.system_response_time,
            error_rate: a.error_rate,
            availability: a.availability,
        })
        .await?;
    Ok(json(StatusCode::OK, &MetricsOutput::from(out)))
}

async fn audit_verify(State(st): State<ApiState>) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        &AuditOutput::from(st.svc.verify_audit_log().await?),
    ))
}

async fn key_usage(State(st): State<ApiState>, headers: HeaderMap, body: Body) -> ApiResult {
    let a: KeyUsageInput = body_args(&st, &headers, body, false).await?;
    let out = st.svc.record_key_usage(a).await?;
    Ok(json(StatusCode::OK, &KeyUsageOutput::from(out)))
}

async fn access(State(st): State<ApiState>, headers: HeaderMap, body: Body) -> ApiResult {
    let a: AccessInput = body_args(&st, &headers, body, false).await?;
    let out = st.svc.record_access(a).await?;
    Ok(json(StatusCode::OK, &AccessOutput::from(out)))
}
