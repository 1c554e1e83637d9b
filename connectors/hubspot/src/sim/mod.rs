//! A HubSpot CRM v3 simulator faithful enough that HubSpot's own SDK works against it (only its host changed).
//!
//! One axum listener serves the CRM API under `/crm/v3/` (`routes.rs`), the OAuth token endpoint
//! `/oauth/v1/token` (`auth.rs`) and control endpoints under `/sim/` (`control.rs`). Data is generated from a
//! seed (`data.rs`) for three object types (`schema.rs`: contacts, deals, and a custom object for jobs), kept
//! in memory with a lagging search index (`store.rs`), searched as HubSpot does (`search.rs`: 10,000-result
//! cap, page maximum), changed through one write path that also feeds signed webhook deliveries
//! (`webhooks.rs`); faults, authentication, rate limits and statistics are middlewares (`faults.rs`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), crmflow_hubspot::sim::SimError> {
//! use crmflow_hubspot::sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::for_tests()).await?;
//! let base = sim.base_url(); // what a client uses instead of https://api.hubapi.com
//! let token = sim.private_app_token();
//! # let _ = (base, token);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod auth;
mod changes;
mod config;
mod control;
mod data;
mod error;
mod faults;
mod routes;
mod schema;
mod search;
mod store;
mod webhooks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{
    default_retry_schedule, SimArgs, SimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
    DEFAULT_PRIVATE_APP_TOKEN, DEFAULT_REFRESH_TOKEN,
};
pub use error::{ApiError, SimError};
pub use faults::{FaultSettings, FaultsPatch, Stats, WebhookStats};
pub use webhooks::Target as WebhookTarget;

use crate::wire::{CrmObject, SearchRequest};
use store::{Change, Db};

/// A write, as the API, the change generator and the in-process API all express it. `t` is the type index.
#[derive(Debug, Clone)]
pub(crate) enum WriteOp {
    Create {
        t: usize,
        props: BTreeMap<String, Option<String>>,
        source: &'static str,
    },
    Update {
        t: usize,
        id: u64,
        props: BTreeMap<String, Option<String>>,
        source: &'static str,
    },
    Archive {
        t: usize,
        id: u64,
        source: &'static str,
    },
    Restore {
        t: usize,
        id: u64,
        source: &'static str,
    },
    Merge {
        t: usize,
        primary: u64,
        secondary: u64,
        source: &'static str,
    },
}

/// State shared by every handler.
pub(crate) struct SharedState {
    /// Settings the simulator started with.
    pub config: SimConfig,
    /// `http://host:port`.
    pub base_url: String,
    /// The records.
    pub db: RwLock<Db>,
    /// Tokens.
    pub auth: Mutex<auth::AuthState>,
    /// Fault and limit settings and state.
    pub faults: Mutex<faults::FaultState>,
    /// Request statistics.
    pub stats: Mutex<faults::Stats>,
    /// Webhook target and event production.
    pub webhooks: Mutex<webhooks::Webhooks>,
    /// RNG of the change generator.
    pub change_rng: Mutex<ChaCha8Rng>,
    /// Sorted matches of recent search queries (see `routes::search_bytes`).
    pub search_cache: Mutex<SearchCache>,
}

/// (type index, index generation, query key) → sorted matches.
pub(crate) type SearchCache =
    std::collections::VecDeque<((usize, u64, String), Arc<Vec<Arc<store::Record>>>)>;

pub(crate) type Shared = Arc<SharedState>;

impl SharedState {
    /// The one write path: store first, then webhook events, under the store lock so events leave in
    /// write order (the dispatcher then shuffles them, as HubSpot does not keep order either).
    pub fn apply(&self, op: WriteOp) -> Result<Vec<Change>, ApiError> {
        let mut db = self.db.write();
        let change = match op {
            WriteOp::Create { t, props, source } => Some(db.create(t, props, None, source)?),
            WriteOp::Update {
                t,
                id,
                props,
                source,
            } => db.update(t, id, props, source)?,
            WriteOp::Archive { t, id, source } => Some(db.archive(t, id, source)?),
            WriteOp::Restore { t, id, source } => Some(db.restore(t, id, source)?),
            WriteOp::Merge {
                t,
                primary,
                secondary,
                source,
            } => Some(db.merge(t, primary, secondary, source)?),
        };
        let changes: Vec<Change> = change.into_iter().collect();
        let mut events = 0;
        {
            let mut w = self.webhooks.lock();
            for c in &changes {
                events += w.publish(&db.types, c, self.config.portal_id, self.config.app_id);
            }
        }
        if events > 0 {
            self.stats.lock().webhooks.events += events as u64;
        }
        Ok(changes)
    }

