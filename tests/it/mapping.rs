//! Custom fields end to end, against the Bullhorn and HubSpot simulators, Kafka and Postgres: a
//! mapped Bullhorn custom field reaches `attributes` typed, a bad value is dead-lettered under its
//! rule, a newly mapped attribute is backfilled from the CRM, a canonical record of schema version 1
//! still decodes in the sink, and `crmflow mapping check` (and `run`) name each kind of error.

use std::time::Duration;

use rdkafka::message::OwnedHeaders;
use serde_json::{json, Value};

use crmflow::config::mapping::MappingConfig;
use crmflow::config::Config;
use crmflow::kafka::{Producer, Topics};
use crmflow::runtime::StageName;

use crate::common::crmflow_cmd;
use crate::fixtures::dead_letters;

const MAPPING: &str = r#"
[bullhorn.candidate]
visa_status = { field = "customText2", type = "string", enum = ["Citizen", "Permanent resident", "Work visa", "Sponsorship needed"] }
notice_days = { field = "customInt1", type = "long", min = 0, max = 365 }
sectors = { field = "customText3", type = "list<string>" }
available_from = { field = "customDate1", type = "date" }
"#;

fn mapping(text: &str) -> MappingConfig {
    toml::from_str(text).unwrap()
}

async fn pipeline(cfg: &Config) {
    tokio::time::timeout(
        Duration::from_secs(180),
        crmflow::run::run(
            cfg.clone(),
            &[StageName::Ingest, StageName::Normalize, StageName::Sink],
            true,
        ),
    )
    .await
    .expect("pipeline caught up in time")
    .expect("pipeline ran");
}

