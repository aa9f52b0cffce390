//! Wiring: builds the store, engine and service from settings. Used by the
//! binary and by tests, so both run the same assembly.
//!
//! May import: `crate::config`, `crate::detect`, `crate::domain`, `crate::service`,
//! `crate::store`, `crate::notify`, `crate::probe`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::detect::{DetectError, Engine, Thresholds};
use crate::domain::clock::{Clock, SystemClock};
use crate::notify::{ChannelNotifier, Notifier};
use crate::service::{IncidentService, Limits};
use crate::store::postgres::{PgStore, is_postgres_url};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

/// Why the service could not be assembled. Each variant says what to fix; the cause, when
/// there is one, is its `source()`.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The configuration file is missing or wrong.
    #[error("cannot load the configuration")]
    Config(#[from] ConfigError),
    /// The store cannot be opened (or migrated).
    #[error("cannot open the store at {db}")]
    Store {
        /// The `--db` value, its password masked ([`display_db`]).
        db: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// `screening.rules_file` cannot be read.
    #[error("cannot read screening.rules_file {}", path.display())]
    RulesFile {
        /// The configured path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `screening.model_weight` is outside 0..=1.
    #[error("screening.model_weight must be between 0 and 1, got {0}")]
    ModelWeight(f64),
    /// The screening rules or model do not load.
    #[error("cannot load the screening rules or model")]
    Engine(#[from] DetectError),
    /// The upstream prober cannot be set up.
    #[error("{0}")]
    Prober(String),
    /// The secret fingerprint key (`AI_INCIDENT_FINGERPRINT_KEY`, `screening.fingerprint_key_file`
    /// or the key file beside the database) cannot be read, created or is too short.
    #[error("{0}")]
    FingerprintKey(String),
}

/// Where the store lives: a SQLite file path (the default, `sqlite://` optional), or a
/// `postgres://` / `postgresql://` URL. Pending migrations are applied on open.
///
/// # Errors
/// [`AppError::Store`] naming `db` (password masked), with the [`StoreError`] as its source:
/// an unreachable server ([`StoreError::Unavailable`]), refused credentials, a schema newer
/// than this binary, a file that cannot be opened.
pub fn open_store(db: &str) -> Result<Arc<dyn Store>, AppError> {
    let store_err = |source| AppError::Store {
        db: display_db(db),
        source,
    };
    if is_postgres_url(db) {
        let s: Arc<dyn Store> = PgStore::open(db).map_err(store_err)?;
        return Ok(s);
    }
    let path = db.strip_prefix("sqlite://").unwrap_or(db);
    let s: Arc<dyn Store> = SqliteStore::open(path).map_err(store_err)?;
    Ok(s)
}

/// `db` fit for logs and messages: a URL's password is replaced by `***`.
///
/// ```
/// use ai_incident_mcp::app::display_db;
/// assert_eq!(display_db("postgres://aim:s3cret@db:5432/aim"), "postgres://aim:***@db:5432/aim");
/// assert_eq!(display_db("./ai-incident.db"), "./ai-incident.db");
/// ```
pub fn display_db(db: &str) -> String {
    let Some(scheme_end) = db.find("://").map(|i| i + 3) else {
        return db.to_string();
    };
    let rest = &db[scheme_end..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..auth_end].rfind('@') else {
        return db.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &db[..scheme_end], &rest[..colon], &rest[at..]),
        None => db.to_string(),
    }
}

/// Applies pending migrations to the store at `db` (what opening it does anyway) and returns
/// the versions applied, empty when it was up to date.
///
/// # Errors
/// As [`open_store`].
pub fn migrate_store(db: &str) -> Result<Vec<i64>, AppError> {
    let applied = if is_postgres_url(db) {
        crate::store::postgres::migrate(db)
    } else {
        crate::store::sqlite::migrate_file(db.strip_prefix("sqlite://").unwrap_or(db))
    };
    applied.map_err(|source| AppError::Store {
        db: display_db(db),
        source,
    })
}

/// Builds the service over `db` with the built-in rules and the real clock.
///
/// # Errors
/// [`AppError`] saying what failed (store or rules).
pub fn build_service(db: &str, config: Arc<Config>) -> Result<Arc<IncidentService>, AppError> {
    build_service_with_clock(db, config, Arc::new(SystemClock))
}

/// Builds the service over `db` with the embedded default configuration.
///
/// # Errors
/// [`AppError`] saying what failed.
pub fn build_default_service(db: &str) -> Result<Arc<IncidentService>, AppError> {
    let config = Config::load(None)?;
    build_service(db, Arc::new(config))
}

/// As [`build_service`], with an injected clock (notifications go to the configured channels).
///
/// # Errors
/// [`AppError`] saying what failed (store or rules).
pub fn build_service_with_clock(
    db: &str,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
) -> Result<Arc<IncidentService>, AppError> {
    let notifier = Arc::new(ChannelNotifier::new(config.notify.clone()));
    build_service_with(db, config, clock, notifier)
}

/// As [`build_service`], with an injected clock and notifier (tests pass fakes).
///
/// # Errors
/// [`AppError`] saying what failed (store or rules).
pub fn build_service_with(
    db: &str,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    notifier: Arc<dyn Notifier>,
) -> Result<Arc<IncidentService>, AppError> {
    let limits = Limits {
        max_prompt_bytes: config.screening.max_prompt_bytes,
        ..Limits::default()
    };
    let config = with_documentation_beside_db(db, config);
    let store = open_store(db)?;
    let mut engine = build_engine(&config)?;
    let (key, source) =
        crate::service::fingerprint_key(db, &config).map_err(AppError::FingerprintKey)?;
    if let Some(k) = key {
        engine.set_fingerprint_key(&k);
    }
    match source {
        crate::service::FingerprintKeySource::File {
            path,
            created: true,
        } => {
            tracing::info!(file = %path.display(), "created the secret fingerprint key file (mode 0600)");
        }
        crate::service::FingerprintKeySource::Process if !db.starts_with(':') => {
            tracing::warn!(
                "no fingerprint key: set AI_INCIDENT_FINGERPRINT_KEY or screening.fingerprint_key_file so secret fingerprints compare across processes and restarts"
            );
        }
        _ => {}
    }
    let prober = crate::probe::NetProber::new().map_err(AppError::Prober)?;
    Ok(Arc::new(
        IncidentService::new(store, Arc::new(engine), clock, notifier, limits, config)
            .with_prober(Arc::new(prober)),
    ))
}

/// A relative `[documentation] dir` is resolved against the folder of the SQLite database
/// file, not the working directory (an MCP client may start the server in `/`); an absolute
/// one, or a non-file store, is kept as it is.
pub fn with_documentation_beside_db(db: &str, config: Arc<Config>) -> Arc<Config> {
    let dir = &config.documentation.dir;
    if dir.is_absolute() || (db.contains("://") && !db.starts_with("sqlite://")) {
        return config;
    }
    let file = std::path::Path::new(db.strip_prefix("sqlite://").unwrap_or(db));
    let base = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut c = (*config).clone();
    c.documentation.dir = base.join(dir);
    Arc::new(c)
}

/// Which learned model the screening engine uses.
#[derive(Debug, Clone, Copy)]
pub enum ModelChoice<'a> {
    /// The shipped weights (`data/model/weights.bin`).
    Builtin,
    /// These weights (e.g. a cross-validation fold's model).
    Weights(&'a [u8]),
    /// Rules only.
    None,
}

/// Compiles the screening engine: built-in rules and model, plus the extra
/// rules file, thresholds and model weight from `[screening]`.
///
/// # Errors
/// [`AppError`] naming the rules file and what is wrong in it.
pub fn build_engine(config: &Config) -> Result<Engine, AppError> {
    build_engine_with(config, ModelChoice::Builtin)
}

/// As [`build_engine`], with the given model.
///
/// # Errors
/// [`AppError`] naming the rules file, the weights, or the bad setting.
pub fn build_engine_with(config: &Config, model: ModelChoice<'_>) -> Result<Engine, AppError> {
    let extra = match &config.screening.rules_file {
        Some(p) => std::fs::read_to_string(p).map_err(|source| AppError::RulesFile {
            path: p.clone(),
            source,
        })?,
        None => String::new(),
    };
    let th = Thresholds {
        flag: config.screening.flag_threshold as f32,
        block: config.screening.block_threshold as f32,
    };
    let w = config.screening.model_weight;
    if !(0.0..=1.0).contains(&w) {
        return Err(AppError::ModelWeight(w));
    }
    let mut engine = match model {
        ModelChoice::Builtin => Engine::with_extra_rules(&extra, th),
        ModelChoice::Weights(bytes) => Engine::with_model_bytes(&extra, th, bytes),
        ModelChoice::None => Engine::with_model_bytes(&extra, th, &[]),
    }?;
    engine.set_model_weight(w as f32);
    engine.set_data_access(config.screening.data_access_attempt);
    Ok(engine)
}
