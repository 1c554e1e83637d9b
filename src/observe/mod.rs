//! The operator's view of a running process: Prometheus metrics, liveness and readiness, and the
//! per-stage state (`last progress`, lag, last error) that readiness, the heartbeat row in
//! `stage_status` and the one-shot progress display read.
//!
//! Stages report through the small functions here (`records_in`, `batch`, `retry`, ...); they
//! never talk to the exporter. The recorder is process-global (installed once); the HTTP endpoint
//! is [`server::serve`].

pub mod display;
pub mod server;
pub mod watch;

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;

/// Metric names: one place, so the dashboard, the docs and the code agree.
pub mod names {
    pub const RECORDS_IN: &str = "crmflow_records_in_total";
    pub const RECORDS_OUT: &str = "crmflow_records_out_total";
    pub const REJECTED: &str = "crmflow_records_rejected_total";
    pub const RETRIES: &str = "crmflow_retries_total";
    pub const ML_REQUESTS: &str = "crmflow_ml_requests_total";
    pub const ML_INPUTS: &str = "crmflow_ml_inputs_total";
    pub const EMBED_SKIPPED: &str = "crmflow_embeddings_skipped_total";
    pub const SOURCE_RECORDS: &str = "crmflow_source_records_total";
    pub const BATCH_SIZE: &str = "crmflow_batch_size";
    pub const BATCH_DURATION: &str = "crmflow_batch_duration_seconds";
    pub const FRESHNESS: &str = "crmflow_freshness_seconds";
    pub const CONSUMER_LAG: &str = "crmflow_consumer_lag";
    pub const SOURCE_LAG: &str = "crmflow_source_lag_seconds";
    pub const DLQ_DEPTH: &str = "crmflow_dlq_depth";
    pub const LAST_PROGRESS: &str = "crmflow_stage_last_progress_seconds";

    /// Every name above, for tests and the dashboard check.
    pub const ALL: [&str; 15] = [
        RECORDS_IN,
        RECORDS_OUT,
        REJECTED,
        RETRIES,
        ML_REQUESTS,
        ML_INPUTS,
        EMBED_SKIPPED,
        SOURCE_RECORDS,
        BATCH_SIZE,
        BATCH_DURATION,
        FRESHNESS,
        CONSUMER_LAG,
        SOURCE_LAG,
        DLQ_DEPTH,
        LAST_PROGRESS,
    ];
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
/// `None` when another recorder was installed first (only possible in embedding programs).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let exp = |from: f64, factor: f64, n: usize| -> Vec<f64> {
                (0..n).map(|i| from * factor.powi(i as i32)).collect()
            };
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(names::BATCH_SIZE.into()),
                    &exp(1.0, 4.0, 9), // 1 .. 65,536
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::BATCH_DURATION.into()),
                        &exp(0.001, 2.5, 12), // 1 ms .. ~24 s
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::FRESHNESS.into()),
                        &exp(0.05, 2.5, 16), // 50 ms .. ~26 h
                    )
                });
            let handle = builder.ok()?.install_recorder().ok()?;
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// What this process knows about one stage it runs.
#[derive(Debug, Clone)]
pub struct StageState {
    pub started: Instant,
    pub last_progress: Option<Instant>,
    pub records_in: u64,
    pub records_out: u64,
    pub rejected: u64,
    pub batches: u64,
    /// Total input lag (messages, or queued records for `match`); `None` until first measured.
    pub lag: Option<i64>,
    pub last_error: Option<(String, SystemTime)>,
}

impl StageState {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_progress: None,
            records_in: 0,
            records_out: 0,
            rejected: 0,
            batches: 0,
            lag: None,
            last_error: None,
        }
    }

    /// Stalled: work is waiting (lag > 0) and nothing was written for `after`.
    pub fn stalled(&self, after: Duration) -> bool {
        let since = self.last_progress.unwrap_or(self.started);
        self.lag.unwrap_or(0) > 0 && since.elapsed() > after
    }
}

static STAGES: LazyLock<Mutex<HashMap<&'static str, StageState>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// When each source (`source/entity`) was last known to have read everything, epoch ms.
static SOURCES: LazyLock<Mutex<HashMap<(String, String), i64>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn with_stage<R>(stage: &'static str, f: impl FnOnce(&mut StageState) -> R) -> R {
    let mut map = STAGES.lock();
    f(map.entry(stage).or_insert_with(StageState::new))
}

/// Registers `stage` as running in this process (its state starts now).
pub fn stage_started(stage: &'static str) {
    STAGES.lock().insert(stage, StageState::new());
}

/// A copy of every stage's state.
pub fn stages() -> Vec<(&'static str, StageState)> {
    let mut v: Vec<_> = STAGES.lock().iter().map(|(k, s)| (*k, s.clone())).collect();
    v.sort_by_key(|(k, _)| *k);
    v
}

/// A copy of one stage's state.
pub fn stage(stage: &'static str) -> Option<StageState> {
    STAGES.lock().get(stage).cloned()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    (now_secs() * 1000.0) as i64
}

/// `n` records taken in by `stage`.
pub fn records_in(stage: &'static str, n: u64) {
    if n == 0 {
        return;
    }
    counter!(names::RECORDS_IN, "stage" => stage).increment(n);
    with_stage(stage, |s| s.records_in += n);
}

/// `n` records written (durably) by `stage`: this is progress.
pub fn records_out(stage: &'static str, n: u64) {
    counter!(names::RECORDS_OUT, "stage" => stage).increment(n);
    progress(stage);
    with_stage(stage, |s| s.records_out += n);
}

