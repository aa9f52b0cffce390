//! Auditing use cases: verifying the timeline (hash chain, signed checkpoints, projection check)
//! and signing checkpoints of the chain head into the witness file (`[audit]`).
//!
//! The signing key is read once from the environment variable `AI_INCIDENT_AUDIT_KEY` (the key
//! itself) or `[audit] signing_key_file`; it is never stored in the database or logged (only
//! its key id is). Before signing, the events since this process's last checkpoint are
//! verified, so a rewritten chain is never signed.
//!
//! May import: `crate::domain`, `crate::store`, `crate::service`, `crate::config`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::config::{AUDIT_KEY_ENV, AuditConfig};
use crate::domain::audit::{AuditReport, Pins};
use crate::domain::checkpoint::{self, Checkpoint, CheckpointStatus, PublicKey, SigningKey};
use crate::service::{Fault, IncidentService, ServiceError, invalid};
use crate::store::HeadCheck;

/// Checkpoint state of one server process.
#[derive(Debug, Default)]
pub(crate) struct AuditState {
    /// The key, loaded once (`None`: checkpoints are off).
    key: OnceLock<Result<Option<Arc<SigningKey>>, String>>,
    /// The last `(seq, hash)` this process signed or found signed in the witness.
    last: tokio::sync::Mutex<Option<(i64, String)>>,
}

/// Where the checkpoint signing key comes from, if anywhere.
///
/// # Errors
/// A sentence naming the variable or file and what is wrong with it.
pub fn load_signing_key(cfg: &AuditConfig) -> Result<Option<SigningKey>, String> {
    if let Ok(text) = std::env::var(AUDIT_KEY_ENV)
        && !text.trim().is_empty()
    {
        return SigningKey::parse(&text)
            .map(Some)
            .map_err(|e| format!("{AUDIT_KEY_ENV}: {e}"));
    }
    let Some(p) = &cfg.signing_key_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(p)
        .map_err(|e| format!("audit.signing_key_file {}: {e}", p.display()))?;
    SigningKey::parse(&text)
        .map(Some)
        .map_err(|e| format!("audit.signing_key_file {}: {e}", p.display()))
}

/// Reads a public key from a file (PEM or hex), or takes `arg` itself when it is 64 hex digits.
///
/// # Errors
/// A sentence naming the file and what is wrong.
pub fn load_public_key(arg: &str) -> Result<PublicKey, String> {
    let p = Path::new(arg);
    if !p.exists() && arg.trim().len() == 64 {
        return PublicKey::parse(arg).map_err(|e| format!("public key {arg}: {e}"));
    }
    let text =
        std::fs::read_to_string(p).map_err(|e| format!("public key file {}: {e}", p.display()))?;
    PublicKey::parse(&text).map_err(|e| format!("public key file {}: {e}", p.display()))
}

fn read_witness_file(path: &Path, keys: &[PublicKey]) -> Result<checkpoint::Witness, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(checkpoint::read_witness(&t, keys)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(checkpoint::Witness::default()),
        Err(e) => Err(format!(
            "cannot read the witness file {}: {e}",
            path.display()
        )),
    }
}

fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // one write: concurrent servers appending to one witness never interleave a line
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()
}

