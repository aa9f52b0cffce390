//! REST errors and the JSON body extractor: every failure of `/api/v1` is
//! `{"error": {"code", "message", "field"?}}` with the status that fits, mapped
//! from [`ServiceError`] in one place ([`ApiError::from`]). A store that cannot be reached is
//! 503 `unavailable` with `Retry-After` ([`RETRY_AFTER_SECS`]).
//!
//! May import: `crate::service`, `crate::domain`; axum, serde, serde_json, serde_path_to_error.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::service::{RETRY_AFTER_SECS, ServiceError};

/// The body of every REST error.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong and what to change.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorDetail {
    /// Machine-readable kind: invalid_json, invalid_argument, unknown_field, not_found,
    /// conflict, payload_too_large, unsupported_media_type, unavailable (503: the database
    /// cannot be reached now; retry after the `Retry-After` seconds), internal.
    pub code: String,
    /// A sentence saying what is wrong and what would be accepted.
    pub message: String,
    /// The argument, query parameter or header to fix, when one is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A REST failure, rendered as [`ErrorBody`] (a 503 also carries `Retry-After`).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    /// A 422 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_argument",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// A 400 for a body that is not JSON.
    pub fn bad_json(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_json",
            message: message.into(),
            field: None,
        }
    }

    /// A 404 for an unknown route under `/api/v1`.
    pub fn no_route(path: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!(
                "no API operation at {path}; GET /api/v1/openapi.json lists the operations"
            ),
            field: None,
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            // The id is part of the path: a malformed one names no resource.
            ServiceError::Invalid {
                field: "incident_id",
                message,
            } => ApiError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: format!("incident_id: {message}"),
                field: Some("id".into()),
            },
            ServiceError::Invalid { field, message } => ApiError::invalid(field, message),
            e @ ServiceError::NotFound(_) => ApiError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: e.to_string(),
                field: None,
            },
            ServiceError::Conflict(m) => ApiError {
                status: StatusCode::CONFLICT,
                code: "conflict",
                message: m,
                field: None,
            },
            e @ ServiceError::Unavailable(_) => {
                tracing::warn!(error = %crate::service::error_chain(&e), "REST call failed: the store is unavailable");
                ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "unavailable",
                    message: format!(
                        "the incident database is unreachable right now; try again in {RETRY_AFTER_SECS} s"
                    ),
                    field: None,
                }
            }
            e @ ServiceError::Internal(_) => {
                tracing::error!(error = %crate::service::error_chain(&e), "REST call failed");
                ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: "internal",
                    message: "internal error; the server log has the details".into(),
                    field: None,
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = (self.status == StatusCode::SERVICE_UNAVAILABLE)
            .then(|| [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())]);
        (
            self.status,
            retry,
            axum::Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code.into(),
                    message: self.message,
                    field: self.field,
                },
            }),
        )
            .into_response()
    }
}

/// Checks the content type and size of a JSON body. An empty body reads as `{}` when
/// `empty_ok` (operations whose fields are all optional).
///
/// # Errors
/// 415 for another content type, 413 over `max`, 400 when the bytes are not JSON.
pub fn json_value(
    headers: &HeaderMap,
    body: &[u8],
    empty_ok: bool,
) -> Result<serde_json::Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) && empty_ok {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: format!(
                "the body must be JSON with Content-Type: application/json (got '{}')",
                crate::domain::incident::truncate_chars(ct, 60)
            ),
            field: None,
        });
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_json(format!("the body is not valid JSON: {e}")))
}

/// Deserializes a JSON value into `T`, naming the failing field (unknown fields are refused
/// when `T` denies them).
///
/// # Errors
/// 422 naming the field.
pub fn from_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        let (code, field) = if let Some(f) = quoted_after(&msg, "unknown field `") {
            ("unknown_field", Some(join_path(&path, &f)))
        } else if let Some(f) = quoted_after(&msg, "missing field `") {
            ("invalid_argument", Some(join_path(&path, &f)))
        } else if path == "." || path.is_empty() {
            ("invalid_argument", None)
        } else {
            ("invalid_argument", Some(path))
        };
        let message = match (code, &field) {
            ("unknown_field", Some(f)) => format!(
                "unknown field `{f}`; remove it ({msg}). GET /api/v1/openapi.json has the accepted fields"
            ),
            (_, Some(f)) => format!("`{f}`: {msg}"),
            _ => msg,
        };
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code,
            message,
            field,
        }
    })
}

fn join_path(path: &str, f: &str) -> String {
    if path == f || path.ends_with(&format!(".{f}")) {
        path.to_string()
    } else if path == "." || path.is_empty() {
        f.to_string()
    } else {
        format!("{path}.{f}")
    }
}

fn quoted_after(msg: &str, prefix: &str) -> Option<String> {
    let rest = msg.split(prefix).nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let e = from_value::<T>(serde_json::json!({"a": 1, "zz": 2})).unwrap_err();
        assert_eq!(e.code, "unknown_field");
        assert_eq!(e.field.as_deref(), Some("zz"));
        let e = from_value::<T>(serde_json::json!({})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("a"));
        let e = from_value::<T>(serde_json::json!({"a": "x"})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("a"));
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
