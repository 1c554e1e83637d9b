//! Where the pipeline stands, read from the outside (Kafka watermarks and group offsets,
//! Postgres positions and heartbeats): each stage's lag per partition, each source's sync point,
//! the dead-letter depth, and the last error a stage reported. `crmflow status` prints it; the
//! running process uses the same lag functions for its `crmflow_consumer_lag` gauges.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use rdkafka::consumer::BaseConsumer;
use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::kafka::Topics;
use crate::runtime::progress::{committed_positions, partition_lags};
use crate::runtime::StageName;

pub use crate::runtime::progress::PartitionLag;

/// Kafka clients for lag queries: one group-less client for watermarks and metadata, and one
/// per consumer group for committed offsets (created on first use, reused after).
pub struct LagProbe {
    cfg: Config,
    watermarks: BaseConsumer,
    groups: HashMap<String, BaseConsumer>,
}

impl LagProbe {
    pub fn new(cfg: &Config) -> Result<Self> {
        let watermarks = crate::kafka::client_config(&cfg.kafka)
            .set("client.id", "crmflow-status")
            .create()?;
        Ok(Self {
            cfg: cfg.clone(),
            watermarks,
            groups: HashMap::new(),
        })
    }

    /// Lag of every input partition of `stage` (blocking; call from a blocking context).
    /// `stored` are the positions a Postgres-checkpointed stage keeps in `stage_offsets`;
    /// without them, the stage's consumer group's committed offsets count.
    fn kafka_lag(
        &mut self,
        stage: StageName,
        stored: Option<&HashMap<(String, i32), i64>>,
    ) -> Result<Vec<PartitionLag>> {
        let topics = crate::pipeline::input_topics(&self.cfg, stage);
        let group = Topics::new(&self.cfg.kafka).group(stage.as_str());
        let cfg = &self.cfg;
        let groups = &mut self.groups;
        partition_lags(&self.watermarks, &topics, |parts| match stored {
            Some(s) => Ok(s.clone()),
            None => {
                let c = match groups.entry(group) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(v) => {
                        let c = crate::kafka::client_config(&cfg.kafka)
                            .set("client.id", "crmflow-status")
                            .set("group.id", v.key())
                            .set("enable.auto.commit", "false")
                            .create()?;
                        v.insert(c)
                    }
                };
                committed_positions(c, parts)
            }
        })
    }

    /// Lag of `stage`: Kafka input partitions for normalize (group offsets), sink and embed
    /// (positions in Postgres); the queue length for match; nothing for ingest.
    pub async fn stage_lag(
        &mut self,
        client: &impl deadpool_postgres::GenericClient,
        stage: StageName,
    ) -> Result<Vec<PartitionLag>> {
        match stage {
            StageName::Ingest | StageName::Ingress => Ok(Vec::new()),
            StageName::Match => {
                let n: i64 = client
                    .query_one("SELECT count(*) FROM match_queue", &[])
                    .await?
                    .get(0);
                Ok(vec![PartitionLag {
                    topic: "match_queue".into(),
                    partition: -1,
                    position: 0,
                    end: n,
                    lag: n,
                }])
            }
            StageName::Normalize => tokio::task::block_in_place(|| self.kafka_lag(stage, None)),
            StageName::Sink | StageName::Embed => {
                let group = Topics::new(&self.cfg.kafka).group(stage.as_str());
                let stored = crate::runtime::offsets::load_all(client, &group).await?;
                tokio::task::block_in_place(|| self.kafka_lag(stage, Some(&stored)))
            }
        }
    }

    /// Messages retained in the dead-letter topic (high minus low watermark, summed).
    pub fn dlq_depth(&self) -> Result<i64> {
        let topic = Topics::new(&self.cfg.kafka).dlq();
        let parts = tokio::task::block_in_place(|| {
            partition_lags(&self.watermarks, &[topic], |_| Ok(HashMap::new()))
        })?;
        Ok(parts
            .iter()
            .filter(|p| p.partition >= 0)
            .map(|p| p.lag)
            .sum())
    }
}

/// One process running a stage, as its last heartbeat says.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub instance: String,
    pub heartbeat_at: DateTime<Utc>,
    pub alive: bool,
    pub last_progress_at: Option<DateTime<Utc>>,
    pub records_in: i64,
    pub records_out: i64,
    pub rejected: i64,
}

