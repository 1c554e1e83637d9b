//! A Bullhorn REST simulator faithful enough that real Bullhorn clients work against it.
//!
//! One listener serves the OAuth flow under `/oauth/`, the REST API under `/rest-services/` (discovery and
//! login without a session, everything else under `/rest-services/{corpToken}/` with one), a wrong data center
//! under `/west/` that answers 307, and control endpoints under `/sim/`. Data is generated from a seed
//! (`data.rs`), kept in memory (`store.rs`), queried with Lucene (`lucene.rs`) or JPQL (`jpql.rs`) through one
//! predicate tree (`filter.rs`), rendered with Bullhorn's `fields` selection (`fields.rs`); writes feed event
//! subscriptions (`events.rs`); faults and statistics are middlewares (`faults.rs`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), crmflow_bullhorn::sim::SimError> {
//! use crmflow_bullhorn::sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::for_tests()).await?;
//! let rest_url = sim.rest_services_url(); // what a client gets as BULLHORN_REST_URL
//! # let _ = rest_url;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod auth;
mod changes;
mod config;
mod control;
mod custom;
mod data;
mod error;
mod events;
mod faults;
mod fields;
mod filter;
mod jpql;
mod lucene;
#[cfg(test)]
mod proptests;
mod routes;
mod schema;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{
    SimArgs, SimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
};
pub use error::{ApiError, SimError};
pub use events::EmptyPoll;
pub use faults::{FaultSettings, FaultsPatch, Stats};
pub use store::SoftDeleteEvent;

use store::{Change, Db};

/// Credentials the simulator accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// API user name.
    pub username: String,
    /// API user password.
    pub password: String,
}

/// A write, as the REST API and the in-process API both express it.
#[derive(Debug, Clone)]
pub(crate) enum WriteOp {
    Insert {
        entity: String,
        fields: Map<String, Value>,
    },
    Update {
        entity: String,
        id: i64,
        fields: Map<String, Value>,
    },
    Delete {
        entity: String,
        id: i64,
    },
}

/// State shared by every handler.
pub(crate) struct SharedState {
    /// Settings the simulator started with.
    pub config: SimConfig,
    /// Corp token of session URLs.
    pub corp_token: String,
    /// `http://host:port` the listener answers on.
    pub base_url: String,
    /// The records.
    pub db: RwLock<Db>,
    /// Codes, tokens and sessions.
    pub auth: Mutex<auth::AuthState>,
    /// Event subscriptions.
    pub events: Mutex<events::Events>,
    /// Fault settings and state.
    pub faults: Mutex<faults::FaultState>,
    /// Request statistics.
    pub stats: Mutex<faults::Stats>,
    /// RNG of the change generator.
    pub change_rng: Mutex<ChaCha8Rng>,
}

pub(crate) type Shared = Arc<SharedState>;

impl SharedState {
    /// The one write path: store first, then event subscriptions, under the store lock so events are
    /// published in `dateLastModified` order.
    pub fn apply(&self, op: WriteOp) -> Result<Change, ApiError> {
        let mut db = self.db.write();
        let change = match &op {
            WriteOp::Insert { entity, fields } => db.insert(entity, fields)?,
            WriteOp::Update { entity, id, fields } => db.update(entity, *id, fields)?,
            WriteOp::Delete { entity, id } => db.delete(entity, *id)?,
        };
        self.events.lock().publish(&change);
        Ok(change)
    }

    /// Applies `n` random changes from the change generator; returns how many succeeded.
    pub fn random_changes(&self, n: usize) -> usize {
        let mut applied = 0;
        for _ in 0..n {
            let op = {
                let db = self.db.read();
                let mut rng = self.change_rng.lock();
                changes::random_op(&db, &mut rng)
            };
            if let Some(op) = op {
                if self.apply(op).is_ok() {
                    applied += 1;
                }
            }
        }
        applied
    }

    /// Hard-deletes a record without telling anyone (see [`store::Db::purge`]).
    pub fn hard_delete(&self, entity: &str, id: i64) -> Result<bool, ApiError> {
        self.db.write().purge(entity, id)
    }

