//! The deployment files (`compose/`, `Dockerfile`) checked without a Docker engine.
//!
//! Each property is a function that returns the problems it finds, so the same function is run
//! on the real files (no problem allowed) and on deliberately broken copies (a problem must be
//! found): a check that cannot fail is caught here too.
//!
//! When Debian's `docker-compose` is installed (scripts/compose-check installs it), the file is
//! also validated against the Compose Specification's schema by `docker-compose config`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

/// The services that must run one stage each: the CLI's own stage names.
fn stages() -> Vec<&'static str> {
    crmflow::runtime::StageName::ALL
        .iter()
        .map(|s| s.as_str())
        .collect()
}

/// Stages whose replicas share the work (consumer groups; match's queue uses SKIP LOCKED).
const SCALABLE: &[&str] = &["normalize", "sink", "embed", "match"];

/// Every metric crmflow exports; the dashboard may query nothing else.
const COUNTERS: &[&str] = &[
    "crmflow_records_in_total",
    "crmflow_records_out_total",
    "crmflow_records_rejected_total",
    "crmflow_retries_total",
    "crmflow_ml_requests_total",
    "crmflow_ml_inputs_total",
    "crmflow_embeddings_skipped_total",
    "crmflow_source_records_total",
];
const HISTOGRAMS: &[&str] = &[
    "crmflow_batch_size",
    "crmflow_batch_duration_seconds",
    "crmflow_freshness_seconds",
];
const GAUGES: &[&str] = &[
    "crmflow_consumer_lag",
    "crmflow_source_lag_seconds",
    "crmflow_dlq_depth",
    "crmflow_stage_last_progress_seconds",
];

const METRICS_PORT: u16 = 9464;

// ------------------------------------------------------------------------------------ loading

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// A YAML file as JSON, with `<<` merge keys applied (compose files use anchors).
fn yaml(rel: &str) -> Value {
    let v: serde_norway::Value =
        serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut v = serde_json::to_value(v).unwrap_or_else(|e| panic!("{rel}: {e}"));
    merge_keys(&mut v);
    v
}

/// YAML merge keys, nested ones included (a merged mapping may merge another): keys written in
/// the mapping win, then the merged mappings in order.
fn merge_keys(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(mut merged) = m.remove("<<") {
                merge_keys(&mut merged);
                let sources = match merged {
                    Value::Array(a) => a,
                    other => vec![other],
                };
                for src in sources {
                    let Value::Object(src) = src else {
                        panic!("merge key with a non-mapping value");
                    };
                    for (k, x) in src {
                        m.entry(k).or_insert(x);
                    }
                }
            }
            m.values_mut().for_each(merge_keys);
        }
        Value::Array(a) => a.iter_mut().for_each(merge_keys),
        _ => {}
    }
}

fn compose() -> Value {
    yaml("compose/docker-compose.yml")
}

fn prometheus() -> Value {
    yaml("compose/prometheus.yml")
}

fn dashboard() -> Value {
    serde_json::from_str(&read("compose/grafana/dashboards/crmflow.json"))
        .expect("dashboard JSON parses")
}

fn grafana_datasources() -> Value {
    yaml("compose/grafana/provisioning/datasources/datasources.yml")
}

fn grafana_providers() -> Value {
    yaml("compose/grafana/provisioning/dashboards/dashboards.yml")
}

fn collector() -> Value {
    yaml("compose/otel-collector.yaml")
}

// ------------------------------------------------------------------------------------ helpers

/// Compose interpolation with the defaults written in the file: `${X:-d}` and `${X-d}` give `d`,
/// `${X:?msg}` gives `<required X>`, `${X}` gives the empty string, `$$` a dollar.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {s:?}"));
            let inner = &r[..end];
            let name_end = inner
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(inner.len());
            let (name, op) = inner.split_at(name_end);
            if let Some(d) = op.strip_prefix(":-").or_else(|| op.strip_prefix('-')) {
                out.push_str(d);
            } else if op.starts_with(":?") || op.starts_with('?') {
                out.push_str(&format!("<required {name}>"));
            }
            rest = &r[end + 1..];
        } else {
            let name_end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            rest = &after[name_end..];
        }
    }
    out.push_str(rest);
    out
}

fn services(c: &Value) -> &serde_json::Map<String, Value> {
    c["services"].as_object().expect("services is a mapping")
}

