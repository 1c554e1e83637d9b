//! The properties of the Compose file, the Prometheus and collector configs and the dashboard: each
//! returns the problems it finds.

use std::collections::BTreeSet;

use serde_json::Value;

use super::files::*;

/// Every stage has its own service running `crmflow run --stages <stage>` from the repository's
/// image, wired to the other services and health-checked on its operator endpoint.
pub(crate) fn check_stage_services(c: &Value) -> Vec<String> {
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
pub(crate) fn check_scalable(c: &Value) -> Vec<String> {
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
pub(crate) fn check_prometheus(c: &Value, prom: &Value) -> Vec<String> {
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
pub(crate) fn check_dashboard_metrics(dash: &Value) -> Vec<String> {
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
pub(crate) fn check_dashboard_datasource(
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
pub(crate) fn check_dependencies(c: &Value) -> Vec<String> {
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
pub(crate) fn check_infrastructure(c: &Value, otel: &Value) -> Vec<String> {
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
pub(crate) fn check_secrets(c: &Value) -> Vec<String> {
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
