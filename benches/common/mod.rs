//! Helpers shared by the benchmarks that run against the local services: a configuration
//! isolated under a fresh topic prefix and Postgres schema, the process's memory figures, and
//! the tracing mode (`BENCH_TRACE_RATIO`: unset = tracing off; `0.01`, `1`, ... = spans exported
//! over OTLP/gRPC to a counting receiver started by the bench, with that share of the backlog's
//! records sampled).

use crmflow::config::Config;
#[allow(unused_imports)]
use crmflow::model::{Candidate, Lineage};
#[allow(unused_imports)]
use secrecy::ExposeSecret;

/// A `/proc/self/status` figure in KiB (`VmRSS:`, `VmHWM:`), 0 where unavailable.
#[allow(dead_code)]
pub fn vm_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Local services from the environment (`scripts/services env`), loopback defaults, and a
/// namespace `<bench>_<random>` for topics and schema.
#[allow(dead_code)]
pub fn isolated_config(bench: &str) -> Config {
    let mut cfg = Config::default();
    if let Ok(v) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        cfg.kafka.bootstrap_servers = v;
    }
    if let Ok(v) = std::env::var("DB_HOST") {
        cfg.postgres.host = v;
    }
    if let Some(v) = std::env::var("DB_PORT").ok().and_then(|v| v.parse().ok()) {
        cfg.postgres.port = v;
    }
    // BENCH_PG_SSLMODE=verify-full (or require, verify-ca) runs against the TLS Postgres of
    // `scripts/services` as its TLS-only role; `disable` forces plaintext. Unset: the default
    // (`prefer`: TLS when the server offers it).
    if let Ok(mode) = std::env::var("BENCH_PG_SSLMODE") {
        cfg.postgres.sslmode = serde_json::from_value(serde_json::Value::String(mode.clone()))
            .unwrap_or_else(|_| panic!("BENCH_PG_SSLMODE={mode}: not an sslmode"));
        if !matches!(mode.as_str(), "disable" | "prefer") {
            let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
            cfg.postgres.user = var("SECURE_DB_USER", "crmflow_tls");
            cfg.postgres.password = var("SECURE_DB_PASSWORD", "crmflow-tls-secret").into();
            cfg.postgres.sslrootcert =
                Some(var("SECURE_CA_FILE", "/var/tmp/crmflow-services/tls/ca.pem").into());
        }
    }
    let ns = format!("{bench}_{:08x}", rand::random::<u32>());
    cfg.kafka.topic_prefix = format!("{ns}.");
    cfg.kafka.partitions = 6;
    cfg.postgres.schema = ns;
    // In-process runs must not all bind the default metrics port.
    cfg.metrics.listen = String::new();
    cfg
}

/// The share of records sampled, when the bench runs with tracing (`BENCH_TRACE_RATIO`).
#[allow(dead_code)]
pub fn trace_ratio() -> Option<f64> {
    std::env::var("BENCH_TRACE_RATIO")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map(|r| r.clamp(0.0, 1.0))
}

/// The `traceparent` of one backlog record: a new trace, sampled with the bench's ratio, as a
/// source would decide it.
#[allow(dead_code)]
pub fn backlog_traceparent() -> crmflow::kafka::trace::TraceParent {
    let ratio = trace_ratio().unwrap_or(0.0);
    crmflow::kafka::trace::TraceParent {
        trace_id: rand::random(),
        span_id: rand::random(),
        sampled: ratio > 0.0 && rand::random::<f64>() < ratio,
    }
}

/// Spans received by the bench's OTLP receiver.
#[allow(dead_code)]
pub static SPANS_RECEIVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Clone, Copy)]
struct Counting;

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Counting
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let n: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        SPANS_RECEIVED.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(tonic::Response::new(Default::default()))
    }
}

/// Starts a counting OTLP/gRPC receiver on a free port (in the bench's runtime); its endpoint.
#[allow(dead_code)]
pub async fn start_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(Counting);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .expect("otlp receiver");
    });
    format!("http://{addr}")
}