/// A `command` or healthcheck `test` as words (list form, or a string split on whitespace).
fn words(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|w| interpolate(&scalar(w).unwrap_or_default()))
            .collect(),
        Value::String(s) => interpolate(s)
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's environment as name -> raw value (None: passed through from the host).
fn env_raw(svc: &Value) -> BTreeMap<String, Option<String>> {
    match &svc["environment"] {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (kv.to_owned(), None),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A service's environment with the file's defaults interpolated.
fn env(svc: &Value) -> BTreeMap<String, String> {
    env_raw(svc)
        .into_iter()
        .filter_map(|(k, v)| Some((k, interpolate(&v?))))
        .collect()
}

/// `host` of `host:port`, `scheme://host:port/path` or `host:port,host2:port`.
fn host_of(addr: &str) -> String {
    let a = addr.split(',').next().unwrap_or_default();
    let a = a.split_once("://").map_or(a, |(_, r)| r);
    let a = a.split('/').next().unwrap_or_default();
    a.rsplit_once(':').map_or(a, |(h, _)| h).to_owned()
}

fn port_of(addr: &str) -> Option<u16> {
    let a = addr.split_once("://").map_or(addr, |(_, r)| r);
    let a = a.split('/').next()?;
    a.rsplit_once(':')?.1.parse().ok()
}

fn depends_on(svc: &Value) -> BTreeMap<String, String> {
    match &svc["depends_on"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let cond = v["condition"].as_str().unwrap_or("service_started");
                (k.clone(), cond.to_owned())
            })
            .collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|k| (k.to_owned(), "service_started".to_owned()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Every string under `v` (recursively) at one of `keys`, or inside an object at one of them.
fn strings_at(v: &Value, keys: &[&str], out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if keys.contains(&k.as_str()) {
                    match x {
                        Value::String(s) => out.push(s.clone()),
                        Value::Object(o) => {
                            for y in o.values() {
                                if let Value::String(s) = y {
                                    out.push(s.clone());
                                }
                            }
                        }
                        _ => {}
                    }
                }
                strings_at(x, keys, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| strings_at(x, keys, out)),
        _ => {}
    }
}

/// `crmflow_*` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("crmflow_") {
        let preceded_by_ident = rest[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !preceded_by_ident {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

// ------------------------------------------------------------------------------------ checks

/// Every stage has its own service running `crmflow run --stages <stage>` from the repository's
/// image, wired to the other services and health-checked on its operator endpoint.
fn check_stage_services(c: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let svcs = services(c);
    for stage in stages() {
        let Some(svc) = svcs.get(stage) else {
            problems.push(format!("no service `{stage}`"));
            continue;
        };
        let cmd = words(&svc["command"]);
        let want = ["run", "--stages", stage];
        let ok = cmd == want || cmd == [&["crmflow"][..], &want[..]].concat();
        if !ok {
            problems.push(format!("`{stage}` runs {cmd:?}, not crmflow {want:?}"));
        }
        let build = &svc["build"];
        let context = build["context"].as_str().or(build.as_str());
        if context != Some("..") {
            problems.push(format!(
                "`{stage}` is not built from the repository (build: {build})"
            ));
        }
        let e = env(svc);
        let listen = e
            .get("CRMFLOW_METRICS__LISTEN")
            .cloned()
            .unwrap_or_default();
        if listen != format!("0.0.0.0:{METRICS_PORT}") {
            problems.push(format!(
                "`{stage}` serves metrics on {listen:?}, not 0.0.0.0:{METRICS_PORT}"
            ));
        }
        for (var, target) in [
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka"),
            ("DB_HOST", "postgres"),
            ("ML_SERVICE_URL", "tei"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "otel-collector"),
        ] {
            match e.get(var) {
                Some(v) if host_of(v) == target && svcs.contains_key(target) => {}
                other => problems.push(format!(
                    "`{stage}`: {var}={other:?} does not point at the `{target}` service"
                )),
            }
        }
        if e.get("CRMFLOW_ML__PROTOCOL").map(String::as_str) != Some("tei") {
            problems.push(format!("`{stage}` does not speak the TEI protocol"));
        }
        let probe = words(&svc["healthcheck"]["test"]).join(" ");
        let url_ok = ["/readyz", "/healthz"]
            .iter()
            .any(|p| probe.contains(&format!(":{METRICS_PORT}{p}")));
        if !url_ok {
            problems.push(format!(
                "`{stage}` healthcheck {probe:?} does not probe /readyz or /healthz on {METRICS_PORT}"
            ));
        }
        let deps = depends_on(svc);
        for one_shot in ["migrate", "topics"] {
            if deps.get(one_shot).map(String::as_str) != Some("service_completed_successfully") {
                problems.push(format!(
                    "`{stage}` does not wait for `{one_shot}` to complete successfully"
                ));
            }
        }
    }
    for (one_shot, cmd) in [("migrate", "migrate"), ("topics", "topics")] {
        match svcs.get(one_shot) {
            Some(s) if words(&s["command"]) == [cmd] => {}
            _ => problems.push(format!(
                "no one-shot `{one_shot}` service running `crmflow {cmd}`"
            )),
        }
    }
    problems
}

/// Scalable stages can be `--scale`d: no fixed container name, no published host port.
fn check_scalable(c: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for &name in SCALABLE {
        let Some(svc) = services(c).get(name) else {
            problems.push(format!("no service `{name}`"));
            continue;
        };
        if !svc["container_name"].is_null() {
            problems.push(format!("`{name}` has a container_name"));
        }
        for p in svc["ports"].as_array().into_iter().flatten() {
            let fixed = match p {
                Value::Object(o) => !o.get("published").is_none_or(Value::is_null),
                other => scalar(other).is_some_and(|s| s.contains(':')),
            };
            if fixed {
                problems.push(format!("`{name}` publishes a fixed host port: {p}"));
            }
        }
    }
    problems
}

/// Prometheus finds every replica of every stage service by DNS, on the metrics port, and the
/// compose file hands Prometheus this configuration.
fn check_prometheus(c: &Value, prom: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut scraped: BTreeSet<(String, u16)> = BTreeSet::new();
    for job in prom["scrape_configs"].as_array().into_iter().flatten() {
        let path = job["metrics_path"].as_str().unwrap_or("/metrics");
        for sd in job["dns_sd_configs"].as_array().into_iter().flatten() {
            let ty = sd["type"].as_str().unwrap_or("SRV");
            let port = sd["port"].as_u64().and_then(|p| u16::try_from(p).ok());
            if ty != "A" || path != "/metrics" {
                continue;
            }
            for n in sd["names"].as_array().into_iter().flatten() {
                if let (Some(n), Some(port)) = (n.as_str(), port) {
                    scraped.insert((n.to_owned(), port));
                }
            }
        }
    }
    for stage in stages() {
        if !scraped.contains(&(stage.to_owned(), METRICS_PORT)) {
            problems.push(format!(
                "Prometheus does not scrape {stage}:{METRICS_PORT}/metrics by DNS (A records)"
            ));
        }
    }
    match services(c).get("prometheus") {
        None => problems.push("no `prometheus` service".into()),
        Some(p) => {
            let cfg = words(&p["command"])
                .iter()
                .find_map(|w| w.strip_prefix("--config.file=").map(str::to_owned))
                .unwrap_or_else(|| "/etc/prometheus/prometheus.yml".into());
            let mounted = p["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|v| v.starts_with(&format!("./prometheus.yml:{cfg}")));
            if !mounted {
                problems.push(format!("compose/prometheus.yml is not mounted at {cfg}"));
            }
        }
    }
    problems
}

/// The dashboard queries only metrics crmflow exports, and every one of them somewhere.
fn check_dashboard_metrics(dash: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut exprs = Vec::new();
    strings_at(dash, &["expr", "query", "definition"], &mut exprs);
    let known: BTreeSet<String> = COUNTERS
        .iter()
        .chain(GAUGES)
        .map(|s| s.to_string())
        .chain(HISTOGRAMS.iter().flat_map(|h| {
            ["_bucket", "_sum", "_count"]
                .into_iter()
                .map(move |s| format!("{h}{s}"))
        }))
        .collect();
    let mut used = BTreeSet::new();
    for e in &exprs {
        for m in metric_names(e) {
            if !known.contains(&m) {
                problems.push(format!("dashboard queries unknown metric {m} in {e:?}"));
            }
            let base = HISTOGRAMS
                .iter()
                .find(|h| m.strip_prefix(**h).is_some_and(|s| s.starts_with('_')))
                .map_or(m.clone(), |h| h.to_string());
            used.insert(base);
        }
    }
    for m in COUNTERS.iter().chain(HISTOGRAMS).chain(GAUGES) {
        if !used.contains(*m) {
            problems.push(format!("no dashboard panel shows {m}"));
        }
    }
    for h in HISTOGRAMS {
        let quantile = exprs
            .iter()
            .any(|e| e.contains("histogram_quantile(") && e.contains(&format!("{h}_bucket")));
        if !quantile {
            problems.push(format!("no histogram_quantile over {h}_bucket"));
        }
    }
    problems
}

/// Every datasource reference in the dashboard is the provisioned Prometheus, by its uid, and
/// Grafana is handed the provisioning and the dashboard where the provider looks.
fn check_dashboard_datasource(
    c: &Value,
    dash: &Value,
    datasources: &Value,
    providers: &Value,
) -> Vec<String> {
    let mut problems = Vec::new();
    let prom_uids: Vec<&str> = datasources["datasources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["type"] == "prometheus")
        .filter_map(|d| d["uid"].as_str())
        .collect();
    let [uid] = prom_uids[..] else {
        return vec![format!(
            "want one provisioned Prometheus datasource with a uid, found {prom_uids:?}"
        )];
    };
    fn walk(v: &Value, uid: &str, problems: &mut Vec<String>, refs: &mut usize) {
        match v {
            Value::Object(m) => {
                if let Some(ds) = m.get("datasource") {
                    *refs += 1;
                    if ds["uid"].as_str() != Some(uid) {
                        problems.push(format!("datasource {ds} is not uid {uid:?}"));
                    }
                }
                m.values().for_each(|x| walk(x, uid, problems, refs));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, uid, problems, refs)),
            _ => {}
        }
    }
    let mut refs = 0;
    walk(dash, uid, &mut problems, &mut refs);
    for p in dash["panels"].as_array().into_iter().flatten() {
        if p["type"] != "row" && p["datasource"].is_null() {
            problems.push(format!("panel {:?} has no datasource", p["title"]));
        }
    }
    if refs == 0 {
        problems.push("the dashboard references no datasource".into());
    }
    let Some(grafana) = services(c).get("grafana") else {
        problems.push("no `grafana` service".into());
        return problems;
    };
    let vols: Vec<String> = grafana["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let mounted_at = |src: &str| {
        vols.iter().find_map(|v| {
            let mut parts = v.split(':');
            (parts.next() == Some(src)).then(|| parts.next().unwrap_or_default().to_owned())
        })
    };
    if mounted_at("./grafana/provisioning").as_deref() != Some("/etc/grafana/provisioning") {
        problems.push("grafana/provisioning is not mounted at /etc/grafana/provisioning".into());
    }
    let dash_dir = mounted_at("./grafana/dashboards");
    let provider_paths: Vec<&str> = providers["providers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["options"]["path"].as_str())
        .collect();
    if dash_dir.is_none() || !provider_paths.contains(&dash_dir.as_deref().unwrap_or_default()) {
        problems.push(format!(
            "grafana/dashboards is mounted at {dash_dir:?}, the provider reads {provider_paths:?}"
        ));
    }
    problems
}

/// Services waited for as healthy have a healthcheck, and every dependency exists.
fn check_dependencies(c: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let svcs = services(c);
    for (name, svc) in svcs {
        for (dep, cond) in depends_on(svc) {
            match svcs.get(&dep) {
                None => problems.push(format!("`{name}` depends on missing `{dep}`")),
                Some(d) if cond == "service_healthy" && d["healthcheck"]["test"].is_null() => {
                    problems.push(format!(
                        "`{name}` waits for `{dep}` to be healthy, but it has no healthcheck"
                    ))
                }
                _ => {}
            }
        }
    }
    problems
}

/// The infrastructure is what the deployment promises: KRaft Kafka, pgvector, TEI serving the
/// model crmflow names with a batch limit that admits crmflow's batches, traces to Jaeger.
fn check_infrastructure(c: &Value, otel: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let svcs = services(c);
    let image = |n: &str| {
        svcs.get(n)
            .and_then(|s| s["image"].as_str())
            .map(interpolate)
            .unwrap_or_default()
    };
    if !image("kafka").starts_with("apache/kafka:") {
        problems.push(format!("kafka image {:?}", image("kafka")));
    }
    let kafka_env = svcs.get("kafka").map(env).unwrap_or_default();
    if !kafka_env
        .get("KAFKA_PROCESS_ROLES")
        .is_some_and(|r| r.contains("controller") && r.contains("broker"))
    {
        problems.push("kafka is not a KRaft broker+controller".into());
    }
    if !image("postgres").starts_with("pgvector/pgvector:") {
        problems.push(format!("postgres image {:?}", image("postgres")));
    }
    if !image("tei").starts_with("ghcr.io/huggingface/text-embeddings-inference:cpu-") {
        problems.push(format!("tei image {:?}", image("tei")));
    }
    let tei_cmd = svcs
        .get("tei")
        .map(|s| words(&s["command"]))
        .unwrap_or_default();
    let flag = |f: &str| {
        tei_cmd
            .iter()
            .position(|w| w == f)
            .and_then(|i| tei_cmd.get(i + 1).cloned())
    };
    let embed_env = svcs.get("embed").map(env).unwrap_or_default();
    if flag("--model-id").as_ref() != embed_env.get("CRMFLOW_ML__MODEL") {
        problems.push(format!(
            "TEI serves {:?} but embed stores vectors as model {:?}",
            flag("--model-id"),
            embed_env.get("CRMFLOW_ML__MODEL")
        ));
    }
    let limit: usize = flag("--max-client-batch-size")
        .and_then(|v| v.parse().ok())
        .unwrap_or(32); // TEI's default
    let batch: usize = embed_env
        .get("CRMFLOW_EMBED__BATCH_SIZE")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| crmflow::config::EmbedConfig::default().batch_size);
    if batch > limit {
        problems.push(format!(
            "embed sends {batch} texts per request, TEI accepts {limit}"
        ));
    }
    // The collector receives OTLP/gRPC where the stages send it and exports to Jaeger.
    let otlp_port = embed_env
        .get("OTEL_EXPORTER_OTLP_ENDPOINT")
        .and_then(|e| port_of(e));
    let grpc = otel["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        .as_str()
        .and_then(port_of);
    if otlp_port.is_none() || grpc != otlp_port {
        problems.push(format!(
            "stages send OTLP to port {otlp_port:?}, the collector listens on {grpc:?}"
        ));
    }
    let pipeline = &otel["service"]["pipelines"]["traces"];
    for kind in ["receivers", "processors", "exporters"] {
        for name in pipeline[kind].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !otel[kind].as_object().is_some_and(|m| m.contains_key(name)) {
                problems.push(format!("traces pipeline uses undefined {kind} {name}"));
            }
        }
    }
    let to_jaeger = pipeline["exporters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|x| otel["exporters"][x]["endpoint"].as_str().map(host_of) == Some("jaeger".into()));
    if !to_jaeger || !svcs.contains_key("jaeger") {
        problems.push("the traces pipeline does not export to the `jaeger` service".into());
    }
    problems
}

/// No secret has a value written in the file: it is passed through from the host, or required
/// from compose/.env with `${NAME:?...}`.
fn check_secrets(c: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, svc) in services(c) {
        for (k, v) in env_raw(svc) {
            let secret = ["PASSWORD", "SECRET", "TOKEN", "API_KEY"]
                .iter()
                .any(|s| k.contains(s));
            let Some(v) = v.filter(|_| secret) else {
                continue;
            };
            let required = v.starts_with("${") && v.contains(":?") && v.ends_with('}');
            if !required {
                problems.push(format!("`{name}`: {k} has a value in the file ({v:?})"));
            }
        }
    }
    problems
}

/// One `FROM` of a Dockerfile.
#[derive(Debug)]
struct DockerStage {
    image: String,
    name: Option<String>,
    lines: Vec<String>,
}

/// The stages of a Dockerfile, with `ARG` defaults declared before the first `FROM` applied.
fn docker_stages(text: &str) -> Vec<DockerStage> {
    let mut joined = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') && cur.is_empty() {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
        } else {
            cur.push_str(t);
            if !cur.trim().is_empty() {
                joined.push(cur.trim().to_owned());
            }
            cur.clear();
        }
    }
    let mut args = BTreeMap::new();
    let mut stages: Vec<DockerStage> = Vec::new();
    for l in joined {
        let (instr, rest) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        match instr.to_ascii_uppercase().as_str() {
            "ARG" if stages.is_empty() => {
                if let Some((k, v)) = rest.trim().split_once('=') {
                    args.insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
            }
            "FROM" => {
                let parts: Vec<&str> = rest
                    .split_whitespace()
                    .filter(|p| !p.starts_with("--"))
                    .collect();
                let mut image = parts.first().copied().unwrap_or_default().to_owned();
                for (k, v) in &args {
                    image = image
                        .replace(&format!("${{{k}}}"), v)
                        .replace(&format!("${k}"), v);
                }
                let name = match parts.as_slice() {
                    [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(n.to_string()),
                    _ => None,
                };
                stages.push(DockerStage {
                    image,
                    name,
                    lines: Vec::new(),
                });
            }
            _ => {
                if let Some(s) = stages.last_mut() {
                    s.lines.push(l.clone());
                }
            }
        }
    }
    stages
}

/// Multi-stage: a Rust builder compiles the binary with `--locked`; the final image is a
/// different, small base that copies only the binary, runs as a non-root user, and starts crmflow.
fn check_dockerfile(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let stages = docker_stages(text);
    let (Some(builder), Some(runtime)) = (stages.first(), stages.last()) else {
        return vec!["the Dockerfile has no FROM".into()];
    };
    if stages.len() < 2 {
        return vec!["the Dockerfile is not multi-stage".into()];
    }
    if !builder.image.starts_with("rust:") {
        problems.push(format!("builder image {:?} is not rust", builder.image));
    }
    let builds = builder
        .lines
        .iter()
        .any(|l| l.contains("cargo build") && l.contains("--release") && l.contains("--locked"));
    if !builds {
        problems.push("the builder does not run cargo build --release --locked".into());
    }
    let earlier: Vec<&str> = stages[..stages.len() - 1]
        .iter()
        .filter_map(|s| s.name.as_deref())
        .collect();
    if runtime.image == builder.image
        || runtime.image.starts_with("rust:")
        || earlier.contains(&runtime.image.as_str())
    {
        problems.push(format!(
            "the runtime stage is built on {:?}, the builder's image",
            runtime.image
        ));
    }
    let small = ["debian:", "gcr.io/distroless/", "ubuntu:"]
        .iter()
        .any(|p| runtime.image.starts_with(p))
        && (runtime.image.contains("slim") || runtime.image.contains("distroless"));
    if !small {
        problems.push(format!(
            "runtime image {:?} is not a slim base",
            runtime.image
        ));
    }
    let copies_binary = runtime.lines.iter().any(|l| {
        builder
            .name
            .as_deref()
            .is_some_and(|b| l.starts_with("COPY") && l.contains(&format!("--from={b}")))
            && l.contains("crmflow")
    });
    if !copies_binary {
        problems.push("the runtime stage does not copy the binary from the builder".into());
    }
    let user = runtime
        .lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .map(|u| u.trim().to_owned());
    if user.as_deref().is_none_or(|u| {
        let u = u.split(':').next().unwrap_or_default();
        u == "root" || u == "0"
    }) {
        problems.push(format!("the runtime runs as {user:?}, not a non-root user"));
    }
    let entry = runtime
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .unwrap_or_default();
    if !entry.contains("crmflow") {
        problems.push(format!("ENTRYPOINT {entry:?} is not crmflow"));
    }
    problems
}

fn assert_none(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

fn assert_some(what: &str, problems: Vec<String>, needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "{what}: expected a problem mentioning {needle:?}, got {problems:?}"
    );
}

// ------------------------------------------------------------------------------------ tests

#[test]
fn every_stage_has_its_own_service() {
    assert_none("stage services", check_stage_services(&compose()));
}

#[test]
fn consumer_group_stages_scale() {
    assert_none("scalable stages", check_scalable(&compose()));
}

#[test]
fn prometheus_scrapes_every_stage_replica() {
    assert_none("prometheus", check_prometheus(&compose(), &prometheus()));
}

#[test]
fn dashboard_queries_only_exported_metrics() {
    assert_none("dashboard metrics", check_dashboard_metrics(&dashboard()));
}

#[test]
fn dashboard_uses_the_provisioned_datasource() {
    assert_none(
        "dashboard datasource",
        check_dashboard_datasource(
            &compose(),
            &dashboard(),
            &grafana_datasources(),
            &grafana_providers(),
        ),
    );
}

#[test]
fn dependencies_exist_and_are_health_checked() {
    assert_none("depends_on", check_dependencies(&compose()));
}

#[test]
fn infrastructure_matches_the_stages() {
    assert_none(
        "infrastructure",
        check_infrastructure(&compose(), &collector()),
    );
}

#[test]
fn no_secret_is_written_in_the_compose_file() {
    assert_none("secrets", check_secrets(&compose()));
}

#[test]
fn dockerfile_runtime_is_a_small_separate_image() {
    assert_none("Dockerfile", check_dockerfile(&read("Dockerfile")));
}

#[test]
fn dockerignore_keeps_build_output_and_secrets_out() {
    let ignore = read(".dockerignore");
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for must in ["target/", ".git/", "**/.env", "crmflow.toml"] {
        assert!(lines.contains(&must), ".dockerignore lacks {must}");
    }
    // The build needs every path Cargo.toml names: sources, migrations, schemas, benches, tests.
    for keep in [
        "src",
        "migrations",
        "schemas",
        "benches",
        "tests",
        "connectors",
    ] {
        assert!(
            !lines
                .iter()
                .any(|l| l.trim_end_matches('/').trim_start_matches("**/") == keep),
            ".dockerignore excludes {keep}, which the build needs"
        );
    }
}

/// Each check finds the breakage it exists for.
#[test]
fn checks_catch_broken_files() {
    let c = compose();

    let mut x = c.clone();
    x["services"]["sink"]["command"] = json!(["run", "--stages", "embed"]);
    assert_some("wrong stage", check_stage_services(&x), "`sink` runs");
    let mut x = c.clone();
    x["services"].as_object_mut().unwrap().remove("match");
    assert_some(
        "missing stage",
        check_stage_services(&x),
        "no service `match`",
    );
    let mut x = c.clone();
    x["services"]["normalize"]["environment"]["ML_SERVICE_URL"] = json!("http://ml:80");
    assert_some("ML url", check_stage_services(&x), "ML_SERVICE_URL");
    let mut x = c.clone();
    x["services"]["embed"]["depends_on"]
        .as_object_mut()
        .unwrap()
        .remove("migrate");
    assert_some("migrate dep", check_stage_services(&x), "`migrate`");

    let mut x = c.clone();
    x["services"]["sink"]["container_name"] = json!("crmflow-sink");
    assert_some("container_name", check_scalable(&x), "container_name");
    let mut x = c.clone();
    x["services"]["embed"]["ports"] = json!(["9464:9464"]);
    assert_some("host port", check_scalable(&x), "fixed host port");
    let mut x = c.clone();
    x["services"]["normalize"]["ports"] = json!([{"target": 9464, "published": 9464}]);
    assert_some(
        "host port, long form",
        check_scalable(&x),
        "fixed host port",
    );

    let prom = prometheus();
    let mut p = prom.clone();
    p["scrape_configs"][0]["dns_sd_configs"][0]["names"] =
        json!(["ingest", "normalize", "sink", "embed"]);
    assert_some("unscraped stage", check_prometheus(&c, &p), "match:9464");
    let mut p = prom.clone();
    p["scrape_configs"][0]["dns_sd_configs"][0]["port"] = json!(9090);
    assert_some("wrong port", check_prometheus(&c, &p), "sink:9464");

    let dash = dashboard();
    let mut d = dash.clone();
    d["panels"][1]["targets"][0]["expr"] = json!("sum(rate(crmflow_rows_written_total[5m]))");
    assert_some(
        "unknown metric",
        check_dashboard_metrics(&d),
        "crmflow_rows_written_total",
    );
    let mut d = dash.clone();
    d["panels"][1]["targets"][0]["expr"] = json!("sum(rate(crmflow_batch_duration_seconds[5m]))");
    assert_some(
        "histogram without suffix",
        check_dashboard_metrics(&d),
        "unknown metric",
    );

    let (ds, prov) = (grafana_datasources(), grafana_providers());
    let mut d = dash.clone();
    d["panels"][1]["datasource"] = json!({"type": "prometheus", "uid": "prometheus"});
    assert_some(
        "foreign uid",
        check_dashboard_datasource(&c, &d, &ds, &prov),
        "is not uid",
    );
    let mut other = ds.clone();
    other["datasources"][0]["uid"] = json!("renamed");
    assert_some(
        "renamed datasource",
        check_dashboard_datasource(&c, &dash, &other, &prov),
        "is not uid",
    );

    let mut x = c.clone();
    x["services"]["otel-collector"]["depends_on"] =
        json!({"jaeger": {"condition": "service_healthy"}});
    assert_some(
        "healthy without healthcheck",
        check_dependencies(&x),
        "no healthcheck",
    );

    let otel = collector();
    let mut x = c.clone();
    x["services"]["embed"]["environment"]["CRMFLOW_EMBED__BATCH_SIZE"] = json!("1000");
    assert_some(
        "batch over TEI limit",
        check_infrastructure(&x, &otel),
        "TEI accepts",
    );
    let mut x = c.clone();
    x["services"]["embed"]["environment"]["CRMFLOW_ML__MODEL"] = json!("other-model");
    assert_some(
        "model mismatch",
        check_infrastructure(&x, &otel),
        "TEI serves",
    );
    let mut o = otel.clone();
    o["exporters"]["otlp/jaeger"]["endpoint"] = json!("tempo:4317");
    assert_some("traces elsewhere", check_infrastructure(&c, &o), "jaeger");

    let mut x = c.clone();
    x["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] =
        json!("${DB_PASSWORD:-crmflow}");
    assert_some("defaulted secret", check_secrets(&x), "POSTGRES_PASSWORD");

    let docker = read("Dockerfile");
    let same = docker.replace(
        "ARG RUNTIME_IMAGE=debian:bookworm-slim",
        "ARG RUNTIME_IMAGE=rust:1-slim-bookworm",
    );
    assert_ne!(
        same, docker,
        "the Dockerfile's runtime ARG moved; update this test"
    );
    assert_some(
        "runtime = builder",
        check_dockerfile(&same),
        "builder's image",
    );
    let from_builder = docker.replace("AS runtime", "AS runtime2\nFROM builder AS runtime");
    assert_some(
        "runtime FROM builder",
        check_dockerfile(&from_builder),
        "builder's image",
    );
    let root = docker.replace("USER 10001:10001", "USER root");
    assert_some("root user", check_dockerfile(&root), "non-root");
}

/// The schema check, when Debian's docker-compose is installed (scripts/compose-check installs
/// it and runs the same validation; CI runs that script before the tests).
#[test]
fn docker_compose_config_accepts_the_file() {
    let dir = repo().join("compose");
    let probe = Command::new("docker-compose").arg("version").output();
    if probe.is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "docker-compose is not installed: run scripts/compose-check"
        );
        eprintln!("docker-compose not installed; scripts/compose-check validates the schema");
        return;
    }
    let out = Command::new("docker-compose")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(["--project-directory"])
        .arg(&dir)
        .arg("-f")
        .arg(dir.join("docker-compose.yml"))
        .arg("--env-file")
        .arg(dir.join(".env.example"))
        .args(["config", "--services"])
        .output()
        .expect("run docker-compose");
    assert!(
        out.status.success(),
        "docker-compose config rejects the file:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    for s in stages() {
        assert!(
            listed.contains(s),
            "docker-compose does not list `{s}`: {listed:?}"
        );
    }
}

#[test]
fn interpolation_and_addresses_parse_like_compose() {
    assert_eq!(interpolate("${A:-x}-${B-y}/${C}$$"), "x-y/$");
    assert_eq!(interpolate("${P:?set P}"), "<required P>");
    assert_eq!(host_of("http://otel-collector:4317"), "otel-collector");
    assert_eq!(host_of("kafka:9092,kafka2:9092"), "kafka");
    assert_eq!(port_of("0.0.0.0:4317"), Some(4317));
    assert_eq!(
        metric_names("histogram_quantile(0.5, rate(crmflow_x_bucket[5m])) + xcrmflow_y"),
        ["crmflow_x_bucket"]
    );
}

/// The dashboard's list of metrics is the one the code exports.
#[test]
fn dashboard_metric_list_is_the_exported_one() {
    let mut listed: Vec<&str> = COUNTERS
        .iter()
        .chain(HISTOGRAMS)
        .chain(GAUGES)
        .copied()
        .collect();
    let mut exported: Vec<&str> = crmflow::observe::names::ALL.to_vec();
    listed.sort_unstable();
    exported.sort_unstable();
    assert_eq!(listed, exported);
}
