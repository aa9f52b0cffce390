//! Who is calling: the [`Principal`] an HTTP request authenticated as (put into the request's
//! extensions by the HTTP guard; rmcp hands the request parts to the tool call), or the one a
//! stdio / legacy-SSE handler was built with. [`actor`] is the name the timeline records for the
//! tool call in progress; [`is_write_tool`] says which tools change state (by their annotations),
//! for read-only mode and reader tokens.
//!
//! May import: `crate::config` (`Role`); rmcp, tokio.

use crate::config::Role;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The actor name recorded on the timeline (a token's `name`, `--actor`, the OS user).
    pub name: String,
    /// What the caller may do.
    pub role: Role,
}

impl Principal {
    /// An admin named `name` (the single `--token`, stdio, no authentication).
    pub fn admin(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            role: Role::Admin,
        }
    }

    /// True when this caller may change incidents.
    pub fn can_write(&self) -> bool {
        self.role >= Role::Responder
    }
}

tokio::task_local! {
    static ACTOR: String;
}

/// Runs `f` with [`actor`] answering `name`.
pub async fn with_actor<F: std::future::Future>(name: String, f: F) -> F::Output {
    ACTOR.scope(name, f).await
}

/// The actor of the tool call in progress (`mcp` outside one).
pub fn actor() -> String {
    ACTOR
        .try_with(|a| a.clone())
        .unwrap_or_else(|_| "mcp".to_string())
}

/// True when `tool` changes state: its annotations do not say `readOnlyHint: true`.
pub fn is_write_tool(tool: &rmcp::model::Tool) -> bool {
    tool.annotations.as_ref().and_then(|a| a.read_only_hint) != Some(true)
}
