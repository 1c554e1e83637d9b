//! Configuration: defaults < TOML file < environment.
//!
//! The file is `--config PATH`, else `$CRMFLOW_CONFIG`, else `crmflow.toml` when it exists.
//! Environment overrides come in two forms: the old service's names (`DB_HOST`, `DB_PORT`,
//! `DB_NAME`, `DB_USER`, `DB_PASSWORD`, `BULLHORN_*`, `ML_SERVICE_URL`) plus
//! `KAFKA_BOOTSTRAP_SERVERS` and the standard `OTEL_*` variables, and a generic
//! `CRMFLOW_<SECTION>__<KEY>` for every key (e.g. `CRMFLOW_SINK__BATCH_SIZE=2000`).
//!
//! Every struct denies unknown keys, so a typo is an error naming the key and where it came
//! from instead of a silently ignored setting. Secrets are [`SecretString`]: they are never
//! printed by `Debug`, and `crmflow config check` shows them as `[redacted]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// The old service's environment names and the standard ones, mapped to config keys.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("DB_HOST", "postgres.host"),
    ("DB_PORT", "postgres.port"),
    ("DB_NAME", "postgres.dbname"),
    ("DB_USER", "postgres.user"),
    ("DB_PASSWORD", "postgres.password"),
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka.bootstrap_servers"),
    ("BULLHORN_REST_URL", "bullhorn.rest_url"),
    ("BULLHORN_CLIENT_ID", "bullhorn.client_id"),
    ("BULLHORN_CLIENT_SECRET", "bullhorn.client_secret"),
    ("BULLHORN_USERNAME", "bullhorn.username"),
    ("BULLHORN_PASSWORD", "bullhorn.password"),
    ("ML_SERVICE_URL", "ml.url"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
    ("OTEL_SERVICE_NAME", "telemetry.service_name"),
];

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key has a bad value or is unknown; figment's message names the key and its source.
    #[error("configuration error: {0}")]
    Invalid(String),
    /// A key that the chosen stages need has no value.
    #[error("configuration error: missing `{key}` (set {env} or `{key}` in the config file)")]
    Missing {
        key: &'static str,
        env: &'static str,
    },
    #[error("configuration error: config file {0} does not exist")]
    NoFile(PathBuf),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub postgres: PostgresConfig,
    pub bullhorn: BullhornConfig,
    pub ml: MlConfig,
    pub normalize: NormalizeConfig,
    pub sink: SinkConfig,
    pub embed: EmbedConfig,
    pub telemetry: TelemetryConfig,
    pub metrics: MetricsConfig,
}

/// Kafka connection and topic layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list. Env: `KAFKA_BOOTSTRAP_SERVERS`.
    pub bootstrap_servers: String,
    /// Prepended to every topic and consumer-group name; lets tests and tenants share a cluster.
    pub topic_prefix: String,
    /// Partitions of topics crmflow creates.
    pub partitions: i32,
    /// Replication factor of topics crmflow creates (1 on a single local broker).
    pub replication_factor: i32,
    /// Consumer session timeout, milliseconds: how long a dead instance holds its partitions.
    pub session_timeout_ms: u32,
    /// Static group membership (`group.instance.id`): a restarted instance with the same id
    /// takes its partitions back at once, without a rebalance. Unique per instance.
    pub group_instance_id: Option<String>,
    /// Extra librdkafka properties applied to every client (e.g. `security.protocol`).
    pub client_properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic_prefix: String::new(),
            partitions: 6,
            replication_factor: 1,
            session_timeout_ms: 10_000,
            group_instance_id: None,
            client_properties: Default::default(),
        }
    }
}

/// PostgreSQL connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Env: `DB_HOST`.
    pub host: String,
    /// Env: `DB_PORT`.
    pub port: u16,
    /// Env: `DB_NAME`.
    pub dbname: String,
    /// Env: `DB_USER`.
    pub user: String,
    /// Env: `DB_PASSWORD`.
    #[serde(serialize_with = "redact")]
    pub password: SecretString,
    /// Schema that holds crmflow's tables (tests use one schema each).
    pub schema: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Connect timeout, seconds.
    pub connect_timeout_secs: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "crmflow".into(),
            user: "crmflow".into(),
            password: SecretString::from("crmflow"),
            schema: "public".into(),
            pool_size: 8,
            connect_timeout_secs: 5,
        }
    }
}

/// How the Bullhorn source reads changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BullhornMode {
    /// Incremental `search` by `dateLastModified` (default).
    Poll,
    /// Bullhorn's event-subscription API.
    Events,
}

