//! Incident kinds: the procedure's incident categories (AIMS-IRP-001 §8.5.2) plus the attack
//! categories the screening engine names. A kind refines an [`IncidentType`]; classification
//! overrides and per-kind response times are keyed by its snake_case name.
//!
//! May import: std, serde, `crate::domain::incident` (the type it refines), `crate::detect`
//! (the screening categories it maps from).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::detect::Category;
use crate::domain::incident::IncidentType;

/// What kind of incident this is, finer than [`IncidentType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Instructions smuggled into a prompt or tool output (§8.5.2.1).
    PromptInjection,
    /// An attempt to talk the model out of its rules.
    Jailbreak,
    /// An attempt to get data out through the model.
    DataExfiltration,
    /// An attempt to gain rights the caller does not have.
    PrivilegeEscalation,
    /// A bulk data request aimed at the agent's tools ("dump the database", §8.5.2.1).
    DataAccessAttempt,
    /// A credential in screened text (OWASP LLM02:2025).
    SecretExposure,
    /// An API key exposed or misused (§8.5.2.1).
    ApiKeyCompromise,
    /// Unauthorised access to sensitive data (§8.5.2.1).
    DataBreach,
    /// A tool definition changed under its pin (rug pull).
    ToolPoisoning,
    /// An external LLM API failing (§8.5.2.2).
    LlmApiFailure,
    /// An MCP server failing discovery or execution (§8.5.2.2).
    McpProtocolFailure,
    /// A performance metric past its threshold (§8.5.2.2).
    PerformanceDegradation,
    /// A data file that cannot be read (§8.5.2.3).
    DataCorruption,
    /// A tool catalog failing its schema (§8.5.2.3).
    SchemaValidationFailure,
    /// Data inconsistent across sources (§8.5.2.3).
    DataInconsistency,
}

impl IncidentKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [IncidentKind] = &[
        IncidentKind::PromptInjection,
        IncidentKind::Jailbreak,
        IncidentKind::DataExfiltration,
        IncidentKind::PrivilegeEscalation,
        IncidentKind::DataAccessAttempt,
        IncidentKind::SecretExposure,
        IncidentKind::ApiKeyCompromise,
        IncidentKind::DataBreach,
        IncidentKind::ToolPoisoning,
        IncidentKind::LlmApiFailure,
        IncidentKind::McpProtocolFailure,
        IncidentKind::PerformanceDegradation,
        IncidentKind::DataCorruption,
        IncidentKind::SchemaValidationFailure,
        IncidentKind::DataInconsistency,
    ];

    /// The wire name (`data_breach`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            IncidentKind::PromptInjection => "prompt_injection",
            IncidentKind::Jailbreak => "jailbreak",
            IncidentKind::DataExfiltration => "data_exfiltration",
            IncidentKind::PrivilegeEscalation => "privilege_escalation",
            IncidentKind::DataAccessAttempt => "data_access_attempt",
            IncidentKind::SecretExposure => "secret_exposure",
            IncidentKind::ApiKeyCompromise => "api_key_compromise",
            IncidentKind::DataBreach => "data_breach",
            IncidentKind::ToolPoisoning => "tool_poisoning",
            IncidentKind::LlmApiFailure => "llm_api_failure",
            IncidentKind::McpProtocolFailure => "mcp_protocol_failure",
            IncidentKind::PerformanceDegradation => "performance_degradation",
            IncidentKind::DataCorruption => "data_corruption",
            IncidentKind::SchemaValidationFailure => "schema_validation_failure",
            IncidentKind::DataInconsistency => "data_inconsistency",
        }
    }

    /// The incident type this kind belongs to.
    ///
    /// ```
    /// use ai_incident_mcp::domain::kind::IncidentKind;
    /// use ai_incident_mcp::domain::incident::IncidentType;
    /// assert_eq!(IncidentKind::DataBreach.incident_type(), IncidentType::Security);
    /// assert_eq!(IncidentKind::LlmApiFailure.incident_type(), IncidentType::Performance);
    /// ```
    pub fn incident_type(&self) -> IncidentType {
        use IncidentKind::*;
        match self {
            PromptInjection | Jailbreak | DataExfiltration | PrivilegeEscalation
            | DataAccessAttempt | SecretExposure | ApiKeyCompromise | DataBreach
            | ToolPoisoning => IncidentType::Security,
            LlmApiFailure | McpProtocolFailure | PerformanceDegradation => {
                IncidentType::Performance
            }
            DataCorruption | SchemaValidationFailure | DataInconsistency => {
                IncidentType::DataQuality
            }
        }
    }

    /// The kind of a screening category.
    pub fn from_category(c: Category) -> IncidentKind {
        // Matched by name so a category added to the engine maps without a code change here
        // as long as a kind of the same name exists; anything else is prompt injection's family.
        c.as_str().parse().unwrap_or(IncidentKind::PromptInjection)
    }
}

impl fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IncidentKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        IncidentKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == t)
            .ok_or_else(|| {
                let names: Vec<&str> = IncidentKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "'{}' is not an incident kind; use one of: {}",
                    crate::domain::incident::truncate_chars(s, 40),
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_categories_map() {
        for k in IncidentKind::ALL {
            assert_eq!(k.as_str().parse::<IncidentKind>().unwrap(), *k);
            let json = serde_json::to_string(k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        for c in Category::ALL {
            assert_eq!(IncidentKind::from_category(c).as_str(), c.as_str());
        }
        assert!(
            "breach"
                .parse::<IncidentKind>()
                .unwrap_err()
                .contains("data_breach")
        );
    }
}
