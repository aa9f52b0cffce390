//! Moving a database between backends: `export` writes JSON lines (a header, then every
//! incident, every event of the hash chain in order, every outbox row), `import` reads them
//! into an empty store, checking each event against the chain as it goes (same sequence
//! numbers, links and hashes), then verifies the whole audit log. Works on any [`Store`], so
//! SQLite → PostgreSQL and back are the same code.
//!
//! Not moved: screening activity (a rate window of the last hours) and REST idempotency keys
//! (minutes of retry protection).
//!
//! May import: `crate::domain`, `crate::store`.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::domain::audit::AuditReport;
use crate::domain::incident::{Event, Incident};
use crate::store::{HeadCheck, ImportBatch, ListQuery, OutboxRow, Store, StoreError};

/// The header line's `format`.
pub const FORMAT: &str = "ai-incident-mcp-export";
/// The header line's `version`.
pub const VERSION: u32 = 1;

/// Rows read or written per store call.
const PAGE: u32 = 500;

/// One line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    /// First line: what this file is.
    Header { format: String, version: u32 },
    /// An incident as stored.
    Incident(Box<Incident>),
    /// A timeline event, in chain order.
    Event(Event),
    /// A notification outbox row (its delivery state).
    Outbox(OutboxRow),
}

/// What failed during an export or import.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[source] std::io::Error),
    #[error("cannot read the import: {0}")]
    Read(#[source] std::io::Error),
    #[error("line {line}: {message}")]
    Bad { line: usize, message: String },
    #[error(
        "the target database is not empty ({0}); import only into a new database so the chain is kept as it was"
    )]
    NotEmpty(&'static str),
    #[error(
        "the imported audit log does not verify: {}; the import is not usable (drop the target database and check the source with verify-audit)",
        .0.problem.clone().unwrap_or_else(|| "rows disagree with the timeline".into())
    )]
    Unverified(Box<AuditReport>),
}

/// How many of each were moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub incidents: u64,
    pub events: u64,
    pub outbox: u64,
}

fn put(out: &mut impl Write, line: &Line) -> Result<(), TransferError> {
    let s = serde_json::to_string(line).map_err(|e| TransferError::Write(e.into()))?;
    writeln!(out, "{s}").map_err(TransferError::Write)
}

/// Writes every incident, event and outbox row of `store` to `out`.
///
/// # Errors
/// A store or write failure. Export from a quiet store: writes that land during the export
/// may be missing from it.
pub async fn export(store: &dyn Store, out: &mut impl Write) -> Result<Counts, TransferError> {
    let mut n = Counts::default();
    put(
        out,
        &Line::Header {
            format: FORMAT.into(),
            version: VERSION,
        },
    )?;
    let mut after = None;
    loop {
        let page = store.export_incidents(after.clone(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id().as_str().to_string());
        for inc in page {
            put(out, &Line::Incident(Box::new(inc)))?;
            n.incidents += 1;
        }
    }
    let mut after_seq = 0;
    loop {
        let page = store.export_events(after_seq, PAGE).await?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        for e in page {
            put(out, &Line::Event(e))?;
            n.events += 1;
        }
    }
    for row in store.export_outbox().await? {
        put(out, &Line::Outbox(row))?;
        n.outbox += 1;
    }
    out.flush().map_err(TransferError::Write)?;
    Ok(n)
}

/// Reads an export into `store`, which must be empty, then verifies the audit log.
///
/// # Errors
/// [`TransferError::NotEmpty`] for a store that holds anything, [`TransferError::Bad`] for a
/// line that is not part of an export (or an event that does not continue the chain),
/// [`TransferError::Unverified`] when the result does not verify.
pub async fn import(store: &dyn Store, input: impl BufRead) -> Result<Counts, TransferError> {
    if store.verified_head(None).await? != HeadCheck::Empty {
        return Err(TransferError::NotEmpty("it has timeline events"));
    }
    let any = store
        .list(ListQuery {
            limit: 1,
            ..Default::default()
        })
        .await?;
    if !any.items.is_empty() {
        return Err(TransferError::NotEmpty("it has incidents"));
    }
    let mut n = Counts::default();
    let mut batch = ImportBatch::default();
    let mut header = false;
    for (i, line) in input.lines().enumerate() {
        let lineno = i + 1;
        let line = line.map_err(TransferError::Read)?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line).map_err(|e| TransferError::Bad {
            line: lineno,
            message: format!("not an export line ({e})"),
        })?;
        match parsed {
            Line::Header { format, version } => {
                if format != FORMAT || version != VERSION {
                    return Err(TransferError::Bad {
                        line: lineno,
                        message: format!(
                            "header says {format} version {version}; this binary reads {FORMAT} version {VERSION}"
                        ),
                    });
                }
                header = true;
                continue;
            }
            _ if !header => {
                return Err(TransferError::Bad {
                    line: lineno,
                    message: format!(
                        "the first line must be the header {{\"header\":{{\"format\":\"{FORMAT}\",...}}}}; is this a file made by `ai-incident-mcp export`?"
                    ),
                });
            }
            Line::Incident(inc) => {
                batch.incidents.push(*inc);
                n.incidents += 1;
            }
            Line::Event(e) => {
                batch.events.push(e);
                n.events += 1;
            }
            Line::Outbox(o) => {
                batch.outbox.push(o);
                n.outbox += 1;
            }
        }
        if batch.len() >= PAGE as usize {
            let b = std::mem::take(&mut batch);
            store.import(b).await.map_err(|e| at_line(e, lineno))?;
        }
    }
    if !header {
        return Err(TransferError::Bad {
            line: 0,
            message: "the file is empty; export with `ai-incident-mcp export > FILE`".into(),
        });
    }
    if !batch.is_empty() {
        store.import(batch).await?;
    }
    let report = store.verify_audit_log(Default::default()).await?;
    if !report.ok {
        return Err(TransferError::Unverified(Box::new(report)));
    }
    Ok(n)
}

fn at_line(e: StoreError, line: usize) -> TransferError {
    match e {
        StoreError::Domain(d) => TransferError::Bad {
            line,
            message: d.to_string(),
        },
        other => TransferError::Store(other),
    }
}