/// Bullhorn account and source behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BullhornConfig {
    /// Discovery URL ending in `/rest-services`. Env: `BULLHORN_REST_URL`.
    pub rest_url: String,
    /// Env: `BULLHORN_CLIENT_ID`.
    pub client_id: Option<String>,
    /// Env: `BULLHORN_CLIENT_SECRET`.
    #[serde(serialize_with = "redact_opt")]
    pub client_secret: Option<SecretString>,
    /// API user. Env: `BULLHORN_USERNAME`.
    pub username: Option<String>,
    /// Env: `BULLHORN_PASSWORD`.
    #[serde(serialize_with = "redact_opt")]
    pub password: Option<SecretString>,
    /// Entities to read.
    pub entities: Vec<String>,
    /// `poll` or `events`.
    pub mode: BullhornMode,
    /// Seconds between incremental polls once caught up.
    pub poll_interval_secs: u64,
    /// Records per search page (Bullhorn's maximum is 500).
    pub page_size: u32,
    /// Client-side request budget per minute (Bullhorn's default limit is 1,500).
    pub requests_per_minute: u32,
    /// Requests in flight at once.
    pub max_concurrent_requests: usize,
    /// Event subscription id (events mode).
    pub subscription_id: String,
    /// Events per poll (events mode).
    pub max_events: u32,
    /// `fields=` read per entity (search and reads by id); an entity not listed reads
    /// `id,dateAdded,dateLastModified,isDeleted`. The defaults cover the canonical model.
    pub fields: std::collections::BTreeMap<String, String>,
    /// `dateLastModified` sub-ranges fetched concurrently when a poll finds more than a page.
    pub fetch_concurrency: usize,
    /// Each incremental poll starts this many milliseconds before the cursor, so a record saved
    /// late with an older timestamp is still found; records seen again are de-duplicated.
    pub overlap_ms: u64,
}

/// Default `fields=` of Candidate: everything the canonical candidate is built from.
pub const CANDIDATE_FIELDS: &str = "id,firstName,lastName,name,email,phone,mobile,\
address(address1,address2,city,state,zip,countryID,countryName,countryCode),status,occupation,\
companyName,skillSet,primarySkills(id,name),description,dateAvailable,owner(id,firstName,lastName),\
dateAdded,dateLastModified,isDeleted";

/// Default `fields=` of JobOrder: everything the canonical position is built from.
pub const JOB_ORDER_FIELDS: &str = "id,title,description,publicDescription,status,isOpen,\
employmentType,salary,salaryUnit,payRate,numOpenings,startDate,skills(id,name),skillList,\
address(address1,address2,city,state,zip,countryID,countryName,countryCode),\
clientCorporation(id,name),owner(id,firstName,lastName),dateAdded,dateLastModified,isDeleted";

impl Default for BullhornConfig {
    fn default() -> Self {
        Self {
            rest_url: "https://rest.bullhornstaffing.com/rest-services".into(),
            client_id: None,
            client_secret: None,
            username: None,
            password: None,
            entities: vec!["Candidate".into(), "JobOrder".into()],
            mode: BullhornMode::Poll,
            poll_interval_secs: 30,
            page_size: 500,
            requests_per_minute: 1_400,
            max_concurrent_requests: 8,
            subscription_id: "crmflow".into(),
            max_events: 500,
            fields: [
                ("Candidate".to_string(), CANDIDATE_FIELDS.to_string()),
                ("JobOrder".to_string(), JOB_ORDER_FIELDS.to_string()),
            ]
            .into(),
            fetch_concurrency: 8,
            overlap_ms: 1_000,
        }
    }
}

impl BullhornConfig {
    /// The four credentials, or a one-line error naming the first one missing.
    pub fn credentials(&self) -> Result<BullhornCredentials, ConfigError> {
        let missing = |key, env| ConfigError::Missing { key, env };
        Ok(BullhornCredentials {
            client_id: self
                .client_id
                .clone()
                .ok_or_else(|| missing("bullhorn.client_id", "BULLHORN_CLIENT_ID"))?,
            client_secret: self
                .client_secret
                .clone()
                .ok_or_else(|| missing("bullhorn.client_secret", "BULLHORN_CLIENT_SECRET"))?,
            username: self
                .username
                .clone()
                .ok_or_else(|| missing("bullhorn.username", "BULLHORN_USERNAME"))?,
            password: self
                .password
                .clone()
                .ok_or_else(|| missing("bullhorn.password", "BULLHORN_PASSWORD"))?,
        })
    }
}

