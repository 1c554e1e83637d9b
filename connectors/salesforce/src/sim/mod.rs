//! An in-memory Salesforce org over TLS, faithful enough that Salesforce clients (simple-salesforce, the
//! Pub/Sub API's gRPC clients, crmflow's own) work against it.
//!
//! One port serves, over TLS with a certificate generated at start (`tls.rs`): the OAuth token endpoint and
//! the SOAP `login` call (`auth.rs`), the REST API (`rest.rs`: SOQL via `soql.rs` evaluated by `store.rs`,
//! updated/deleted windows, composite reads, describe, limits), the Pub/Sub API over gRPC/HTTP2
//! (`pubsub.rs`, fed by the change-event bus in `events.rs`), and control endpoints under `/sim/`
//! (`control.rs`). Data is seeded (`data.rs`); faults and statistics are a middleware (`faults.rs`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), crmflow_salesforce::sim::SimError> {
//! use crmflow_salesforce::sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::for_tests()).await?;
//! let (url, ca_pem) = (sim.base_url(), sim.ca_pem()); // https://127.0.0.1:PORT and the CA to trust
//! # let _ = (url, ca_pem);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod auth;
mod config;
mod control;
mod data;
mod events;
mod faults;
#[cfg(test)]
mod proptests;
mod pubsub;
mod rest;
mod schema;
pub mod soql;
mod store;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use parking_lot::{Mutex, RwLock};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    SimArgs, SimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD,
    DEFAULT_SECURITY_TOKEN, DEFAULT_USERNAME,
};
pub use faults::{FaultSettings, FaultsPatch, Stats};
pub use pubsub::ALL_CHANGE_EVENTS;

use store::{Change, Db};

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Bad settings.
    #[error("salesforce simulator configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Certificate generation or TLS setup failed.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A write the simulator refused.
    #[error("{code}: {message}")]
    Write {
        /// Salesforce error code.
        code: String,
        /// Message.
        message: String,
    },
}

impl From<store::WriteError> for SimError {
    fn from(e: store::WriteError) -> Self {
        SimError::Write {
            code: e.code.to_string(),
            message: e.message,
        }
    }
}

/// State shared by every handler.
pub(crate) struct SharedState {
    pub config: SimConfig,
    /// `https://127.0.0.1:PORT`.
    pub base_url: String,
    /// Org id, 18 characters.
    pub org_id: String,
    /// Integration user id, 18 characters.
    pub user_id: String,
    pub db: RwLock<Db>,
    pub auth: Mutex<auth::AuthState>,
    pub bus: Mutex<events::EventBus>,
    pub faults: Mutex<FaultSettings>,
    pub stats: Mutex<Stats>,
    pub locators: Mutex<rest::Locators>,
    pub change_rng: Mutex<ChaCha8Rng>,
    /// Counts `break_streams` faults; every open `Subscribe` stream ends when it moves.
    pub stream_breaks: watch::Sender<u64>,
}

pub(crate) type Shared = Arc<SharedState>;

impl SharedState {
    /// The one write path: store, then the change-event bus, under the store lock so events are in commit
    /// order.
    fn write(
        &self,
        f: impl FnOnce(&mut Db, i64) -> Result<Vec<Change>, store::WriteError>,
    ) -> Result<Vec<Change>, SimError> {
        let mut db = self.db.write();
        let at = db.tick(chrono::Utc::now().timestamp_millis());
        let changes = f(&mut db, at)?;
        let defs: Vec<schema::ObjectDef> = db.objects.iter().map(|o| o.def.clone()).collect();
        self.bus.lock().publish(&defs, &changes, at);
        Ok(changes)
    }

    /// A purge publishes nothing: that is the point of it.
    fn purge(&self, object: usize, id: &str) -> Result<(), SimError> {
        self.db.write().purge(object, id)?;
        Ok(())
    }

    fn random_changes(&self, n: usize) -> usize {
        let mut applied = 0;
        for _ in 0..n {
            let op = {
                let db = self.db.read();
                let mut rng = self.change_rng.lock();
                data::random_op(&db, &mut rng)
            };
            let Some(op) = op else { continue };
            let r = self.write(|db, at| match op {
                data::RandomOp::Insert(o, f) => db.insert(o, &f, at).map(|c| vec![c]),
                data::RandomOp::Update(o, id, f) => db.update(o, &id, &f, at).map(|c| vec![c]),
                data::RandomOp::Delete(o, id) => db.delete(o, &id, at).map(|c| vec![c]),
                data::RandomOp::Undelete(o, id) => db.undelete(o, &id, at).map(|c| vec![c]),
                data::RandomOp::Merge(o, w, l) => db.merge(o, &w, &l, at),
            });
            if r.is_ok() {
                applied += 1;
            }
        }
        applied
    }