/// One stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageStatus {
    pub stage: &'static str,
    pub lag: Option<i64>,
    pub partitions: Vec<PartitionLag>,
    pub instances: Vec<Instance>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// One source entity (or another cursor key of a source, such as `events/<subscription>`).
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub source: String,
    pub entity: String,
    /// `null` before the first save.
    pub cursor: serde_json::Value,
    pub cursor_saved_at: Option<DateTime<Utc>>,
    pub synced_at: Option<DateTime<Utc>>,
    pub lag_seconds: Option<f64>,
    /// `polling`, `snapshot` or `streaming` (entities only).
    pub phase: Option<String>,
    /// During and after a snapshot: records it read, and found to read.
    pub snapshot_read: Option<i64>,
    pub snapshot_total: Option<i64>,
}

/// Which process reads a source (active) and which wait to take over (standby).
#[derive(Debug, Clone, Serialize)]
pub struct SourceReaders {
    pub source: String,
    /// The lease holder, while its lease is valid.
    pub active: Option<String>,
    /// The lease's epoch (incremented at each takeover).
    pub epoch: Option<i64>,
    pub active_since: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Instances waiting, with a recent heartbeat.
    pub standby: Vec<String>,
}

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub at: DateTime<Utc>,
    pub stages: Vec<StageStatus>,
    pub sources: Vec<SourceStatus>,
    /// Active and standby instances per source.
    pub readers: Vec<SourceReaders>,
    pub dlq_depth: i64,
    /// The latest reconcile of each CRM entity and what it found (empty before the first).
    pub reconcile: Vec<crate::reconcile::runs::LastRun>,
}

/// A heartbeat older than this means the instance is gone.
const ALIVE_WITHIN: Duration = Duration::from_secs(30);

/// Reads the status of the deployment `cfg` points at.
///
/// Read-only: it never migrates. A schema without crmflow's tables is an error that says so.
pub async fn read(cfg: &Config) -> Result<Status> {
    let pool = crate::store::pool(cfg)?;
    let client = pool.get().await?;
    crate::store::require_schema(&client, &cfg.postgres.schema).await?;
    let mut probe = LagProbe::new(cfg)?;
    let now = Utc::now();

    let rows = client
        .query(
            "SELECT stage, instance, heartbeat_at, last_progress_at, records_in, records_out,
                    rejected, last_error, last_error_at
             FROM stage_status ORDER BY stage, instance",
            &[],
        )
        .await?;
    let mut stages = Vec::new();
    for stage in StageName::ALL {
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| r.get::<_, &str>(0) == stage.as_str())
            .collect();
        let instances: Vec<Instance> = mine
            .iter()
            .map(|r| {
                let hb: DateTime<Utc> = r.get(2);
                Instance {
                    instance: r.get(1),
                    heartbeat_at: hb,
                    alive: (now - hb).to_std().unwrap_or_default() < ALIVE_WITHIN,
                    last_progress_at: r.get(3),
                    records_in: r.get(4),
                    records_out: r.get(5),
                    rejected: r.get(6),
                }
            })
            .collect();
        let last = mine
            .iter()
            .filter_map(|r| {
                let at: Option<DateTime<Utc>> = r.get(8);
                at.map(|at| (at, r.get::<_, Option<String>>(7)))
            })
            .max_by_key(|(at, _)| *at);
        let partitions = probe.stage_lag(&client, stage).await?;
        let lag = (stage != StageName::Ingest).then(|| partitions.iter().map(|p| p.lag).sum());
        stages.push(StageStatus {
            stage: stage.as_str(),
            lag,
            partitions,
            instances,
            last_error: last.as_ref().and_then(|(_, e)| e.clone()),
            last_error_at: last.map(|(at, _)| at),
        });
    }

    let rows = client
        .query(
            "SELECT COALESCE(c.source, p.source), COALESCE(c.entity, p.entity), c.cursor,
                    c.updated_at, s.synced_at, p.phase, p.snapshot_read, p.snapshot_total
             FROM source_cursors c
             FULL JOIN source_phases p ON p.source = c.source AND p.entity = c.entity
             LEFT JOIN source_status s ON s.source = COALESCE(c.source, p.source)
                 AND s.entity = COALESCE(c.entity, p.entity)
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    let sources = rows
        .iter()
        .map(|r| {
            let cursor: Option<serde_json::Value> = r.get(2);
            let cursor = cursor.unwrap_or(serde_json::Value::Null);
            let synced_at: Option<DateTime<Utc>> = r.get(4);
            let cursor_ts = cursor
                .get("date_last_modified")
                .and_then(|v| v.as_i64())
                .and_then(DateTime::from_timestamp_millis);
            let best = match (synced_at, cursor_ts) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let phase: Option<String> = r.get(5);
            let snapshot = phase.as_deref().is_some_and(|p| p != "polling");
            SourceStatus {
                source: r.get(0),
                entity: r.get(1),
                cursor,
                cursor_saved_at: r.get(3),
                synced_at: best,
                lag_seconds: best.map(|t| ((now - t).num_milliseconds().max(0) as f64) / 1000.0),
                snapshot_read: snapshot.then(|| r.get(6)),
                snapshot_total: if snapshot { r.get(7) } else { None },
                phase,
            }
        })
        .collect();

    // Instances heartbeat every fifth of the lease's time to live.
    let alive = Duration::from_millis(cfg.sources.lease_ttl_ms.max(500) * 2);
    let readers = read_readers(&client, alive).await?;

    Ok(Status {
        at: now,
        stages,
        sources,
        readers,
        dlq_depth: probe.dlq_depth()?,
        // A schema migrated before reconciliation existed has no runs to show.
        reconcile: crate::reconcile::runs::last_runs(&client)
            .await
            .unwrap_or_default(),
    })
}