/// Bullhorn API credentials; `Debug` shows no secret.
#[derive(Clone, Debug)]
pub struct BullhornCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub username: String,
    pub password: SecretString,
}

/// Which wire protocol the ML service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MlProtocol {
    /// Hugging Face text-embeddings-inference: `POST /embed`.
    Tei,
    /// OpenAI-compatible: `POST /v1/embeddings`.
    Openai,
}

/// The ML embedding service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlConfig {
    /// Base URL. Env: `ML_SERVICE_URL`.
    pub url: String,
    pub protocol: MlProtocol,
    /// Model name stored with every vector; a new name triggers re-embedding.
    pub model: String,
    /// Vector dimension the model produces.
    pub dim: usize,
    /// Bearer token for OpenAI-compatible services.
    #[serde(serialize_with = "redact_opt")]
    pub api_key: Option<SecretString>,
    /// Per-request timeout, seconds.
    pub timeout_secs: u64,
    /// Directory of the model `crmflow ml serve` runs (model.safetensors, tokenizer.json,
    /// config.json; `scripts/model` fetches all-MiniLM-L6-v2 and prints it). Env:
    /// `CRMFLOW_ML__MODEL_DIR`. Unused by the pipeline itself.
    pub model_dir: Option<String>,
}

impl Default for MlConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8282".into(),
            protocol: MlProtocol::Tei,
            model: "sim-bow-384".into(),
            dim: 384,
            api_key: None,
            timeout_secs: 30,
            model_dir: None,
        }
    }
}

/// The normalize stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeConfig {
    /// Allowed candidate statuses (validation rule `candidate.status`).
    pub candidate_statuses: Vec<String>,
    /// Allowed position statuses (validation rule `position.status`).
    pub position_statuses: Vec<String>,
    /// Default country for phone numbers without one (ISO 3166-1 alpha-2).
    pub default_country: String,
    /// Longest text accepted in a description or summary, characters.
    pub max_text_chars: usize,
    /// Threads that decode, transform, validate and encode a polled batch; 0 means one per
    /// available core.
    pub workers: usize,
}

impl NormalizeConfig {
    /// [`Self::workers`] with 0 resolved to the available cores.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        Self {
            candidate_statuses: [
                "New Lead",
                "Active",
                "Passive",
                "Placed",
                "Inactive",
                "Submitted",
                "Interviewing",
                "Offer Extended",
                "Unavailable",
                "Archive",
                "DNU",
            ]
            .map(String::from)
            .to_vec(),
            position_statuses: [
                "Accepting Candidates",
                "Open",
                "Covered",
                "Filled",
                "On Hold",
                "Closed",
                "Lost",
                "Archive",
            ]
            .map(String::from)
            .to_vec(),
            default_country: "US".into(),
            max_text_chars: 65_536,
            workers: 0,
        }
    }
}

/// The Postgres sink stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Rows per upsert statement at most.
    pub batch_size: usize,
    /// Longest wait for a batch to fill, milliseconds.
    pub linger_ms: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            linger_ms: 200,
        }
    }
}

/// The embed and match stages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedConfig {
    /// Texts per ML request.
    pub batch_size: usize,
    /// Longest wait for a batch to fill, milliseconds.
    pub linger_ms: u64,
    /// ML requests in flight at once.
    pub max_in_flight: usize,
    /// Concurrent write transactions. Input partitions are dealt to writers by
    /// `partition % writers`; each writer commits its batches in order, with its own
    /// partitions' offsets in the same transaction, so the writers never share an offset row.
    /// pgvector's HNSW inserts are CPU-bound in one backend: more writers use more cores.
    pub writers: usize,
    /// Text template for candidates; `{field}` placeholders name canonical fields.
    pub candidate_template: String,
    /// Text template for positions.
    pub position_template: String,
    /// Matches kept per record.
    pub top_k: usize,
    /// Records whose stored content hash the embed stage keeps in memory (moka, in front of
    /// Postgres); about 200 bytes each.
    pub hash_cache_capacity: u64,
    /// Queue entries the match step takes per transaction.
    pub match_batch_size: usize,
    /// Backlog (records waiting on one entity's input topic) from which the stage takes the
    /// bulk path for that (model, entity) when the backlog also exceeds the vectors already
    /// stored for it (an initial sync, a new model; not a replay of what is stored): the
    /// HNSW index is dropped, vectors go in without per-row index inserts, and the index is
    /// built once when the stage has caught up. `embed backfill` takes it from this many
    /// records to embed. 0 disables the bulk path.
    pub bulk_threshold: u64,
    /// Index storage of the vectors: `vector` (4 bytes per dimension) or `halfvec` (2 bytes
    /// per dimension, half the index size; cosine ranks barely move at 384 dimensions).
    pub storage: VectorStorage,
    /// HNSW `m`: neighbours per node (pgvector default 16). Applies to indexes built from now.
    pub hnsw_m: u32,
    /// HNSW `ef_construction`: candidate list while building (pgvector default 64).
    pub hnsw_ef_construction: u32,
    /// HNSW `ef_search` of the match queries; 0 means twice `top_k` (at most 1000).
    pub hnsw_ef_search: u32,
    /// `maintenance_work_mem` of the one-off index build at the end of a bulk load, MiB. The
    /// build is fast while the graph fits in it (about 1.1 KiB per 384-dim vector at m = 16).
    pub index_build_mem_mb: u64,
    /// `max_parallel_maintenance_workers` of that build (Postgres caps it by
    /// `max_worker_processes`); 0 builds in the writing backend alone.
    pub index_build_workers: u32,
}