    fn apply_faults(&self, p: &FaultsPatch) {
        {
            let mut f = self.faults.lock();
            macro_rules! set {
                ($($k:ident),*) => { $( if let Some(v) = p.$k { f.$k = v; } )* };
            }
            set!(
                latency_ms,
                error_rate,
                fail_next,
                hang_next,
                hang_ms,
                limit_exceeded_next,
                daily_api_limit,
                api_usage,
                gap_next,
                overflow_next
            );
            let mut bus = self.bus.lock();
            bus.faults.gap_next = f.gap_next;
            bus.faults.overflow_next = f.overflow_next;
        }
        if p.expire_sessions {
            self.auth.lock().expire_all();
        }
        if p.purge_events {
            self.bus.lock().purge_all();
        }
        if p.break_streams {
            self.stream_breaks.send_modify(|n| *n += 1);
        }
        if p.purge_deleted_log {
            let now = chrono::Utc::now().timestamp_millis();
            let mut db = self.db.write();
            for o in 0..db.objects.len() {
                db.purge_deleted_log(o, now);
            }
        }
    }

    fn info(&self) -> Value {
        let db = self.db.read();
        json!({
            "base_url": self.base_url,
            "instance_url": self.base_url,
            "token_url": format!("{}/services/oauth2/token", self.base_url),
            "soap_url": format!("{}/services/Soap/u/62.0", self.base_url),
            "org_id": self.org_id,
            "user_id": self.user_id,
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "username": self.config.username,
            "password": self.config.password,
            "security_token": self.config.security_token,
            "objects": db.objects.iter().map(|o| json!({"name": o.def.name, "topic": o.def.topic(), "key_prefix": o.def.key_prefix})).collect::<Vec<_>>(),
        })
    }

    fn stats_json(&self) -> Value {
        let mut v = serde_json::to_value(self.stats.lock().clone()).unwrap_or_default();
        let (live, issued, rejected) = {
            let a = self.auth.lock();
            (a.live(), a.issued, a.rejected)
        };
        v["live_sessions"] = live.into();
        v["sessions_issued"] = issued.into();
        v["sessions_rejected"] = rejected.into();
        {
            let f = self.faults.lock();
            v["api_usage"] = json!({"used": f.api_usage, "max": f.daily_api_limit});
        }
        {
            let bus = self.bus.lock();
            v["events_published"] = bus.published.into();
            v["events_purged"] = bus.purged.into();
            v["tip_replay"] = bus.tip().into();
        }
        let db = self.db.read();
        let mut records = Map::new();
        for o in &db.objects {
            let deleted = o.records.values().filter(|r| r.is_deleted).count();
            records.insert(
                o.def.name.clone(),
                json!({"total": o.records.len(), "deleted": deleted}),
            );
        }
        v["records"] = Value::Object(records);
        v
    }
}

/// Entry point.
pub struct Simulator;

impl Simulator {
    /// Generates certificates and data, binds `config.listen` (port 0 allowed) and serves on the current
    /// tokio runtime.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        config.validate().map_err(SimError::Config)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr()?;
        let certs = tls::generate().map_err(|e| SimError::Tls(e.to_string()))?;
        let tls_config = tls::server_config(&certs).map_err(|e| SimError::Tls(e.to_string()))?;
        if let Some(path) = &config.ca_out {
            std::fs::write(path, &certs.ca_pem)?;
        }
        let pod = "5g";
        let org_id = crate::ids::make("00D", pod, config.seed % 1_000_000 + 1);
        let user_id = crate::ids::make("005", pod, config.seed % 1_000_000 + 1);
        let now = chrono::Utc::now().timestamp_millis();
        let db = {
            let cfg = config.clone();
            let owner = user_id.clone();
            tokio::task::spawn_blocking(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
                data::generate(&cfg, &mut rng, pod, owner, now)
            })
            .await
            .map_err(|e| SimError::Config(format!("data generation failed: {e}")))?
        };
        let defs: Vec<schema::ObjectDef> = db.objects.iter().map(|o| o.def.clone()).collect();
        let bus = events::EventBus::new(&defs, config.event_retention_secs, user_id.clone())
            .map_err(SimError::Config)?;
        let faults = FaultSettings {
            latency_ms: config.latency_ms,
            error_rate: config.error_rate,
            fail_next: 0,
            hang_next: 0,
            hang_ms: 30_000,
            limit_exceeded_next: 0,
            daily_api_limit: config.daily_api_limit,
            api_usage: 0,
            gap_next: 0,
            overflow_next: 0,
        };
        let shared: Shared = Arc::new(SharedState {
            base_url: format!("https://{addr}"),
            org_id,
            user_id,
            db: RwLock::new(db),
            auth: Mutex::new(auth::AuthState::default()),
            bus: Mutex::new(bus),
            faults: Mutex::new(faults),
            stats: Mutex::new(Stats::default()),
            locators: Mutex::new(rest::Locators::default()),
            change_rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(1))),
            stream_breaks: watch::channel(0).0,
            config,
        });
        let app = router(shared.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(tls::serve(listener, tls_config, app, stop_rx));
        let changer = (shared.config.changes_per_sec > 0.0).then(|| {
            let s = shared.clone();
            let rate = s.config.changes_per_sec;
            tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
                loop {
                    tick.tick().await;
                    s.random_changes(1);
                }
            })
        });
        tracing::info!(base_url = %shared.base_url, "salesforce simulator listening");
        Ok(SimHandle {
            shared,
            addr,
            ca_pem: certs.ca_pem,
            stop: stop_tx,
            server: Some(server),
            changer,
        })
    }
}

