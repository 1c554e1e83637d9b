//! `crmflow lineage` against what normalize and sink stored (real Kafka and Postgres): a live
//! row, a tombstone, a record only in the DLQ, and an unknown id each get their own answer;
//! and read-only commands neither migrate nor print library noise.

use std::time::Duration;

use crmflow::model::{ChangeEvent, Op};
use crmflow::runtime::StageName;
use serde_json::Value;

use crate::common::{crmflow_cmd, isolated_config};
use crate::fixtures::{candidate_json, prepare, produce_raw, T0};

fn event(id: u64, version: i64, op: Op, bad: bool) -> ChangeEvent {
    ChangeEvent::new(
        "bullhorn",
        "Candidate",
        &id.to_string(),
        op,
        version,
        version,
        vec![],
        "poll",
        candidate_json(id, version, bad),
    )
}

fn lineage(cfg: &crmflow::config::Config, record: &str, json: bool) -> (bool, String, String) {
    let mut cmd = crmflow_cmd(cfg);
    cmd.args(["lineage", record]).env_remove("RUST_LOG").env(
        "CRMFLOW_TELEMETRY__TRACE_UI_URL",
        "http://localhost:16686/trace/{trace_id}",
    );
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("crmflow lineage");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn journey(cfg: &crmflow::config::Config, record: &str) -> Value {
    let (ok, out, err) = lineage(cfg, record, true);
    assert!(ok, "lineage {record} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_answers_row_tombstone_dlq_only_and_unknown() {
    let cfg = isolated_config("lineage");
    prepare(&cfg).await;
    produce_raw(
        &cfg,
        &[
            event(1, T0, Op::Upsert, false),
            event(2, T0, Op::Upsert, false),
            event(2, T0 + 1_000, Op::Delete, false),
            event(3, T0, Op::Upsert, true),
        ],
    )
    .await;
    tokio::time::timeout(
        Duration::from_secs(120),
        crmflow::run::run(cfg.clone(), &[StageName::Normalize, StageName::Sink], true),
    )
    .await
    .expect("one-shot in time")
    .expect("one-shot run");

    // A live row: CRM version, raw and canonical positions, the row, the trace link.
    let j = journey(&cfg, "bullhorn:candidate:1");
    assert_eq!(j["found"], "row", "{j:#}");
    let row = &j["row"];
    assert_eq!(row["source_version"], T0);
    assert_eq!(row["crm_modified_at"], "2025-10-09T08:53:20.000Z");
    assert!(row["raw_topic"]
        .as_str()
        .unwrap()
        .ends_with("crm.raw.bullhorn.candidate"));
    assert!(row["raw_offset"].as_i64().is_some());
    assert!(row["event_id"].as_str().is_some_and(|e| e.len() == 32));
    assert!(row["canonical_topic"]
        .as_str()
        .unwrap()
        .ends_with("crm.canonical.candidate"));
    assert!(row["canonical_partition"].as_i64().is_some(), "{j:#}");
    assert!(row["canonical_offset"].as_i64().is_some(), "{j:#}");
    assert!(row["written_at"].as_str().is_some());
    let trace = row["trace_id"].as_str().expect("trace id").to_owned();
    assert_eq!(j["trace_id"], trace.as_str());
    assert_eq!(
        j["trace_url"],
        format!("http://localhost:16686/trace/{trace}").as_str()
    );
    assert!(j["dead_letters"].as_array().unwrap().is_empty());
    // The text form says the same, in pipeline order.
    let (ok, text, err) = lineage(&cfg, "bullhorn:candidate:1", false);
    assert!(ok);
    for part in [
        "live row in candidates",
        "  raw ",
        "  canonical ",
        "  row ",
        "  trace     http://",
    ] {
        assert!(text.contains(part), "{part:?} in\n{text}");
    }
    assert!(
        err.is_empty(),
        "no log lines on a read-only command:\n{err}"
    );

    // A tombstone.
    let j = journey(&cfg, "bullhorn:candidate:2");
    assert_eq!(j["found"], "tombstone", "{j:#}");
    assert_eq!(j["row"]["source_version"], T0 + 1_000);
    assert!(j["row"]["deleted_at"].as_str().is_some());
    assert!(j["summary"].as_str().unwrap().starts_with("tombstone"));

    // Only in the DLQ: the stage, rule and reason that rejected it.
    let j = journey(&cfg, "bullhorn:Candidate:3");
    assert_eq!(j["found"], "dlq_only", "{j:#}");
    assert!(j["row"].is_null());
    let dl = &j["dead_letters"][0];
    assert_eq!(dl["stage"], "normalize");
    assert_eq!(dl["rule"], "candidate.email.format");
    assert!(dl["reason"].as_str().is_some());
    assert!(dl["source"]
        .as_str()
        .unwrap()
        .contains("crm.raw.bullhorn.candidate:"));
    assert!(j["trace_id"].as_str().is_some(), "the dead letter's trace");

    // Unknown.
    let j = journey(&cfg, "bullhorn:candidate:999");
    assert_eq!(j["found"], "unknown");
    assert!(j["summary"].as_str().unwrap().starts_with("unknown"));
    // A malformed reference is a usage error, not a crash.
    let (ok, _, err) = lineage(&cfg, "bullhorn:widget:1", false);
    assert!(!ok);
    assert!(err.contains("candidate or position"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_neither_migrate_nor_print_library_noise() {
    let cfg = isolated_config("readonly");
    // Never migrated: status and lineage say so and create nothing.
    for args in [vec!["status"], vec!["lineage", "bullhorn:candidate:1"]] {
        let out = crmflow_cmd(&cfg)
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains("crmflow migrate"), "{args:?}: {err}");
        assert!(
            !err.contains("INFO") && !err.contains("refinery"),
            "{args:?}: {err}"
        );
    }
    let client = crmflow::store::connect(&cfg).await.unwrap();
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&cfg.postgres.schema],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "a read-only command created the schema");

    // Migrated: status prints its table and nothing else on stderr.
    crmflow::store::migrate(&cfg).await.unwrap();
    for args in [vec!["status"], vec!["config", "check"], vec!["dlq", "list"]] {
        let out = crmflow_cmd(&cfg)
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        assert!(err.trim().is_empty(), "{args:?} printed:\n{err}");
    }
}