    /// Applies `n` random changes from the change generator; returns how many changed something.
    pub fn random_changes(&self, n: usize) -> usize {
        let mut applied = 0;
        for _ in 0..n {
            let op = {
                let db = self.db.read();
                let mut rng = self.change_rng.lock();
                changes::random_op(&db, &mut rng)
            };
            if let Some(op) = op {
                if self.apply(op).is_ok_and(|c| !c.is_empty()) {
                    applied += 1;
                }
            }
        }
        applied
    }

    fn info(&self) -> Value {
        let c = &self.config;
        let types: Vec<Value> = self
            .db
            .read()
            .types
            .iter()
            .map(
                |t| json!({"name": t.name, "objectTypeId": t.object_type_id, "aliases": t.aliases}),
            )
            .collect();
        json!({
            "base_url": self.base_url,
            "token_url": format!("{}/oauth/v1/token", self.base_url),
            "private_app_token": c.private_app_token,
            "client_id": c.client_id,
            "client_secret": c.client_secret,
            "refresh_token": c.refresh_token,
            "portal_id": c.portal_id,
            "app_id": c.app_id,
            "object_types": types,
        })
    }

    fn stats_json(&self) -> Value {
        let stats = self.stats.lock().clone();
        let tokens = self.auth.lock().live_tokens(std::time::Instant::now());
        let (records, pending) = {
            let db = self.db.read();
            let r: serde_json::Map<String, Value> = db
                .types
                .iter()
                .zip(&db.stores)
                .map(|(t, s)| {
                    let archived = s.records.values().filter(|r| r.archived).count();
                    (
                        t.name.clone(),
                        json!({"live": s.records.len() - archived, "archived": archived, "merged_away": s.merged_into.len()}),
                    )
                })
                .collect();
            (r, db.pending_index_writes())
        };
        let mut v = serde_json::to_value(stats).unwrap_or_default();
        v["live_access_tokens"] = tokens.into();
        v["records"] = Value::Object(records);
        v["pending_index_writes"] = pending.into();
        v
    }
}

/// Entry point of the simulator.
pub struct Simulator;

impl Simulator {
    /// Generates the data, binds `config.listen` (port 0 allowed) and serves on the current tokio runtime.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        config.validate().map_err(SimError::Config)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr()?;
        let db = {
            let cfg = config.clone();
            tokio::task::spawn_blocking(move || {
                let types = schema::types(&cfg.jobs_object_type_id, cfg.portal_id);
                data::generate(&cfg, types)
            })
            .await
            .map_err(|e| SimError::Config(format!("data generation failed: {e}")))?
        };
        let settings = FaultSettings {
            latency_ms: config.latency_ms,
            error_rate: config.error_rate,
            fail_next: 0,
            rate_limit_next: 0,
            rate_limit_next_policy: "TEN_SECONDLY_ROLLING".into(),
            hang_next: 0,
            hang_rate: 0.0,
            hang_ms: 30_000,
            unauthorized_next: 0,
            retry_after_secs: config.retry_after_secs,
            ten_secondly_limit: config.ten_secondly_limit,
            search_per_sec: config.search_per_sec,
            daily_limit: config.daily_limit,
            search_rate_limit_headers: config.search_rate_limit_headers,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let target = config.webhook_url.clone().map(|url| webhooks::Target {
            url,
            secret: config.webhook_key().to_string(),
        });
        let shared: Shared = Arc::new(SharedState {
            base_url: format!("http://{addr}"),
            db: RwLock::new(db),
            auth: Mutex::new(auth::AuthState::new(config.private_app_token.clone())),
            faults: Mutex::new(faults::FaultState::new(settings, config.seed)),
            stats: Mutex::new(faults::Stats::default()),
            webhooks: Mutex::new(webhooks::Webhooks::new(target, tx)),
            change_rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(1))),
            search_cache: Mutex::new(Default::default()),
            config,
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = routes::router(shared.clone());
        let server = tokio::spawn(async move {
            let limits = crmflow_httpd::Limits::default();
            crmflow_httpd::serve(listener, app, limits, async {
                let _ = stop_rx.await;
            })
            .await;
        });
        let dispatcher = tokio::spawn(webhooks::dispatch(shared.clone(), rx));
        let changer = (shared.config.changes_per_sec > 0.0)
            .then(|| tokio::spawn(changes::run(shared.clone(), shared.config.changes_per_sec)));
        tracing::info!(base_url = %shared.base_url, "hubspot simulator listening");
        Ok(SimHandle {
            shared,
            addr,
            shutdown: Some(stop_tx),
            server: Some(server),
            tasks: [Some(dispatcher), changer],
        })
    }
}

