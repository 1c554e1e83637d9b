//! The stages' sections: `[ml]` (the embedding service), `[normalize]`, `[sink]` and `[embed]`.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::redact_opt;
use super::SalesforceNormalizeConfig;

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
    /// Bearer token for OpenAI-compatible services. Env: `ML_API_KEY`.
    #[serde(serialize_with = "redact_opt")]
    pub api_key: Option<SecretString>,
    /// File holding `api_key`. Env: `ML_API_KEY_FILE`.
    pub api_key_file: Option<PathBuf>,
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
            api_key_file: None,
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
    /// HubSpot's own value sets (rules `hubspot.*`).
    pub hubspot: HubspotNormalizeConfig,
    /// The compiled `[mapping]` (not a key of `[normalize]`): the normalize stage fills it from
    /// [`Config::mapping`] when it starts.
    #[serde(skip)]
    pub mapping: std::sync::Arc<crate::operators::attributes::Mapping>,
    /// Salesforce object roles and value sets (rules `salesforce.*`).
    pub salesforce: SalesforceNormalizeConfig,
}

/// Validation values of HubSpot records (`[normalize.hubspot]`). An empty list disables its check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubspotNormalizeConfig {
    /// Allowed contact `hs_lead_status` values (rule `hubspot.candidate.lead_status.allowed`);
    /// the default is HubSpot's default option set.
    pub lead_statuses: Vec<String>,
    /// Allowed job `job_status` / deal `dealstage` values (rule `hubspot.position.status.allowed`);
    /// the default is the jobs object's statuses and the default sales pipeline's stages.
    pub position_statuses: Vec<String>,
}

impl Default for HubspotNormalizeConfig {
    fn default() -> Self {
        Self {
            lead_statuses: [
                "NEW",
                "OPEN",
                "IN_PROGRESS",
                "OPEN_DEAL",
                "UNQUALIFIED",
                "ATTEMPTED_TO_CONTACT",
                "CONNECTED",
                "BAD_TIMING",
            ]
            .map(String::from)
            .to_vec(),
            position_statuses: [
                "OPEN",
                "ON_HOLD",
                "FILLED",
                "CLOSED",
                "appointmentscheduled",
                "qualifiedtobuy",
                "presentationscheduled",
                "decisionmakerboughtin",
                "contractsent",
                "closedwon",
                "closedlost",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
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
            hubspot: HubspotNormalizeConfig::default(),
            mapping: Default::default(),
            salesforce: SalesforceNormalizeConfig::default(),
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