impl IncidentService {
    /// The checkpoint signing key, if one is configured (loaded once).
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] when the configured key cannot be read.
    pub fn audit_signing_key(&self) -> Result<Option<Arc<SigningKey>>, ServiceError> {
        self.audit
            .key
            .get_or_init(|| load_signing_key(&self.config.audit).map(|k| k.map(Arc::new)))
            .clone()
            .map_err(|m| invalid("audit", m))
    }

    /// Signs the chain head into the witness file if it moved since this process last signed
    /// (and, on the first call, since the last checkpoint in the witness). Returns the
    /// checkpoint written, or `None` when there is no key, no event, or nothing new.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the chain since the last checkpoint does not verify
    /// (nothing is signed), or the witness cannot be written.
    pub async fn write_checkpoint(&self) -> Result<Option<Checkpoint>, ServiceError> {
        let Some(key) = self.audit_signing_key()? else {
            return Ok(None);
        };
        let path = self.config.audit.witness_file.clone();
        let mut last = self.audit.last.lock().await;
        if last.is_none() {
            let (p, pk) = (path.clone(), key.public());
            let w = tokio::task::spawn_blocking(move || read_witness_file(&p, &[pk]))
                .await
                .map_err(Fault::Task)?
                .map_err(Fault::Refused)?;
            *last = w.pins.last_key_value().map(|(s, (h, _))| (*s, h.clone()));
        }
        let (seq, hash) = match self.store.verified_head(last.clone()).await? {
            HeadCheck::Empty => return Ok(None),
            HeadCheck::Broken(r) => {
                return Err(Fault::Refused(format!(
                    "not signing an audit checkpoint: {}",
                    r.problem.unwrap_or_default()
                ))
                .into());
            }
            HeadCheck::Head { seq, hash } => (seq, hash),
        };
        if last.as_ref().is_some_and(|(s, _)| *s == seq) {
            return Ok(None);
        }
        let cp = key.checkpoint(seq, &hash, self.now());
        let line = cp.to_line();
        let p = path.clone();
        tokio::task::spawn_blocking(move || append_line(&p, &line))
            .await
            .map_err(Fault::Task)?
            .map_err(|source| Fault::Io {
                what: format!("cannot append to the witness file {}", path.display()),
                source,
            })?;
        if self.config.audit.log_checkpoints {
            tracing::info!(target: "audit_checkpoint", checkpoint = %cp.to_line(), "audit checkpoint");
        }
        *last = Some((seq, hash));
        Ok(Some(cp))
    }

    /// Verifies the timeline: the hash chain, the projection check, and — when `witness` is
    /// given — every signed checkpoint in it, checked with one of `keys`.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] when the witness file cannot be read;
    /// [`ServiceError::Internal`] if the database cannot be read.
    pub async fn verify_audit(
        &self,
        witness: Option<PathBuf>,
        keys: Vec<PublicKey>,
    ) -> Result<AuditReport, ServiceError> {
        let Some(path) = witness else {
            return Ok(self.store.verify_audit_log(Pins::new()).await?);
        };
        let p = path.clone();
        let w = tokio::task::spawn_blocking(move || read_witness_file(&p, &keys))
            .await
            .map_err(Fault::Task)?
            .map_err(|m| invalid("checkpoints", m))?;
        let latest = w.pins.last_key_value().map(|(s, (_, at))| (*s, at.clone()));
        let latest_seq = latest.as_ref().map(|l| l.0);
        let mut r = self.store.verify_audit_log(w.pins).await?;
        let chain_ok = r.first_bad_event.is_none();
        let status = CheckpointStatus {
            ok: w.problem.is_none() && chain_ok,
            file: path.display().to_string(),
            checkpoints: w.count,
            latest_seq,
            latest_at: latest.map(|l| l.1),
            events_after_latest: chain_ok.then(|| {
                let covered = latest_seq.map_or(0, |s| u64::try_from(s).unwrap_or(0));
                r.events_checked.saturating_sub(covered)
            }),
            problem: w.problem.clone(),
        };
        if !status.ok {
            r.ok = false;
            if r.problem.is_none() {
                r.problem = w
                    .problem
                    .as_ref()
                    .map(|p| format!("witness {}: {p}", path.display()));
            }
        }
        r.checkpoints = Some(status);
        Ok(r)
    }

    /// Verifies the timeline as configured: the chain and the projection check, and the signed
    /// checkpoints in `[audit] witness_file` when a key is configured (`public_key_file`, or
    /// the signing key's public half).
    ///
    /// # Errors
    /// As [`IncidentService::verify_audit`]; [`ServiceError::Invalid`] for an unreadable key.
    pub async fn verify_audit_log(&self) -> Result<AuditReport, ServiceError> {
        let a = &self.config.audit;
        let key = match &a.public_key_file {
            Some(p) => {
                Some(load_public_key(&p.display().to_string()).map_err(|m| invalid("audit", m))?)
            }
            None => self.audit_signing_key()?.map(|k| k.public()),
        };
        match key {
            Some(k) => {
                self.verify_audit(Some(a.witness_file.clone()), vec![k])
                    .await
            }
            None => self.verify_audit(None, Vec::new()).await,
        }
    }
}
