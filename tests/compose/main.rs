//! The deployment files (`compose/`, `Dockerfile`) checked without a Docker engine.
//!
//! Each property is a function that returns the problems it finds, so the same function is run
//! on the real files (no problem allowed) and on deliberately broken copies (a problem must be
//! found): a check that cannot fail is caught here too.
//!
//! When Debian's `docker-compose` is installed (scripts/compose-check installs it), the file is
//! also validated against the Compose Specification's schema by `docker-compose config`.

mod checks;
mod dockerfile;
mod files;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::json;

use checks::*;
use dockerfile::*;
use files::*;

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
