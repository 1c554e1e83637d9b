//! One CRM change followed end to end: a one-shot `crmflow run` of all five stages (a child
//! process, as deployed) against the Bullhorn and ML simulators exports its spans to a real
//! OTLP/gRPC receiver started here (a tonic server from the OpenTelemetry proto definitions,
//! on port 0). A sampled record's trace must hold a span of every stage, each the child of the
//! previous one and starting after it; batch spans' links must resolve to received spans. The
//! same run checks that the stages' record counters add up across the pipeline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;

use crate::common::{crmflow_cmd, isolated_config, ChildGuard};

/// Every span received, in arrival order.
#[derive(Clone, Default)]
pub struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Starts the receiver on a free loopback port; returns it and its endpoint URL.
    pub async fn start() -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Self::default();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .expect("otlp receiver");
        });
        (receiver, format!("http://{addr}"))
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().clone()
    }
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str(span: &Span, key: &str) -> Option<String> {
    match attr(span, key)? {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_record_is_traced_through_every_stage_and_counters_add_up() {
    let bullhorn = crmflow_bullhorn::sim::Simulator::start(crmflow_bullhorn::sim::SimConfig {
        candidates: 60,
        job_orders: 15,
        ..crmflow_bullhorn::sim::SimConfig::for_tests()
    })
    .await
    .expect("bullhorn simulator");
    let ml = crmflow_embedding::sim::Simulator::start(crmflow_embedding::sim::SimArgs::for_tests())
        .await
        .expect("ml simulator");
    let (receiver, endpoint) = Receiver::start().await;
    let cfg = isolated_config("traces");
    let c = bullhorn.credentials();
    let ml_url = ml.base_url().to_string();
    let mut cmd = crmflow_cmd(&cfg);
    cmd.args(["run", "--until-caught-up"])
        .env("BULLHORN_REST_URL", bullhorn.rest_services_url())
        .env("BULLHORN_CLIENT_ID", &c.client_id)
        .env("BULLHORN_CLIENT_SECRET", &c.client_secret)
        .env("BULLHORN_USERNAME", &c.username)
        .env("BULLHORN_PASSWORD", &c.password)
        .env("ML_SERVICE_URL", &ml_url)
        .env("CRMFLOW_EMBED__BATCH_SIZE", "20")
        .env("CRMFLOW_EMBED__LINGER_MS", "50")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        // The log level must not filter spans out of the export.
        .env("RUST_LOG", "warn")
        // The standard variables win over telemetry.sample_ratio (set to 0 here).
        .env("CRMFLOW_TELEMETRY__SAMPLE_RATIO", "0")
        .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "0.5")
        .stdout(std::process::Stdio::null())
        .stderr(crate::common::child_log(&cfg));
    let mut child = ChildGuard(cmd.spawn().expect("spawn crmflow"));
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap()
    .expect("one-shot run finished within 240 s");
    assert!(status.success(), "crmflow run failed: {status}");
    // The exporter flushes at exit; give the receiver a moment to have stored the last request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spans = receiver.spans();

    // --- Record traces ---------------------------------------------------------------------
    let by_id: HashMap<Vec<u8>, &Span> = spans.iter().map(|s| (s.span_id.clone(), s)).collect();
    let mut traces: HashMap<Vec<u8>, Vec<&Span>> = HashMap::new();
    for s in &spans {
        traces.entry(s.trace_id.clone()).or_default().push(s);
    }
    let changes = 60 + 15;
    let record_traces: Vec<&Vec<&Span>> = traces
        .values()
        .filter(|t| t.iter().any(|s| s.name.starts_with("bullhorn read ")))
        .collect();
    // Half the changes sampled (OTEL_TRACES_SAMPLER_ARG=0.5), not all and not none.
    assert!(
        record_traces.len() >= 10 && record_traces.len() <= changes - 10,
        "{} of {changes} changes sampled",
        record_traces.len()
    );
    let one = |t: &[&Span], name: &str| -> Option<Span> {
        let found: Vec<&&Span> = t.iter().filter(|s| s.name == name).collect();
        assert!(found.len() <= 1, "one {name} span per record trace");
        found.first().map(|s| (**s).clone())
    };
    let mut complete = 0;
    for t in &record_traces {
        let read = t
            .iter()
            .find(|s| s.name.starts_with("bullhorn read "))
            .unwrap();
        assert!(
            read.parent_span_id.is_empty(),
            "the CRM read is the trace's root"
        );
        let send = t
            .iter()
            .find(|s| s.name.starts_with("send ") && s.parent_span_id == read.span_id)
            .expect("raw produce span under the CRM read");
        assert_eq!(
            attr_str(send, "messaging.operation.type").as_deref(),
            Some("send")
        );
        let normalize = one(t, "normalize").expect("normalize span");
        assert_eq!(
            normalize.parent_span_id, send.span_id,
            "normalize follows the produce"
        );
        assert!(normalize.start_time_unix_nano >= send.start_time_unix_nano);
        if attr_str(&normalize, "crmflow.outcome").as_deref() == Some("rejected") {
            assert!(
                attr_str(&normalize, "crmflow.rule").is_some(),
                "a reject names its rule"
            );
            assert!(one(t, "sink write").is_none());
            continue;
        }
        let sink = one(t, "sink write").expect("sink span");
        assert_eq!(sink.parent_span_id, normalize.span_id);
        assert!(sink.start_time_unix_nano >= normalize.start_time_unix_nano);
        assert_eq!(
            attr_str(&sink, "db.system.name").as_deref(),
            Some("postgresql")
        );
        let embed = one(t, "embed").expect("embed span");
        assert_eq!(embed.parent_span_id, normalize.span_id);
        assert!(embed.start_time_unix_nano >= normalize.start_time_unix_nano);
        let outcome = attr_str(&embed, "crmflow.embed.outcome").unwrap_or_default();
        if outcome != "embedded" {
            continue;
        }
        let matched = one(t, "match").expect("match span");
        assert_eq!(
            matched.parent_span_id, embed.span_id,
            "match follows the vector write"
        );
        assert!(matched.start_time_unix_nano >= embed.start_time_unix_nano);
        complete += 1;
    }
    eprintln!(
        "{} spans, {} sampled changes, {complete} traced through all five stages",
        spans.len(),
        record_traces.len()
    );
    assert!(
        complete >= 3,
        "{complete} sampled records traced through all five stages"
    );

    // --- Batch spans -----------------------------------------------------------------------
    let batches: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            attr_str(s, "messaging.operation.type").as_deref() == Some("process")
                && s.name.starts_with("process ")
        })
        .collect();
    for stage in ["normalize", "sink", "embed"] {
        assert!(
            batches
                .iter()
                .any(|s| attr_str(s, "crmflow.stage").as_deref() == Some(stage)),
            "{stage} batch span"
        );
    }
    let mut links = 0;
    for b in &batches {
        assert_eq!(attr_str(b, "messaging.system").as_deref(), Some("kafka"));
        assert!(attr_str(b, "messaging.batch.message_count").is_some());
        assert!(attr_str(b, "messaging.kafka.offset.first").is_some());
        for l in &b.links {
            links += 1;
            let target = by_id
                .get(&l.span_id)
                .unwrap_or_else(|| panic!("link of {} resolves", b.name));
            assert_eq!(target.trace_id, l.trace_id);
        }
    }
    eprintln!("{} batch spans, {links} links", batches.len());
    assert!(links >= record_traces.len(), "{links} links");
    assert!(
        spans.iter().any(|s| s.name == "POST"
            && attr_str(s, "http.response.status_code").as_deref() == Some("200")),
        "ML requests are HTTP client spans"
    );

    let crm_requests: Vec<&Span> = spans
        .iter()
        .filter(|s| attr_str(s, "url.full").is_some_and(|u| u.contains("/rest-services/")))
        .collect();
    assert!(
        !crm_requests.is_empty(),
        "CRM requests are HTTP client spans"
    );
    for s in &crm_requests {
        let url = attr_str(s, "url.full").unwrap();
        assert!(url.contains("{corpToken}") && !url.contains('?'), "{url}");
        assert!(attr_str(s, "http.response.status_code").is_some(), "{url}");
    }

    // --- Counters add up -------------------------------------------------------------------
    let client = crmflow::store::connect(&cfg).await.unwrap();
    let counts: HashMap<String, (i64, i64, i64)> = client
        .query(
            "SELECT stage, sum(records_in)::bigint, sum(records_out)::bigint, sum(rejected)::bigint
             FROM stage_status GROUP BY stage",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let (_, ingest_out, _) = counts["ingest"];
    let (norm_in, norm_out, norm_rej) = counts["normalize"];
    let (sink_in, sink_out, sink_rej) = counts["sink"];
    let (embed_in, _, _) = counts["embed"];
    assert_eq!(ingest_out, changes as i64, "{counts:?}");
    assert_eq!(norm_in, ingest_out, "normalize in = ingest out: {counts:?}");
    assert_eq!(norm_out + norm_rej, norm_in, "{counts:?}");
    assert_eq!(sink_in, norm_out, "sink in = normalize out: {counts:?}");
    assert_eq!(sink_out + sink_rej, sink_in, "{counts:?}");
    assert_eq!(
        embed_in, sink_in,
        "embed in = sink in (counted once across writers): {counts:?}"
    );
    let rows: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM candidates) + (SELECT count(*) FROM positions)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, sink_out);
}