/// A running simulator. Dropping it stops the server (without waiting); prefer [`SimHandle::shutdown`].
pub struct SimHandle {
    shared: Shared,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    tasks: [Option<JoinHandle<()>>; 2],
}

impl SimHandle {
    /// Address the listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the API base URL (instead of `https://api.hubapi.com`).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The private-app token it accepts.
    pub fn private_app_token(&self) -> String {
        self.shared.config.private_app_token.clone()
    }

    /// The configuration it runs with (OAuth client id/secret, refresh token, portal id, ...).
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// The objectTypeId of the jobs custom object.
    pub fn jobs_object_type_id(&self) -> String {
        self.shared.config.jobs_object_type_id.clone()
    }

    fn t(&self, object: &str) -> Result<usize, SimError> {
        Ok(self.shared.db.read().type_idx(object)?)
    }

    fn props(props: &[(&str, &str)]) -> BTreeMap<String, Option<String>> {
        props
            .iter()
            .map(|(k, v)| ((*k).to_string(), Some((*v).to_string())))
            .collect()
    }

    /// Creates an object; returns its id.
    pub fn create(&self, object: &str, props: &[(&str, &str)]) -> Result<u64, SimError> {
        let t = self.t(object)?;
        let c = self.shared.apply(WriteOp::Create {
            t,
            props: Self::props(props),
            source: "API",
        })?;
        Ok(c.first().map(|c| c.id).unwrap_or_default())
    }

    /// Creates `n` objects in one bulk import: they all share one modified millisecond `at_ms`. Returns
    /// their ids.
    pub fn import(
        &self,
        object: &str,
        n: usize,
        at_ms: i64,
        props: &[(&str, &str)],
    ) -> Result<Vec<u64>, SimError> {
        let t = self.t(object)?;
        let mut ids = Vec::with_capacity(n);
        let mut changes = Vec::with_capacity(n);
        {
            let mut db = self.shared.db.write();
            for _ in 0..n {
                let c = db.create(t, Self::props(props), Some(at_ms), "IMPORT")?;
                ids.push(c.id);
                changes.push(c);
            }
            let mut w = self.shared.webhooks.lock();
            let mut events = 0;
            for c in &changes {
                events += w.publish(
                    &db.types,
                    c,
                    self.shared.config.portal_id,
                    self.shared.config.app_id,
                );
            }
            self.shared.stats.lock().webhooks.events += events as u64;
        }
        Ok(ids)
    }

    /// Changes properties (an empty value clears one); returns whether anything changed.
    pub fn update(&self, object: &str, id: u64, props: &[(&str, &str)]) -> Result<bool, SimError> {
        let t = self.t(object)?;
        let props = props
            .iter()
            .map(|(k, v)| ((*k).to_string(), (!v.is_empty()).then(|| (*v).to_string())))
            .collect();
        let c = self.shared.apply(WriteOp::Update {
            t,
            id,
            props,
            source: "CRM_UI",
        })?;
        Ok(!c.is_empty())
    }

    /// Archives (deletes) an object.
    pub fn archive(&self, object: &str, id: u64) -> Result<(), SimError> {
        let t = self.t(object)?;
        self.shared.apply(WriteOp::Archive {
            t,
            id,
            source: "CRM_UI",
        })?;
        Ok(())
    }

    /// Deletes an object permanently, unreported (see `store::Db::purge`); `true` when it existed.
    pub fn purge(&self, object: &str, id: u64) -> Result<bool, SimError> {
        let t = self.t(object)?;
        Ok(self.shared.db.write().purge(t, id))
    }

    /// Restores an archived object.
    pub fn restore(&self, object: &str, id: u64) -> Result<(), SimError> {
        let t = self.t(object)?;
        self.shared.apply(WriteOp::Restore {
            t,
            id,
            source: "CRM_UI",
        })?;
        Ok(())
    }

    /// Merges `secondary` into `primary` (the secondary id disappears).
    pub fn merge(&self, object: &str, primary: u64, secondary: u64) -> Result<(), SimError> {
        let t = self.t(object)?;
        self.shared.apply(WriteOp::Merge {
            t,
            primary,
            secondary,
            source: "CRM_UI",
        })?;
        Ok(())
    }