/// How vectors are stored in the HNSW indexes (the `embeddings.embedding` column itself is
/// always `vector`, so models of any dimension share the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorStorage {
    /// `vector(dim)`, `vector_cosine_ops`.
    Vector,
    /// `halfvec(dim)`, `halfvec_cosine_ops`.
    Halfvec,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            linger_ms: 500,
            max_in_flight: 5,
            writers: 2,
            candidate_template: "{occupation}\nSkills: {skills}\n{summary}".into(),
            position_template: "{title}\nSkills: {skills}\n{description}".into(),
            top_k: 20,
            hash_cache_capacity: 200_000,
            match_batch_size: 100,
            bulk_threshold: 20_000,
            storage: VectorStorage::Vector,
            hnsw_m: 16,
            hnsw_ef_construction: 64,
            hnsw_ef_search: 0,
            index_build_mem_mb: 1024,
            index_build_workers: 2,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// `tracing` filter directive; `RUST_LOG` wins when set.
    pub log_level: String,
    /// OTLP gRPC endpoint; traces are exported only when set. Env: `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// Env: `OTEL_SERVICE_NAME`.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            otlp_endpoint: None,
            service_name: "crmflow".into(),
        }
    }
}

/// The operator HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port`; empty disables the endpoint.
    pub listen: String,
    /// How often a running process measures its lag, the DLQ depth and source lag, and
    /// writes its heartbeat for `crmflow status`.
    pub refresh_secs: u64,
    /// A stage with input waiting and no progress for this long is stalled (`/readyz` 503).
    pub stall_after_secs: u64,
    /// Progress log interval of one-shot runs when stderr is not a terminal.
    pub progress_log_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            refresh_secs: 10,
            stall_after_secs: 300,
            progress_log_secs: 10,
        }
    }
}

fn redact<S: Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

fn redact_opt<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

impl Config {
    /// Loads defaults < file < environment. `path` is the `--config` flag.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => std::env::var_os("CRMFLOW_CONFIG").map(PathBuf::from),
        };
        // Defaults come from `#[serde(default)]`, not from a serialized `Config::default()`:
        // serializing redacts secrets, which would turn the default password into "[redacted]".
        let mut fig = Figment::new();
        match file {
            Some(p) if !p.exists() => return Err(ConfigError::NoFile(p)),
            Some(p) => fig = fig.merge(Toml::file_exact(p)),
            None if Path::new("crmflow.toml").exists() => {
                fig = fig.merge(Toml::file_exact("crmflow.toml"))
            }
            None => {}
        }
        fig = fig.merge(Self::env_provider());
        fig.extract::<Config>()
            .map_err(|e| ConfigError::Invalid(one_line(&e)))
    }

    /// The environment layer: aliases plus `CRMFLOW_<SECTION>__<KEY>`.
    pub fn env_provider() -> Figment {
        let aliases = Env::raw()
            .filter_map(|k| {
                ENV_ALIASES
                    .iter()
                    .find(|(env, _)| k.as_str().eq_ignore_ascii_case(env))
                    .map(|(_, key)| (*key).into())
            })
            .split(".");
        // Only names with a section separator, so CRMFLOW_CONFIG and script variables such as
        // CRMFLOW_STATE_DIR are not mistaken for keys.
        let generic = Env::prefixed("CRMFLOW_")
            .filter(|k| k.as_str().contains("__"))
            .split("__");
        Figment::new().merge(aliases).merge(generic)
    }

    /// The configuration as TOML with secrets redacted, for `crmflow config check`.
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }

    /// Postgres connection settings for tokio-postgres.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let p = &self.postgres;
        let mut c = tokio_postgres::Config::new();
        c.host(&p.host)
            .port(p.port)
            .dbname(&p.dbname)
            .user(&p.user)
            .password(p.password.expose_secret())
            .application_name("crmflow")
            .connect_timeout(Duration::from_secs(p.connect_timeout_secs));
        if p.schema != "public" {
            c.options(format!("-c search_path={},public", p.schema));
        }
        c
    }
}