fn router(shared: Shared) -> Router {
    let data = Router::new()
        .route("/services/data/{v}/query", get(rest::query))
        .route("/services/data/{v}/query/", get(rest::query))
        .route("/services/data/{v}/query/{next}", get(rest::query_more))
        .route("/services/data/{v}/queryAll", get(rest::query_all))
        .route("/services/data/{v}/queryAll/", get(rest::query_all))
        .route("/services/data/{v}/queryAll/{next}", get(rest::query_more))
        .route(
            "/services/data/{v}/sobjects/{obj}/updated",
            get(rest::updated),
        )
        .route(
            "/services/data/{v}/sobjects/{obj}/updated/",
            get(rest::updated),
        )
        .route(
            "/services/data/{v}/sobjects/{obj}/deleted",
            get(rest::deleted),
        )
        .route(
            "/services/data/{v}/sobjects/{obj}/deleted/",
            get(rest::deleted),
        )
        .route(
            "/services/data/{v}/sobjects/{obj}/describe",
            get(rest::describe),
        )
        .route(
            "/services/data/{v}/sobjects/{obj}/describe/",
            get(rest::describe),
        )
        .route(
            "/services/data/{v}/sobjects/{obj}/{id}",
            get(rest::get_record),
        )
        .route(
            "/services/data/{v}/composite/sobjects/{obj}",
            get(rest::composite_get).post(rest::composite_post),
        )
        .route("/services/data/{v}/limits", get(rest::limits))
        .route("/services/data/{v}/limits/", get(rest::limits))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            rest::require_session,
        ));
    let open = Router::new()
        .route("/services/data", get(rest::versions))
        .route("/services/oauth2/token", post(auth::token))
        .route("/services/Soap/u/{version}", post(auth::soap_login));
    let api = data.merge(open).layer(axum::middleware::from_fn_with_state(
        shared.clone(),
        faults::layer,
    ));
    let control = Router::new()
        .route("/sim/state", get(control::state))
        .route("/sim/state/{obj}", get(control::state_of))
        .route("/sim/changes", get(control::changes).post(control::changes))
        .route("/sim/stats", get(control::stats))
        .route(
            "/sim/faults",
            get(control::faults).post(control::patch_faults),
        )
        .route("/sim/info", get(control::info))
        .route("/sim/purge/{obj}/{id}", post(control::purge));
    let grpc = crate::proto::pub_sub_server::PubSubServer::new(pubsub::PubSubService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(16 << 20);
    api.merge(control)
        .route_service("/eventbus.v1.PubSub/{*method}", grpc)
        .with_state(shared)
}