    /// Applies `n` random changes now (the same generator as `--changes-per-sec`); returns how many applied.
    pub fn random_changes(&self, n: usize) -> usize {
        self.shared.random_changes(n)
    }

    /// Ground truth of one object, every property (following merges; archived ones too).
    pub fn get(&self, object: &str, id: u64) -> Option<CrmObject> {
        let db = self.shared.db.read();
        let t = db.type_idx(object).ok()?;
        db.get(t, id).map(|r| Db::render_all(&db.types[t], r))
    }

    /// Ground truth of a type, every property, in id order (archived ones included, merged-away ones not).
    pub fn records(&self, object: &str) -> Result<Vec<CrmObject>, SimError> {
        let db = self.shared.db.read();
        let t = db.type_idx(object)?;
        Ok(db.stores[t]
            .records
            .values()
            .map(|r| Db::render_all(&db.types[t], r))
            .collect())
    }

    /// Objects of a type: (live, archived).
    pub fn count(&self, object: &str) -> Result<(usize, usize), SimError> {
        let db = self.shared.db.read();
        let s = db.store(object)?;
        let archived = s.records.values().filter(|r| r.archived).count();
        Ok((s.records.len() - archived, archived))
    }

    /// Runs a search in-process and returns the JSON body the HTTP endpoint would send.
    pub fn search(&self, object: &str, req: &SearchRequest) -> Result<Vec<u8>, SimError> {
        Ok(routes::search_bytes(&self.shared, object, req)?)
    }

    /// Makes every write visible to search now.
    pub fn flush_index(&self) {
        self.shared.db.write().flush_index();
    }

    /// Sets (or with `None` stops) the webhook target; `secret` defaults to the client secret.
    pub fn set_webhook_target(&self, url: Option<&str>, secret: Option<&str>) {
        self.shared.webhooks.lock().target = url.map(|u| webhooks::Target {
            url: u.to_string(),
            secret: secret
                .unwrap_or(self.shared.config.webhook_key())
                .to_string(),
        });
    }

    /// Current fault settings.
    pub fn faults(&self) -> FaultSettings {
        self.shared.faults.lock().settings.clone()
    }

    /// Changes fault settings (same document as `POST /sim/faults`).
    pub fn set_faults(&self, patch: FaultsPatch) -> Result<FaultSettings, SimError> {
        let mut f = self.shared.faults.lock();
        f.apply(patch)?;
        Ok(f.settings.clone())
    }

    /// Expires every issued OAuth access token; returns how many there were.
    pub fn expire_access_tokens(&self) -> usize {
        self.shared
            .auth
            .lock()
            .expire_all(std::time::Instant::now())
    }

    /// Request statistics.
    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().clone()
    }

    /// Stops the change generator, the webhook dispatcher and the server, waiting for in-flight requests.
    pub async fn shutdown(mut self) {
        for t in self.tasks.iter_mut().filter_map(Option::take) {
            t.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            if tokio::time::timeout(std::time::Duration::from_secs(2), server)
                .await
                .is_err()
            {
                tracing::warn!("hubspot simulator did not stop within 2 s");
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        for t in self.tasks.iter_mut().filter_map(Option::take) {
            t.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Runs the simulator until ctrl-c: what `crmflow sim hubspot` does.
pub async fn run(args: SimArgs) -> Result<(), SimError> {
    let sim = Simulator::start(args.into()).await?;
    let c = sim.config();
    println!("HubSpot simulator listening on {}", sim.base_url());
    println!("  API base URL:       {}", sim.base_url());
    println!("  Private-app token:  {}", c.private_app_token);
    println!(
        "  OAuth:              POST {}/oauth/v1/token  client_id={} client_secret={} refresh_token={}",
        sim.base_url(),
        c.client_id,
        c.client_secret,
        c.refresh_token
    );
    println!(
        "  Webhooks:           {} (signing key: the client secret unless --webhook-secret)",
        c.webhook_url
            .as_deref()
            .unwrap_or("off; POST /sim/webhooks {\"url\": ..} to start")
    );
    println!(
        "  Control:            {}/sim/stats, /sim/faults, /sim/state/{{object}}, /sim/changes?count=N, /sim/webhooks",
        sim.base_url()
    );
    for object in ["contacts", "deals", "jobs"] {
        let (live, archived) = sim.count(object)?;
        println!("  {object}: {live} live, {archived} archived");
    }
    println!("  jobs objectTypeId:  {}", sim.jobs_object_type_id());
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    sim.shutdown().await;
    Ok(())
}