/// `crm_id -> attributes` of the live candidates.
async fn attributes(cfg: &Config) -> std::collections::HashMap<String, Value> {
    let c = crmflow::store::connect(cfg).await.unwrap();
    c.query(
        "SELECT crm_id, attributes FROM candidates WHERE deleted_at IS NULL",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_bullhorn_custom_fields_reach_postgres_typed_and_bad_values_are_dead_lettered() {
    let sim = crate::ingest::start_sim(40, 5, 0.0).await;
    let good = sim
        .insert(
            "Candidate",
            json!({"firstName": "Ana", "lastName": "Lopez", "customText2": "  work VISA ",
                   "customInt1": 30, "customText3": "Fintech; Energy,Retail",
                   "customDate1": 1_767_589_200_000_i64, "customFloat1": 650.5}),
        )
        .unwrap();
    let bad = sim
        .insert(
            "Candidate",
            json!({"firstName": "Bo", "lastName": "Chen", "customText2": "Tourist"}),
        )
        .unwrap();
    let out_of_range = sim
        .insert(
            "Candidate",
            json!({"firstName": "Cy", "lastName": "Diaz", "customText2": "Citizen", "customInt1": 400}),
        )
        .unwrap();
    let mut cfg = crate::ingest::setup("mapping_typed", &sim).await;
    cfg.bullhorn.entities = vec!["Candidate".into()];
    cfg.mapping = mapping(MAPPING);
    pipeline(&cfg).await;

    let rows = attributes(&cfg).await;
    let a = &rows[&good.to_string()];
    assert_eq!(
        a,
        &json!({"visa_status": "Work visa", "notice_days": 30,
                "sectors": ["Fintech", "Energy", "Retail"],
                "available_from": "2026-01-05T05:00:00.000Z"}),
        "typed, cleaned, enum spelling; unmapped customFloat1 not carried"
    );
    let c = crmflow::store::connect(&cfg).await.unwrap();
    let types: Vec<String> = c
        .query(
            "SELECT jsonb_typeof(attributes->k) FROM candidates, unnest(ARRAY['visa_status','notice_days','sectors']) k WHERE crm_id = $1 ORDER BY k",
            &[&good.to_string()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(types, vec!["number", "array", "string"]);
    // The GIN index answers containment.
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM candidates WHERE attributes @> '{\"visa_status\": \"Work visa\"}'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(n >= 1);

    // Bad values are dead letters under their rule, and never rows.
    assert!(!rows.contains_key(&bad.to_string()));
    assert!(!rows.contains_key(&out_of_range.to_string()));
    let dlq = dead_letters(&cfg);
    let rule_of = |id: i64| {
        dlq.iter()
            .find(|(_, _, key)| key.ends_with(&format!(":{id}")) || key == &id.to_string())
            .map(|(_, rule, _)| rule.clone())
    };
    assert_eq!(
        rule_of(bad).as_deref(),
        Some("mapping.visa_status.enum"),
        "{dlq:?}"
    );
    assert_eq!(
        rule_of(out_of_range).as_deref(),
        Some("mapping.notice_days.range")
    );
    // Every candidate of the simulator (dirty custom values included) is a row, a tombstone or
    // a dead letter.
    let generated = sim.count("Candidate").unwrap() as i64;
    let stored: i64 = c
        .query_one("SELECT count(*) FROM candidates", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        stored + dlq.len() as i64 >= generated,
        "{stored} + {} < {generated}",
        dlq.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_attribute_is_backfilled_from_the_crm() {
    let sim = crate::ingest::start_sim(60, 5, 0.0).await;
    let mut cfg = crate::ingest::setup("mapping_backfill", &sim).await;
    cfg.bullhorn.entities = vec!["Candidate".into()];
    cfg.mapping = mapping(
        r#"[bullhorn.candidate]
        notice_days = { field = "customInt1", type = "long" }"#,
    );
    pipeline(&cfg).await;
    let before = attributes(&cfg).await;
    assert!(before.values().all(|a| a.get("day_rate").is_none()));

    // The mapping gains day_rate; only the records with a value in customFloat1 are read again.
    let mut v2 = cfg.clone();
    v2.mapping = mapping(
        r#"[bullhorn.candidate]
        notice_days = { field = "customInt1", type = "long" }
        day_rate = { field = "customFloat1", type = "double", min = 0 }"#,
    );
    let with_rate: Vec<(String, f64)> = sim
        .records("Candidate")
        .unwrap()
        .iter()
        .filter(|r| r["isDeleted"] != json!(true))
        .filter_map(|r| Some((r["id"].to_string(), r.get("customFloat1")?.as_f64()?)))
        .collect();
    assert!(!with_rate.is_empty());
    // Records the pipeline rejected have no row to fill.
    let stored: Vec<&(String, f64)> = with_rate
        .iter()
        .filter(|(id, _)| before.contains_key(id))
        .collect();
    let report = crmflow::mapping::backfill::run(&v2, "day_rate")
        .await
        .unwrap();
    let e = &report.entities[0];
    assert_eq!(
        (e.crm.as_str(), e.entity.as_str()),
        ("bullhorn", "candidate")
    );
    assert_eq!(e.read, with_rate.len() as u64, "{report:?}");
    assert_eq!(e.updated, stored.len() as u64, "{report:?}");
    assert_eq!(e.not_applied, e.read - e.updated, "{report:?}");
    assert_eq!(e.requests, 1, "one page of at most 500");
    let after = attributes(&cfg).await;
    for (id, rate) in stored.iter().copied() {
        assert_eq!(after[id]["day_rate"], json!(rate), "{id}");
        assert_eq!(
            after[id].get("notice_days"),
            before[id].get("notice_days"),
            "kept"
        );
    }
    let without = after
        .values()
        .filter(|a| a.get("day_rate").is_none())
        .count();
    assert_eq!(without, after.len() - stored.len());

    // Again: the same values, nothing else touched.
    let again = crmflow::mapping::backfill::run(&v2, "day_rate")
        .await
        .unwrap();
    assert_eq!(again.entities[0].updated, stored.len() as u64);
    assert_eq!(attributes(&cfg).await, after);

    // An attribute no mapping names is a one-line error.
    let err = crmflow::mapping::backfill::run(&v2, "nope")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("maps attribute `nope`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canonical_record_of_schema_version_1_still_decodes_in_the_sink() {
    let cfg = crate::common::isolated_config("mapping_v1");
    crate::fixtures::prepare(&cfg).await;
    let c = crmflow::model::Candidate {
        crm: "bullhorn".into(),
        crm_id: "77".into(),
        source_version: 5,
        first_name: Some("Old".into()),
        lineage: crmflow::model::Lineage {
            crm: "bullhorn".into(),
            crm_id: "77".into(),
            source_version: 5,
            event_id: "e77".into(),
            raw_topic: "crm.raw.bullhorn.candidate".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut obj = serde_json::to_value(&c).unwrap();
    obj.as_object_mut().unwrap().remove("attributes");
    let v1_text = crmflow::codec::schemas::CANDIDATE_V1;
    let v1 = apache_avro::Schema::parse_str(v1_text).unwrap();
    let value = apache_avro::to_value(&obj).unwrap().resolve(&v1).unwrap();
    let mut bytes = crmflow::codec::MAGIC.to_vec();
    bytes.extend_from_slice(&crmflow::codec::pcf::fingerprint(v1_text).unwrap());
    bytes.extend(apache_avro::to_avro_datum(&v1, value).unwrap());
    assert_ne!(bytes[2..10], crmflow::codec::candidate().fingerprint());
    let producer = Producer::new(&cfg.kafka).unwrap();
    producer
        .send(
            &Topics::new(&cfg.kafka).canonical("candidate"),
            b"bullhorn:77",
            &bytes,
            OwnedHeaders::new(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        crmflow::run::run(cfg.clone(), &[StageName::Sink], true),
    )
    .await
    .unwrap()
    .unwrap();
    let rows = attributes(&cfg).await;
    assert_eq!(rows["77"], json!({}), "version 1 reads as no attributes");
    assert!(dead_letters(&cfg).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_check_names_each_error_kind_and_run_refuses_the_same() {
    let sim = crate::ingest::start_sim(5, 1, 0.0).await;
    let mut cfg = crate::ingest::setup("mapping_check", &sim).await;
    let hs_sim = crate::hubspot::start_sim(crmflow_hubspot::sim::SimConfig::for_tests()).await;
    cfg.hubspot = crate::hubspot::setup("mapping_check_hs", &hs_sim)
        .await
        .hubspot;
    cfg.bullhorn.enabled = true;
    let text = r#"
[mapping.bullhorn.candidate]
visa_status = { field = "customText2", type = "string" }
notice_days = { field = "customInt1", type = "long" }
available_from = { field = "customDate1", type = "date" }
typo = { field = "customText99", type = "string" }
wrong = { field = "customText3", type = "double" }
passport = { field = "customEncryptedText1", type = "string" }
[mapping.hubspot.contact]
visa_status = { field = "visa_status", type = "string" }
sectors = { field = "target_sectors", type = "list<string>" }
rate = { field = "day_rate", type = "double" }
relocate = { field = "will_relocate", type = "boolean" }
start = { field = "available_from", type = "date" }
passport = { field = "passport_number", type = "string" }
notice = { field = "notice_period_days", type = "date" }
"#;
    let file = std::env::temp_dir().join(format!("{}.toml", cfg.postgres.schema));
    std::fs::write(&file, text).unwrap();
    let creds = sim.credentials();
    let out = crmflow_cmd(&cfg)
        .arg("--config")
        .arg(&file)
        .args(["mapping", "check"])
        .env("BULLHORN_REST_URL", sim.rest_services_url())
        .env("BULLHORN_CLIENT_ID", &creds.client_id)
        .env("BULLHORN_CLIENT_SECRET", &creds.client_secret)
        .env("BULLHORN_USERNAME", &creds.username)
        .env("BULLHORN_PASSWORD", &creds.password)
        .env("HUBSPOT_BASE_URL", hs_sim.base_url())
        .env("HUBSPOT_ACCESS_TOKEN", hs_sim.private_app_token())
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let starts = |key: &str, kind: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{key}: {kind}")))
    };
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(
        starts(
            "mapping.bullhorn.candidate.typo",
            "unknown field customText99"
        ),
        "{stdout}"
    );
    assert!(
        starts("mapping.bullhorn.candidate.wrong", "wrong type: double"),
        "{stdout}"
    );
    assert!(
        starts(
            "mapping.bullhorn.candidate.passport",
            "unreadable field customEncryptedText1 \"Passport number\""
        ),
        "{stdout}"
    );
    assert!(
        starts(
            "mapping.hubspot.contact.passport",
            "unreadable field passport_number"
        ),
        "{stdout}"
    );
    assert!(
        starts("mapping.hubspot.contact.notice", "wrong type: date"),
        "{stdout}"
    );

    // `run` refuses to start with the same lines.
    cfg.mapping = crmflow::config::Config::load(Some(&file)).unwrap().mapping;
    let err = crmflow::run::run(cfg.clone(), &[StageName::Ingest], true)
        .await
        .unwrap_err()
        .to_string();
    for l in &lines {
        assert!(err.contains(l), "{err}\nlacks {l}");
    }

    // Fixed, the check passes.
    let good: String = text
        .lines()
        .filter(|l| {
            !["typo", "wrong", "passport", "notice"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, good).unwrap();
    let out = crmflow_cmd(&cfg)
        .arg("--config")
        .arg(&file)
        .args(["mapping", "check"])
        .env("BULLHORN_REST_URL", sim.rest_services_url())
        .env("BULLHORN_CLIENT_ID", &creds.client_id)
        .env("BULLHORN_CLIENT_SECRET", &creds.client_secret)
        .env("BULLHORN_USERNAME", &creds.username)
        .env("BULLHORN_PASSWORD", &creds.password)
        .env("HUBSPOT_BASE_URL", hs_sim.base_url())
        .env("HUBSPOT_ACCESS_TOKEN", hs_sim.private_app_token())
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&file);
}

/// Candidate `id` at `version`; even ids carry one attribute of each type.
fn embed_candidate(id: u64, version: i64) -> crmflow::model::Candidate {
    use crmflow::model::{AttributeDate, AttributeValue as V};
    let attributes = if id % 2 == 0 {
        [
            ("sectors", V::List(vec!["Fintech".into(), "Energy".into()])),
            ("day_rate", V::Double(650.5 + id as f64)),
            (
                "available_from",
                V::Date(AttributeDate {
                    epoch_ms: 1_767_589_200_000,
                }),
            ),
            ("relocate", V::Boolean(id % 4 == 0)),
            ("notice_days", V::Long(30)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    } else {
        Default::default()
    };
    crmflow::model::Candidate {
        crm: "bullhorn".into(),
        crm_id: id.to_string(),
        source_version: version,
        first_name: Some(format!("First{id}")),
        occupation: Some("Welder".into()),
        summary: Some(format!("Candidate {id} welds pipelines and tanks.")),
        lineage: crmflow::model::Lineage {
            crm: "bullhorn".into(),
            crm_id: id.to_string(),
            source_version: version,
            event_id: format!("e{id}-{version}"),
            raw_topic: "crm.raw.bullhorn.candidate".into(),
            ..Default::default()
        },
        attributes,
        ..Default::default()
    }
}

async fn produce_candidates(cfg: &Config, records: &[crmflow::model::Candidate]) {
    let topic = Topics::new(&cfg.kafka).canonical("candidate");
    let producer = Producer::new(&cfg.kafka).unwrap();
    for c in records {
        let bytes = crmflow::codec::candidate().encode(c).unwrap();
        let key = format!("{}:{}", c.crm, c.crm_id);
        producer
            .send(&topic, key.as_bytes(), &bytes, OwnedHeaders::new())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

async fn sink_and_embed(cfg: &Config) {
    tokio::time::timeout(
        Duration::from_secs(120),
        crmflow::run::run(cfg.clone(), &[StageName::Sink, StageName::Embed], true),
    )
    .await
    .expect("caught up in time")
    .expect("ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_naming_attributes_re_embeds_only_the_records_whose_text_changed() {
    use crmflow_embedding::sim::{SimArgs, Simulator};
    let ml = Simulator::start(SimArgs::for_tests()).await.unwrap();
    let mut cfg = crate::common::isolated_config("mapping_embed");
    cfg.ml.url = ml.base_url().to_string();
    cfg.ml.timeout_secs = 5;
    cfg.embed.batch_size = 100;
    cfg.embed.linger_ms = 50;
    cfg.embed.candidate_template = "{occupation}\n{summary}".into();
    crate::fixtures::prepare(&cfg).await;
    let v1: Vec<_> = (1..=20).map(|id| embed_candidate(id, 100)).collect();
    produce_candidates(&cfg, &v1).await;
    sink_and_embed(&cfg).await;
    assert_eq!(ml.stats().inputs_embedded, 20);

    // The template now names every attribute; the records come again (a newer version, same
    // content). Only the ten with attributes render a different text, so only they are sent.
    let mut v2 = cfg.clone();
    v2.embed.candidate_template = "{occupation}\n{summary}\n{attributes.sectors} {attributes.day_rate} {attributes.available_from} {attributes.relocate} {attributes.notice_days} {attributes.absent}".into();
    ml.reset_stats();
    let again: Vec<_> = (1..=20).map(|id| embed_candidate(id, 200)).collect();
    produce_candidates(&v2, &again).await;
    sink_and_embed(&v2).await;
    assert_eq!(
        ml.stats().inputs_embedded,
        10,
        "only the records whose text changed"
    );

    // The backfill renders the same texts from the attributes jsonb in SQL: all current.
    let report = crmflow::stages::embed::backfill::run(&v2).await.unwrap();
    assert_eq!(
        (report.updated, report.skipped, report.failed),
        (0, 20, 0),
        "{report:?}"
    );
    let c = crmflow::store::connect(&v2).await.unwrap();
    let hash: String = c
        .query_one(
            "SELECT content_hash FROM embeddings WHERE entity = 'candidate' AND crm_id = '4'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let t = crmflow::stages::embed::text::Templates::from_config(&v2.embed).unwrap();
    let text = t.candidate.render_candidate(&again[3]);
    assert_eq!(
        text,
        "Welder\nCandidate 4 welds pipelines and tanks.\nFintech, Energy 654.5 2026-01-05T05:00:00.000Z true 30"
    );
    assert_eq!(
        hash,
        crmflow::stages::embed::text::content_hash(&v2.ml.model, &text)
    );
}