/// A running simulator. Dropping it stops serving new connections; prefer [`SimHandle::shutdown`].
pub struct SimHandle {
    shared: Shared,
    addr: SocketAddr,
    ca_pem: String,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    changer: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`: the instance URL, the login URL and the Pub/Sub endpoint.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// Org id (18 characters; the Pub/Sub `tenantid`).
    pub fn org_id(&self) -> String {
        self.shared.org_id.clone()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// A new live session id, as a login would return.
    pub fn issue_session(&self) -> String {
        let ttl = Duration::from_secs(self.shared.config.session_ttl_secs);
        self.shared
            .auth
            .lock()
            .issue(&self.shared.org_id[..15], ttl)
    }

    /// The API name of object `i` (0: the Contact-like object, 1: the position object).
    pub fn object_name(&self, i: usize) -> String {
        self.shared.db.read().objects[i].def.name.clone()
    }

    /// The change-event topic of object `i`.
    pub fn topic(&self, i: usize) -> String {
        self.shared.db.read().objects[i].def.topic()
    }

    fn object(&self, name: &str) -> Result<usize, SimError> {
        self.shared
            .db
            .read()
            .object_index(name)
            .ok_or_else(|| SimError::Config(format!("unknown object {name}")))
    }

    fn as_map(fields: Value) -> Result<Map<String, Value>, SimError> {
        match fields {
            Value::Object(m) => Ok(m),
            _ => Err(SimError::Config("fields must be a JSON object".into())),
        }
    }

    /// Creates a record; returns its id.
    pub fn insert(&self, object: &str, fields: Value) -> Result<String, SimError> {
        let o = self.object(object)?;
        let f = Self::as_map(fields)?;
        let c = self
            .shared
            .write(|db, at| db.insert(o, &f, at).map(|c| vec![c]))?;
        Ok(c[0].id.clone())
    }

    /// Changes fields of a record.
    pub fn update(&self, object: &str, id: &str, fields: Value) -> Result<(), SimError> {
        let o = self.object(object)?;
        let f = Self::as_map(fields)?;
        self.shared
            .write(|db, at| db.update(o, id, &f, at).map(|c| vec![c]))?;
        Ok(())
    }

    /// Moves a record to the recycle bin.
    pub fn delete(&self, object: &str, id: &str) -> Result<(), SimError> {
        let o = self.object(object)?;
        self.shared
            .write(|db, at| db.delete(o, id, at).map(|c| vec![c]))?;
        Ok(())
    }

    /// Restores a record from the recycle bin.
    pub fn undelete(&self, object: &str, id: &str) -> Result<(), SimError> {
        let o = self.object(object)?;
        self.shared
            .write(|db, at| db.undelete(o, id, at).map(|c| vec![c]))?;
        Ok(())
    }

    /// Merges contact `loser` into `winner`.
    pub fn merge(&self, object: &str, winner: &str, loser: &str) -> Result<(), SimError> {
        let o = self.object(object)?;
        self.shared.write(|db, at| db.merge(o, winner, loser, at))?;
        Ok(())
    }

    /// Removes a record without a trace in any listing or event (see `POST /sim/purge/{object}/{id}`).
    pub fn purge(&self, object: &str, id: &str) -> Result<(), SimError> {
        let o = self.object(object)?;
        self.shared.purge(o, id)
    }

    /// Applies `n` random writes; returns how many applied.
    pub fn random_changes(&self, n: usize) -> usize {
        self.shared.random_changes(n)
    }

    /// Applies a fault patch (as `POST /sim/faults`).
    pub fn set_faults(&self, patch: &FaultsPatch) {
        self.shared.apply_faults(patch);
    }

    /// Current fault settings.
    pub fn faults(&self) -> FaultSettings {
        self.shared.faults.lock().clone()
    }

    /// Statistics (as `/sim/stats`).
    pub fn stats(&self) -> Value {
        self.shared.stats_json()
    }

    /// A record with every field, deleted ones included.
    pub fn get(&self, object: &str, id: &str) -> Option<Value> {
        let o = self.object(object).ok()?;
        let db = self.shared.db.read();
        db.get(o, id).map(|r| Value::Object(r.fields.clone()))
    }

    /// Every record of an object (as `/sim/state/{object}`).
    pub fn records(&self, object: &str) -> Result<Vec<Value>, SimError> {
        let o = self.object(object)?;
        let db = self.shared.db.read();
        Ok(db.objects[o]
            .records
            .values()
            .map(|r| Value::Object(r.fields.clone()))
            .collect())
    }

    /// Stops serving.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(c) = self.changer.take() {
            c.abort();
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(c) = self.changer.take() {
            c.abort();
        }
    }
}

/// `crmflow sim salesforce`: runs until Ctrl-C.
pub async fn run(args: SimArgs) -> Result<(), SimError> {
    let config = SimConfig::from_args(args).map_err(SimError::Config)?;
    let sim = Simulator::start(config).await?;
    let info = sim.shared.info();
    println!(
        "Salesforce simulator listening on {} (HTTPS + gRPC)",
        sim.base_url()
    );
    match &sim.config().ca_out {
        Some(p) => println!("  CA certificate:  {}", p.display()),
        None => println!("  CA certificate:  pass --ca-out FILE to write it for clients"),
    }
    println!(
        "  OAuth token URL: {}",
        info["token_url"].as_str().unwrap_or("")
    );
    println!(
        "  SOAP login URL:  {}",
        info["soap_url"].as_str().unwrap_or("")
    );
    println!(
        "  client_id={} client_secret={}",
        sim.config().client_id,
        sim.config().client_secret
    );
    println!(
        "  username={} password={} security_token={}",
        sim.config().username,
        sim.config().password,
        sim.config().security_token
    );
    println!("  org (tenant) id: {}", sim.org_id());
    println!(
        "  Pub/Sub topics:  {}, {}, {}",
        sim.topic(0),
        sim.topic(1),
        ALL_CHANGE_EVENTS
    );
    println!(
        "  Control:         {}/sim/state, /sim/changes?count=N, /sim/stats, /sim/faults, /sim/info",
        sim.base_url()
    );
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    sim.shutdown().await;
    Ok(())
}