/// figment's messages can span lines (one per error); the operator wants one line that names
/// the key and, for environment overrides, the variable to fix.
fn one_line(e: &figment::Error) -> String {
    e.clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".").to_lowercase();
            let from_env = e
                .metadata
                .as_ref()
                .is_some_and(|m| m.name.contains("environment"));
            let mut msg = e.kind.to_string();
            if !key.is_empty() {
                msg.push_str(&format!(" for key `{key}`"));
            }
            if from_env {
                let vars: Vec<String> = ENV_ALIASES
                    .iter()
                    .filter(|(_, k)| *k == key)
                    .map(|(v, _)| (*v).to_owned())
                    .chain(std::iter::once(format!(
                        "CRMFLOW_{}",
                        key.to_uppercase().replace('.', "__")
                    )))
                    .collect();
                msg.push_str(&format!(" from environment variable {}", vars.join(" or ")));
            } else if let Some(m) = &e.metadata {
                let src = m
                    .source
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| m.name.to_string());
                msg.push_str(&format!(" in {src}"));
            }
            msg
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large; that is fine in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn old_service_env_names_override_file_and_defaults() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "crmflow.toml",
                "[postgres]\nhost = \"db.internal\"\nport = 6000\n",
            )?;
            jail.set_env("DB_PORT", "6543");
            jail.set_env("DB_PASSWORD", "s3cret");
            jail.set_env("BULLHORN_CLIENT_ID", "cid");
            jail.set_env("ML_SERVICE_URL", "http://ml:80");
            jail.set_env("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092");
            jail.set_env("CRMFLOW_SINK__BATCH_SIZE", "123");
            jail.set_env("CRMFLOW_STATE_DIR", "/tmp/whatever");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.postgres.host, "db.internal");
            assert_eq!(c.postgres.port, 6543);
            assert_eq!(c.postgres.password.expose_secret(), "s3cret");
            assert_eq!(c.bullhorn.client_id.as_deref(), Some("cid"));
            assert_eq!(c.ml.url, "http://ml:80");
            assert_eq!(c.kafka.bootstrap_servers, "k1:9092,k2:9092");
            assert_eq!(c.sink.batch_size, 123);
            Ok(())
        });
    }

    #[test]
    fn secrets_never_print() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DB_PASSWORD", "hunter2-db");
            jail.set_env("BULLHORN_CLIENT_SECRET", "hunter2-client");
            jail.set_env("BULLHORN_PASSWORD", "hunter2-user");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            let shown = format!("{c:?}\n{}", c.redacted_toml());
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(c.redacted_toml().contains("[redacted]"));
            jail.set_env("BULLHORN_CLIENT_ID", "x");
            jail.set_env("BULLHORN_USERNAME", "u");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            let creds = c.bullhorn.credentials().map_err(|e| e.to_string())?;
            assert!(!format!("{creds:?}").contains("hunter2"));
            Ok(())
        });
    }

    #[test]
    fn bad_value_names_key_and_source_on_one_line() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            // Nothing set: the defaults, secrets included, as they are (not as printed).
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.postgres.password.expose_secret(), "crmflow");
            assert_eq!(c.postgres.port, 5432);
            assert_eq!(c.sink.batch_size, Config::default().sink.batch_size);
            jail.set_env("DB_PORT", "not-a-port");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("postgres.port"), "{err}");
            assert!(err.contains("DB_PORT"), "{err}");
            assert!(!err.contains('\n'), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_in_file_is_rejected_with_its_file() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("crmflow.toml", "[sink]\nbatch_sise = 10\n")?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("batch_sise"), "{err}");
            assert!(err.contains("crmflow.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_credentials_name_the_env_var() {
        let c = Config::default();
        let err = c.bullhorn.credentials().unwrap_err().to_string();
        assert!(err.contains("BULLHORN_CLIENT_ID"), "{err}");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/crmflow.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/crmflow.toml"));
    }
}
