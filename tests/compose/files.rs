//! Loading the deployment files (YAML, JSON, the Dockerfile) and reading values out of them the way
//! Compose does (interpolation, merge keys, addresses, environment lists).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

/// The services that must run one stage each: the CLI's own stage names.
pub(crate) fn stages() -> Vec<&'static str> {
    crmflow::runtime::StageName::ALL
        .iter()
        .map(|s| s.as_str())
        .collect()
}

/// Stages whose replicas share the work (consumer groups; match's queue uses SKIP LOCKED).
pub(crate) const SCALABLE: &[&str] = &["normalize", "sink", "embed", "match"];

/// Every metric crmflow exports; the dashboard may query nothing else.
pub(crate) const COUNTERS: &[&str] = &[
    "crmflow_records_in_total",
    "crmflow_records_out_total",
    "crmflow_records_rejected_total",
    "crmflow_retries_total",
    "crmflow_ml_requests_total",
    "crmflow_ml_inputs_total",
    "crmflow_embeddings_skipped_total",
    "crmflow_source_records_total",
];
pub(crate) const HISTOGRAMS: &[&str] = &[
    "crmflow_batch_size",
    "crmflow_batch_duration_seconds",
    "crmflow_freshness_seconds",
];
pub(crate) const GAUGES: &[&str] = &[
    "crmflow_consumer_lag",
    "crmflow_source_lag_seconds",
    "crmflow_dlq_depth",
    "crmflow_stage_last_progress_seconds",
];

pub(crate) const METRICS_PORT: u16 = 9464;

// ------------------------------------------------------------------------------------ loading

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// A YAML file as JSON, with `<<` merge keys applied (compose files use anchors).
pub(crate) fn yaml(rel: &str) -> Value {
    let v: serde_norway::Value =
        serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut v = serde_json::to_value(v).unwrap_or_else(|e| panic!("{rel}: {e}"));
    merge_keys(&mut v);
    v
}

/// YAML merge keys, nested ones included (a merged mapping may merge another): keys written in
/// the mapping win, then the merged mappings in order.
pub(crate) fn merge_keys(v: &mut Value) {
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

pub(crate) fn compose() -> Value {
    yaml("compose/docker-compose.yml")
}

pub(crate) fn prometheus() -> Value {
    yaml("compose/prometheus.yml")
}

pub(crate) fn dashboard() -> Value {
    serde_json::from_str(&read("compose/grafana/dashboards/crmflow.json"))
        .expect("dashboard JSON parses")
}

pub(crate) fn grafana_datasources() -> Value {
    yaml("compose/grafana/provisioning/datasources/datasources.yml")
}

pub(crate) fn grafana_providers() -> Value {
    yaml("compose/grafana/provisioning/dashboards/dashboards.yml")
}

pub(crate) fn collector() -> Value {
    yaml("compose/otel-collector.yaml")
}

// ------------------------------------------------------------------------------------ helpers

/// Compose interpolation with the defaults written in the file: `${X:-d}` and `${X-d}` give `d`,
/// `${X:?msg}` gives `<required X>`, `${X}` gives the empty string, `$$` a dollar.
pub(crate) fn interpolate(s: &str) -> String {
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

pub(crate) fn services(c: &Value) -> &serde_json::Map<String, Value> {
    c["services"].as_object().expect("services is a mapping")
}

/// A `command` or healthcheck `test` as words (list form, or a string split on whitespace).
pub(crate) fn words(v: &Value) -> Vec<String> {
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

pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's environment as name -> raw value (None: passed through from the host).
pub(crate) fn env_raw(svc: &Value) -> BTreeMap<String, Option<String>> {
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
pub(crate) fn env(svc: &Value) -> BTreeMap<String, String> {
    env_raw(svc)
        .into_iter()
        .filter_map(|(k, v)| Some((k, interpolate(&v?))))
        .collect()
}

/// `host` of `host:port`, `scheme://host:port/path` or `host:port,host2:port`.
pub(crate) fn host_of(addr: &str) -> String {
    let a = addr.split(',').next().unwrap_or_default();
    let a = a.split_once("://").map_or(a, |(_, r)| r);
    let a = a.split('/').next().unwrap_or_default();
    a.rsplit_once(':').map_or(a, |(h, _)| h).to_owned()
}

pub(crate) fn port_of(addr: &str) -> Option<u16> {
    let a = addr.split_once("://").map_or(addr, |(_, r)| r);
    let a = a.split('/').next()?;
    a.rsplit_once(':')?.1.parse().ok()
}

pub(crate) fn depends_on(svc: &Value) -> BTreeMap<String, String> {
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
pub(crate) fn strings_at(v: &Value, keys: &[&str], out: &mut Vec<String>) {
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
pub(crate) fn metric_names(expr: &str) -> Vec<String> {
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