/// Active and standby instances of every source that has a lease or a live instance.
async fn read_readers(
    client: &impl deadpool_postgres::GenericClient,
    alive: Duration,
) -> Result<Vec<SourceReaders>> {
    let mut out: std::collections::BTreeMap<String, SourceReaders> = Default::default();
    let blank = |source: &str| SourceReaders {
        source: source.to_owned(),
        active: None,
        epoch: None,
        active_since: None,
        lease_expires_at: None,
        standby: Vec::new(),
    };
    for r in client
        .query(
            "SELECT source, holder, epoch, acquired_at, expires_at FROM source_leases
             WHERE expires_at > clock_timestamp()",
            &[],
        )
        .await?
    {
        let source: String = r.get(0);
        let e = out.entry(source.clone()).or_insert_with(|| blank(&source));
        e.active = Some(r.get(1));
        e.epoch = Some(r.get(2));
        e.active_since = Some(r.get(3));
        e.lease_expires_at = Some(r.get(4));
    }
    for r in client
        .query(
            "SELECT source, instance FROM source_instances
             WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY 1, 2",
            &[&alive.as_secs_f64()],
        )
        .await?
    {
        let source: String = r.get(0);
        let instance: String = r.get(1);
        let e = out.entry(source.clone()).or_insert_with(|| blank(&source));
        if e.active.as_deref() != Some(instance.as_str()) {
            e.standby.push(instance);
        }
    }
    Ok(out.into_values().collect())
}