    /// Merges `loser` into `winner` as Bullhorn's duplicate merge does: the winner takes the loser's
    /// values for fields it has empty (an ordinary update: a new `dateLastModified`, and an UPDATED event
    /// unless `silent`), and the loser disappears without a trace in the incremental feed (no event, no
    /// tombstone). Returns the winner's new `dateLastModified`.
    pub fn merge(
        &self,
        entity: &str,
        winner: i64,
        loser: i64,
        silent: bool,
    ) -> Result<i64, ApiError> {
        let mut db = self.db.write();
        let (w, l) = match (db.record(entity, winner), db.record(entity, loser)) {
            (Some(w), Some(l)) if winner != loser => (w.fields.clone(), l.fields.clone()),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "merge needs two existing {entity} records, got {winner} and {loser}"
                )))
            }
        };
        let empty = |v: Option<&Value>| match v {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        let def = db.store(entity)?.def;
        let mut body = Map::new();
        for key in [
            "email",
            "email2",
            "phone",
            "mobile",
            "occupation",
            "companyName",
        ] {
            if def.field(key).is_some() && empty(w.get(key)) && !empty(l.get(key)) {
                body.insert(key.to_owned(), l[key].clone());
            }
        }
        // Always a change on the winner, as a real merge writes its history.
        if def.field("comments").is_some() {
            let note = format!("merged with {loser}");
            body.insert("comments".to_owned(), Value::String(note));
        }
        let change = db.update(entity, winner, &body)?;
        db.purge(entity, loser)?;
        if !silent {
            self.events.lock().publish(&change);
        }
        Ok(change.timestamp)
    }

    /// Starts or ends an event-subscription lapse (see [`events::Events::set_lapsed`]).
    pub fn lapse_events(&self, lapsed: bool) -> usize {
        self.events.lock().set_lapsed(lapsed)
    }

    fn info(&self) -> Value {
        json!({
            "base_url": self.base_url,
            "rest_services_url": format!("{}/rest-services", self.base_url),
            "oauth_url": format!("{}/oauth", self.base_url),
            "corp_token": self.corp_token,
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "username": self.config.username,
            "password": self.config.password,
        })
    }

    fn stats_json(&self) -> Value {
        let stats = self.stats.lock().clone();
        let sessions = self.auth.lock().live_sessions();
        let records: Map<String, Value> = {
            let db = self.db.read();
            db.stores
                .iter()
                .map(|s| (s.def.name.to_string(), s.records.len().into()))
                .collect()
        };
        let mut v = serde_json::to_value(stats).unwrap_or_default();
        v["active_sessions"] = sessions.into();
        v["records"] = Value::Object(records);
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
            tokio::task::spawn_blocking(move || data::generate(&cfg))
                .await
                .map_err(|e| SimError::Config(format!("data generation failed: {e}")))?
        };
        let settings = FaultSettings {
            rate_limit_per_min: config.rate_limit_per_min,
            retry_after_secs: config.retry_after_secs,
            error_rate: config.error_rate,
            drop_rate: config.drop_rate,
            latency_ms: config.latency_ms,
            fail_next: 0,
            drop_next: 0,
            rate_limit_next: 0,
            max_concurrent_sessions: config.max_concurrent_sessions,
        };
        let shared: Shared = Arc::new(SharedState {
            corp_token: config.corp_token(),
            base_url: format!("http://{addr}"),
            db: RwLock::new(db),
            auth: Mutex::new(auth::AuthState::default()),
            events: Mutex::new(events::Events::new(
                config.event_requestid_depth,
                config.max_subscriptions,
            )),
            faults: Mutex::new(faults::FaultState::new(settings, config.seed)),
            stats: Mutex::new(faults::Stats::default()),
            change_rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(1))),
            config,
        });
        let (tx, rx) = oneshot::channel::<()>();
        let app = routes::router(shared.clone());
        let server = tokio::spawn(async move {
            let limits = crmflow_httpd::Limits::default();
            crmflow_httpd::serve(listener, app, limits, async {
                let _ = rx.await;
            })
            .await;
        });
        let changer = (shared.config.changes_per_sec > 0.0)
            .then(|| tokio::spawn(changes::run(shared.clone(), shared.config.changes_per_sec)));
        tracing::info!(base_url = %shared.base_url, "bullhorn simulator listening");
        Ok(SimHandle {
            shared,
            addr,
            shutdown: Some(tx),
            server: Some(server),
            changer,
        })
    }
}

/// A running simulator. Dropping it stops the server (without waiting); prefer [`SimHandle::shutdown`].
pub struct SimHandle {
    shared: Shared,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    changer: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// Address the listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `{base}/rest-services`: the value of `BULLHORN_REST_URL` for a client.
    pub fn rest_services_url(&self) -> String {
        format!("{}/rest-services", self.shared.base_url)
    }

    /// `{base}/west/rest-services`: a wrong data center that answers 307 to the right one.
    pub fn wrong_dc_rest_services_url(&self) -> String {
        format!("{}/west/rest-services", self.shared.base_url)
    }