/// Runs `crmflow run --stages <stage> --until-caught-up` as its own process in `cfg`'s
/// namespace; returns the wall time and the process's peak RSS (KiB), sampled from /proc.
/// `otlp`: export spans there (the tracing mode).
#[allow(dead_code)]
pub fn run_stage_process(cfg: &Config, stage: &str) -> (std::time::Duration, u64) {
    run_stage_process_traced(cfg, stage, None)
}

/// [`run_stage_process`], exporting spans to `otlp` when given.
#[allow(dead_code)]
pub fn run_stage_process_traced(
    cfg: &Config,
    stage: &str,
    otlp: Option<&str>,
) -> (std::time::Duration, u64) {
    let t = std::time::Instant::now();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_crmflow"));
    if let Some(endpoint) = otlp {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
    }
    let mut child = cmd
        .args(["run", "--stages", stage, "--until-caught-up"])
        .env("CRMFLOW_KAFKA__TOPIC_PREFIX", &cfg.kafka.topic_prefix)
        .env(
            "CRMFLOW_KAFKA__PARTITIONS",
            cfg.kafka.partitions.to_string(),
        )
        .env("CRMFLOW_POSTGRES__SCHEMA", &cfg.postgres.schema)
        .env("KAFKA_BOOTSTRAP_SERVERS", &cfg.kafka.bootstrap_servers)
        .env("DB_HOST", &cfg.postgres.host)
        .env("DB_PORT", cfg.postgres.port.to_string())
        .env("DB_USER", &cfg.postgres.user)
        .env("DB_PASSWORD", cfg.postgres.password.expose_secret())
        .env("DB_SSLMODE", cfg.postgres.sslmode.as_str())
        .env(
            "DB_SSLROOTCERT",
            cfg.postgres
                .sslrootcert
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        )
        .env("CRMFLOW_METRICS__LISTEN", "")
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn crmflow");
    let status_path = format!("/proc/{}/status", child.id());
    let mut hwm = 0u64;
    let status = loop {
        if let Some(v) = std::fs::read_to_string(&status_path).ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        }) {
            hwm = hwm.max(v);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{stage} exited {status}");
    (t.elapsed(), hwm)
}

/// A synthetic candidate for the embed benches: skills and summary drawn from a small
/// vocabulary; `unique` adds a team number so that no two summaries repeat within 1,013 ids.
#[allow(dead_code)]
pub fn embed_candidate(id: u64, unique: bool) -> Candidate {
    const WORDS: [&str; 16] = [
        "rust",
        "kafka",
        "postgres",
        "python",
        "java",
        "kubernetes",
        "react",
        "sql",
        "spark",
        "go",
        "terraform",
        "aws",
        "ml",
        "security",
        "networks",
        "compilers",
    ];
    let w = |i: u64| WORDS[(i % 16) as usize];
    Candidate {
        crm: "bullhorn".into(),
        crm_id: id.to_string(),
        source_version: 1,
        deleted: false,
        first_name: None,
        last_name: None,
        email: None,
        phone: None,
        mobile: None,
        address: None,
        status: None,
        occupation: Some(format!("{} engineer", w(id))),
        company_name: None,
        skills: vec![w(id / 16).into(), w(id / 256).into(), w(id * 7).into()],
        summary: Some(if unique {
            format!(
                "Candidate {id} has built {} and {} systems for {} years in team {}",
                w(id / 3),
                w(id / 5),
                id % 23,
                id % 1013
            )
        } else {
            format!(
                "Candidate {id} has built {} and {} systems for {} years",
                w(id / 3),
                w(id / 5),
                id % 23
            )
        }),
        date_available: None,
        owner_id: None,
        owner_name: None,
        date_added: None,
        lineage: Lineage {
            crm: "bullhorn".into(),
            crm_id: id.to_string(),
            source_version: 1,
            event_id: id.to_string(),
            raw_topic: "raw".into(),
            raw_partition: 0,
            raw_offset: 0,
            trace_id: None,
        },
        attributes: Default::default(),
    }
}