/// `n` records of `stage` rejected by `rule` (they went to the dead-letter topic).
pub fn rejected(stage: &'static str, rule: &str, n: u64) {
    counter!(names::REJECTED, "stage" => stage, "rule" => rule.to_owned()).increment(n);
    with_stage(stage, |s| s.rejected += n);
}

/// The stage moved forward (wrote, committed, or found nothing to do after catching up).
pub fn progress(stage: &'static str) {
    gauge!(names::LAST_PROGRESS, "stage" => stage).set(now_secs());
    with_stage(stage, |s| s.last_progress = Some(Instant::now()));
}

/// A retry of `stage` caused by `cause` (`postgres`, `kafka`, `ml`, `crm`, ...), with the error.
pub fn retry(stage: &'static str, cause: &'static str, error: &dyn std::fmt::Display) {
    counter!(names::RETRIES, "stage" => stage, "cause" => cause).increment(1);
    error_seen(stage, error);
}

/// Remembers `error` as `stage`'s last error (shown by `crmflow status`).
pub fn error_seen(stage: &'static str, error: &dyn std::fmt::Display) {
    let msg: String = error.to_string().chars().take(500).collect();
    with_stage(stage, |s| s.last_error = Some((msg, SystemTime::now())));
}

/// One batch of `stage`: its size and how long processing and writing it took.
pub fn batch(stage: &'static str, size: usize, took: Duration) {
    with_stage(stage, |s| s.batches += 1);
    histogram!(names::BATCH_SIZE, "stage" => stage).record(size as f64);
    histogram!(names::BATCH_DURATION, "stage" => stage).record(took.as_secs_f64());
}

/// End-to-end freshness of records written by `stage` (`sink`: row, `embed`: vector): the
/// time from their CRM modification (`source_versions`, epoch ms) to now.
pub fn freshness(stage: &'static str, entity: &'static str, source_versions: &[i64]) {
    if source_versions.is_empty() {
        return;
    }
    let h = histogram!(names::FRESHNESS, "stage" => stage, "entity" => entity);
    let now = now_ms();
    for v in source_versions {
        h.record(((now - v).max(0) as f64) / 1000.0);
    }
}

/// Lag of one input partition of `stage`.
pub fn consumer_lag(stage: &'static str, topic: &str, partition: i32, lag: i64) {
    gauge!(names::CONSUMER_LAG, "stage" => stage, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag as f64);
}

/// Sets `stage`'s total lag (readiness and the progress display use it).
pub fn stage_lag(stage: &'static str, total: i64) {
    with_stage(stage, |s| s.lag = Some(total));
}

/// Dead letters retained in the dead-letter topic.
pub fn dlq_depth(depth: i64) {
    gauge!(names::DLQ_DEPTH).set(depth as f64);
}

/// `n` change events emitted by a source for `entity`.
pub fn source_records(source: &'static str, entity: &str, n: u64) {
    counter!(names::SOURCE_RECORDS, "source" => source, "entity" => entity.to_owned()).increment(n);
    records_out("ingest", n);
}

/// The source has read everything modified up to `synced_ms` (epoch ms): its cursor moved
/// there, or a poll that started then came back complete.
pub fn source_synced(source: &str, entity: &str, synced_ms: i64) {
    let mut map = SOURCES.lock();
    let e = map
        .entry((source.to_owned(), entity.to_owned()))
        .or_insert(synced_ms);
    *e = (*e).max(synced_ms);
    drop(map);
    progress("ingest");
}

/// Every source's sync point, `((source, entity), epoch ms)`.
pub fn sources() -> Vec<((String, String), i64)> {
    let mut v: Vec<_> = SOURCES
        .lock()
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    v.sort();
    v
}

/// Updates the source-lag gauges from the sync points (called periodically).
pub fn refresh_source_lag() {
    let now = now_ms();
    for ((source, entity), synced) in sources() {
        gauge!(names::SOURCE_LAG, "source" => source, "entity" => entity)
            .set(((now - synced).max(0) as f64) / 1000.0);
    }
}

// `crmflow_ml_requests_total{outcome}` and `crmflow_ml_inputs_total` are counted by the ML
// client itself (crates `crmflow-embedding`), once per HTTP attempt.

/// `n` records whose embedded text was unchanged, so no ML call was made.
pub fn embeddings_skipped(n: u64) {
    counter!(names::EMBED_SKIPPED).increment(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_only_with_lag_and_no_recent_progress() {
        let mut s = StageState::new();
        assert!(!s.stalled(Duration::ZERO), "no lag measured yet");
        s.lag = Some(5);
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.stalled(Duration::from_millis(1)));
        assert!(!s.stalled(Duration::from_secs(60)));
        s.last_progress = Some(Instant::now());
        assert!(!s.stalled(Duration::from_millis(50)));
        s.lag = Some(0);
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            !s.stalled(Duration::from_millis(1)),
            "caught up is not stalled"
        );
    }

    #[test]
    fn metrics_render_as_prometheus_text_with_histograms() {
        let handle = install().expect("recorder");
        records_in("unit-test", 3);
        records_out("unit-test", 2);
        batch("unit-test", 500, Duration::from_millis(20));
        freshness("unit-test", "candidate", &[now_ms() - 1500]);
        let text = handle.render();
        assert!(
            text.contains("crmflow_records_in_total{stage=\"unit-test\"} 3"),
            "{text}"
        );
        assert!(text.contains("crmflow_batch_size_bucket{stage=\"unit-test\",le=\"1024\"} 1"));
        assert!(text.contains(
            "crmflow_freshness_seconds_count{stage=\"unit-test\",entity=\"candidate\"} 1"
        ));
        let s = stage("unit-test").unwrap();
        assert_eq!((s.records_in, s.records_out), (3, 2));
        assert!(s.last_progress.is_some());
    }
}