fn ago(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    match t {
        None => "-".into(),
        Some(t) => human((now - t).to_std().unwrap_or_default()) + " ago",
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

/// `snapshot 1200/5000`, `streaming`, `polling`, or `-`.
fn phase_text(src: &SourceStatus) -> String {
    match (src.phase.as_deref(), src.snapshot_read, src.snapshot_total) {
        (Some("snapshot"), Some(read), Some(total)) => format!("snapshot {read}/{total}"),
        (Some("snapshot"), Some(read), None) => format!("snapshot {read}/?"),
        (Some(p), _, _) => p.to_owned(),
        (None, _, _) => "-".into(),
    }
}

/// The one-screen text form.
pub fn render(s: &Status) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "crmflow status at {}",
        s.at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<10} {:>9} {:>10} {:>12} {:>14}  LAST ERROR",
        "STAGE", "INSTANCES", "LAG", "WRITTEN", "LAST PROGRESS"
    );
    for st in &s.stages {
        let alive = st.instances.iter().filter(|i| i.alive).count();
        let written: i64 = st.instances.iter().map(|i| i.records_out).sum();
        let progress = st.instances.iter().filter_map(|i| i.last_progress_at).max();
        let err = match (&st.last_error, st.last_error_at) {
            (Some(e), Some(at)) => format!(
                "{} ({})",
                e.chars().take(60).collect::<String>(),
                ago(s.at, Some(at))
            ),
            _ => "-".into(),
        };
        let _ = writeln!(
            o,
            "{:<10} {:>9} {:>10} {:>12} {:>14}  {}",
            st.stage,
            format!("{alive}/{}", st.instances.len()),
            st.lag.map_or("-".into(), |l| l.to_string()),
            written,
            ago(s.at, progress),
            err
        );
        for p in st
            .partitions
            .iter()
            .filter(|p| p.lag > 0 && p.partition >= 0)
        {
            let _ = writeln!(
                o,
                "    {}[{}] at {} of {}: lag {}",
                p.topic, p.partition, p.position, p.end, p.lag
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<28} {:>26} {:>10}  PHASE",
        "SOURCE", "SYNCED TO", "LAG"
    );
    if s.sources.is_empty() {
        let _ = writeln!(o, "(no source has saved a cursor yet)");
    }
    for src in &s.sources {
        let _ = writeln!(
            o,
            "{:<28} {:>26} {:>10}  {}",
            format!("{}/{}", src.source, src.entity),
            src.synced_at.map_or("-".into(), |t| t
                .format("%Y-%m-%d %H:%M:%S%.3f")
                .to_string()),
            src.lag_seconds
                .map_or("-".into(), |l| human(Duration::from_secs_f64(l))),
            phase_text(src)
        );
    }
    if !s.readers.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "{:<12} {:<36} STANDBY", "SOURCE", "ACTIVE");
        for r in &s.readers {
            let active = match (&r.active, r.epoch, r.active_since) {
                (Some(a), Some(e), since) => {
                    format!("{a} (epoch {e}, since {})", ago(s.at, since))
                }
                _ => "none".into(),
            };
            let standby = if r.standby.is_empty() {
                "-".into()
            } else {
                r.standby.join(", ")
            };
            let _ = writeln!(o, "{:<12} {:<36} {}", r.source, active, standby);
        }
    }
    if !s.reconcile.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<28} {:<8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}  FINISHED",
            "RECONCILE",
            "STATE",
            "LISTED",
            "MISSING",
            "STALE",
            "GONE",
            "NEWER",
            "IN DLQ",
            "REPAIRED"
        );
        for r in &s.reconcile {
            let state = match &r.error {
                Some(e) => format!("{} ({})", r.state, e.chars().take(40).collect::<String>()),
                None => r.state.clone(),
            };
            let _ = writeln!(
                o,
                "{:<28} {:<8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}  {}",
                format!("{}/{}", r.crm, r.entity),
                state,
                r.listed,
                r.missing,
                r.stale,
                r.gone,
                r.newer_in_pg,
                r.in_dlq,
                r.repaired,
                ago(s.at, r.finished_at)
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "dead letters retained: {}  (crmflow dlq list)",
        s.dlq_depth
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(
        entity: &str,
        phase: Option<&str>,
        read: Option<i64>,
        total: Option<i64>,
    ) -> SourceStatus {
        SourceStatus {
            source: "bullhorn".into(),
            entity: entity.into(),
            cursor: serde_json::Value::Null,
            cursor_saved_at: None,
            synced_at: None,
            lag_seconds: None,
            phase: phase.map(str::to_owned),
            snapshot_read: read,
            snapshot_total: total,
        }
    }

    #[test]
    fn render_shows_phases_and_active_and_standby_instances() {
        let at = Utc::now();
        let s = Status {
            at,
            stages: Vec::new(),
            sources: vec![
                source("Candidate", Some("snapshot"), Some(1200), Some(5000)),
                source("JobOrder", Some("streaming"), Some(50), Some(50)),
                source("Placement", Some("snapshot"), Some(0), None),
                source("events/crmflow", None, None, None),
            ],
            readers: vec![SourceReaders {
                source: "bullhorn".into(),
                active: Some("host-a:41".into()),
                epoch: Some(3),
                active_since: Some(at - chrono::Duration::seconds(5)),
                lease_expires_at: Some(at),
                standby: vec!["host-b:42".into(), "host-c:43".into()],
            }],
            dlq_depth: 0,
            reconcile: vec![crate::reconcile::runs::LastRun {
                crm: "bullhorn".into(),
                entity: "Candidate".into(),
                state: "done".into(),
                finished_at: None,
                listed: 1000,
                missing: 2,
                stale: 1,
                gone: 3,
                newer_in_pg: 0,
                in_dlq: 4,
                repaired: 6,
                error: None,
            }],
        };
        let text = render(&s);
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("{needle} in {text}"))
                .to_owned()
        };
        assert!(line("bullhorn/Candidate").ends_with("snapshot 1200/5000"));
        assert!(line("bullhorn/JobOrder").ends_with("streaming"));
        assert!(line("bullhorn/Placement").ends_with("snapshot 0/?"));
        assert!(line("bullhorn/events/crmflow").ends_with(" -"));
        let readers = line("bullhorn  ");
        assert!(
            readers.contains("host-a:41 (epoch 3, since 5s ago)"),
            "{readers}"
        );
        assert!(readers.ends_with("host-b:42, host-c:43"), "{readers}");
        // The reconcile table comes after the sources, one line per entity with its counts.
        let rec = text
            .lines()
            .skip_while(|l| !l.starts_with("RECONCILE"))
            .nth(1)
            .unwrap_or_else(|| panic!("reconcile table in {text}"));
        let cols: Vec<&str> = rec.split_whitespace().collect();
        assert_eq!(
            &cols[..9],
            &[
                "bullhorn/Candidate",
                "done",
                "1000",
                "2",
                "1",
                "3",
                "0",
                "4",
                "6"
            ],
            "{rec}"
        );
    }
}