    /// `{base}/oauth`.
    pub fn oauth_url(&self) -> String {
        format!("{}/oauth", self.shared.base_url)
    }

    /// Session base URL, `{base}/rest-services/{corpToken}/`, as `/login` returns it.
    pub fn session_rest_url(&self) -> String {
        format!(
            "{}/rest-services/{}/",
            self.shared.base_url, self.shared.corp_token
        )
    }

    /// Corp token of session URLs.
    pub fn corp_token(&self) -> String {
        self.shared.corp_token.clone()
    }

    /// Credentials the simulator accepts.
    pub fn credentials(&self) -> Credentials {
        let c = &self.shared.config;
        Credentials {
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone(),
            username: c.username.clone(),
            password: c.password.clone(),
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// Creates a record (as `PUT entity/{Type}`); returns its id.
    pub fn insert(&self, entity: &str, fields: Value) -> Result<i64, SimError> {
        let fields = as_object(fields)?;
        Ok(self
            .shared
            .apply(WriteOp::Insert {
                entity: entity.into(),
                fields,
            })?
            .id)
    }

    /// Changes a record (as `POST entity/{Type}/{id}`); returns the new `dateLastModified`.
    pub fn update(&self, entity: &str, id: i64, fields: Value) -> Result<i64, SimError> {
        let fields = as_object(fields)?;
        Ok(self
            .shared
            .apply(WriteOp::Update {
                entity: entity.into(),
                id,
                fields,
            })?
            .timestamp)
    }

    /// Soft-deletes a record (as `DELETE entity/{Type}/{id}`); returns the new `dateLastModified`.
    pub fn soft_delete(&self, entity: &str, id: i64) -> Result<i64, SimError> {
        Ok(self
            .shared
            .apply(WriteOp::Delete {
                entity: entity.into(),
                id,
            })?
            .timestamp)
    }

    /// Hard-deletes a record: it vanishes without an event or a newer `dateLastModified` (as a purge or a
    /// GDPR erasure). `true` when it existed.
    pub fn hard_delete(&self, entity: &str, id: i64) -> Result<bool, SimError> {
        Ok(self.shared.hard_delete(entity, id)?)
    }

    /// Merges duplicate `loser` into `winner` (the loser vanishes unreported; the winner is updated, with an
    /// event unless `silent`); returns the winner's new `dateLastModified`.
    pub fn merge(
        &self,
        entity: &str,
        winner: i64,
        loser: i64,
        silent: bool,
    ) -> Result<i64, SimError> {
        Ok(self.shared.merge(entity, winner, loser, silent)?)
    }

    /// Lapses every event subscription (`true`: queued events are dropped and writes publish nothing) or
    /// ends the lapse; returns the number of queued events dropped.
    pub fn lapse_events(&self, lapsed: bool) -> usize {
        self.shared.lapse_events(lapsed)
    }

    /// Applies `n` random changes now (the same generator as `--changes-per-sec`); returns how many applied.
    pub fn random_changes(&self, n: usize) -> usize {
        self.shared.random_changes(n)
    }

    /// A record with every stored field (`None` if absent).
    pub fn get(&self, entity: &str, id: i64) -> Option<Value> {
        self.shared
            .db
            .read()
            .record(entity, id)
            .map(|r| Value::Object(r.fields.clone()))
    }

    /// Every record of a type with every stored field, in id order (deleted ones included).
    pub fn records(&self, entity: &str) -> Result<Vec<Value>, SimError> {
        let db = self.shared.db.read();
        Ok(db
            .store(entity)?
            .records
            .values()
            .map(|r| Value::Object(r.fields.clone()))
            .collect())
    }

    /// `(id, dateLastModified, isDeleted)` of every record of a type, in id order (cheap: no field is
    /// cloned; for seeding a large comparison).
    pub fn versions(&self, entity: &str) -> Result<Vec<(i64, i64, bool)>, SimError> {
        let db = self.shared.db.read();
        Ok(db
            .store(entity)?
            .records
            .values()
            .map(|r| (r.id, r.modified, r.deleted))
            .collect())
    }

    /// Number of records of a type (deleted ones included).
    pub fn count(&self, entity: &str) -> Result<usize, SimError> {
        Ok(self.shared.db.read().store(entity)?.records.len())
    }

    /// Runs `search/{entity}` in-process and returns the JSON body the HTTP endpoint would send.
    pub fn search(
        &self,
        entity: &str,
        query: &str,
        fields: Option<&str>,
        sort: Option<&str>,
        start: usize,
        count: usize,
    ) -> Result<Vec<u8>, SimError> {
        let mut p = std::collections::HashMap::new();
        if let Some(f) = fields {
            p.insert("fields".to_string(), f.to_string());
        }
        if let Some(s) = sort {
            p.insert("sort".to_string(), s.to_string());
        }
        p.insert("start".to_string(), start.to_string());
        p.insert("count".to_string(), count.to_string());
        let r = routes::parse_search(entity, &p, Some(query.to_string()))?;
        Ok(routes::list_bytes(
            &self.shared,
            entity,
            &r.filter,
            r.sel.as_deref(),
            &r.sort,
            r.start,
            r.count,
            routes::ListKind::Search,
            r.over_limit,
        )?)
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

    /// REST requests per minute before 429 (0 = unlimited).
    pub fn set_rate_limit_per_min(&self, limit: u32) {
        let _ = self.set_faults(FaultsPatch {
            rate_limit_per_min: Some(limit),
            ..Default::default()
        });
    }

    /// Share of requests answered 500/503 (clamped to 0..=1).
    pub fn set_error_rate(&self, rate: f64) {
        let _ = self.set_faults(FaultsPatch {
            error_rate: Some(rate.clamp(0.0, 1.0)),
            ..Default::default()
        });
    }

    /// Latency added to every request.
    pub fn set_latency_ms(&self, ms: u64) {
        let _ = self.set_faults(FaultsPatch {
            latency_ms: Some(ms),
            ..Default::default()
        });
    }

    /// Share of requests whose connection is dropped (clamped to 0..=1).
    pub fn set_drop_rate(&self, rate: f64) {
        let _ = self.set_faults(FaultsPatch {
            drop_rate: Some(rate.clamp(0.0, 1.0)),
            ..Default::default()
        });
    }

    /// Drops the connections of the next `n` requests.
    pub fn drop_next(&self, n: u32) {
        let _ = self.set_faults(FaultsPatch {
            drop_next: Some(n),
            ..Default::default()
        });
    }

    /// Answers the next `n` requests with 500/503.
    pub fn fail_next(&self, n: u32) {
        let _ = self.set_faults(FaultsPatch {
            fail_next: Some(n),
            ..Default::default()
        });
    }

    /// Expires every session; returns how many there were.
    pub fn expire_all_sessions(&self) -> usize {
        self.shared.auth.lock().expire_sessions()
    }

    /// Clears the request statistics (as `POST /sim/stats/reset`).
    pub fn reset_stats(&self) {
        *self.shared.stats.lock() = Default::default();
    }

    /// Request statistics (same as `GET /sim/stats` minus the live extras).
    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().clone()
    }

    /// Stops the change generator and the server, waiting for in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(c) = self.changer.take() {
            c.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            // Idle keep-alive connections would hold graceful shutdown open; bound the wait.
            if tokio::time::timeout(std::time::Duration::from_secs(2), server)
                .await
                .is_err()
            {
                tracing::warn!("bullhorn simulator did not stop within 2 s");
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(c) = self.changer.take() {
            c.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn as_object(v: Value) -> Result<Map<String, Value>, SimError> {
    match v {
        Value::Object(m) => Ok(m),
        other => {
            Err(ApiError::bad_request(format!("fields must be a JSON object, got {other}")).into())
        }
    }
}

/// Runs the simulator until ctrl-c: what `crmflow sim bullhorn` does.
pub async fn run(args: SimArgs) -> Result<(), SimError> {
    let sim = Simulator::start(args.into()).await?;
    let c = sim.credentials();
    println!("Bullhorn simulator listening on {}", sim.base_url());
    println!("  BULLHORN_REST_URL={}", sim.rest_services_url());
    println!("  OAuth:            {}", sim.oauth_url());
    println!("  Session REST URL: {}", sim.session_rest_url());
    println!("  BULLHORN_CLIENT_ID={}", c.client_id);
    println!("  BULLHORN_CLIENT_SECRET={}", c.client_secret);
    println!("  BULLHORN_USERNAME={}", c.username);
    println!("  BULLHORN_PASSWORD={}", c.password);
    println!(
        "  Control:          {}/sim/stats, /sim/faults, /sim/expire-sessions, /sim/state/{{Type}}",
        sim.base_url()
    );
    for entity in [
        "Candidate",
        "JobOrder",
        "ClientCorporation",
        "ClientContact",
    ] {
        println!("  {entity}: {} records", sim.count(entity)?);
    }
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    sim.shutdown().await;
    Ok(())
}
