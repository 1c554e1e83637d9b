//! The REST client against the simulator over TLS.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use crmflow_salesforce::client::{AuthConfig, ClientConfig, ClientError, SalesforceClient};
use crmflow_salesforce::ids;
use crmflow_salesforce::sim::{FaultsPatch, SimConfig};
use crmflow_salesforce::wire::parse_datetime;
use secrecy::SecretString;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn untrusted_certificate_is_refused() {
    let sim = start(SimConfig::for_tests()).await;
    let mut cfg = cc_config(&sim);
    cfg.ca_pem = None;
    cfg.max_retries = 0;
    let c = SalesforceClient::new(cfg).unwrap();
    let e = c
        .count("Contact")
        .await
        .expect_err("self-signed CA must not be trusted by default");
    assert!(matches!(e, ClientError::Transport { .. }), "{e:?}");
}

#[tokio::test]
async fn client_credentials_query_and_count() {
    let sim = start(SimConfig::for_tests()).await;
    let c = cc_client(&sim);
    let live = sim
        .records("Contact")
        .unwrap()
        .iter()
        .filter(|r| r["IsDeleted"] == json!(false))
        .count() as u64;
    assert_eq!(c.count("Contact").await.unwrap(), live);
    let s = c.session().await.unwrap();
    assert_eq!(s.org_id.as_deref(), Some(sim.org_id().as_str()));
    let bad = SalesforceClient::new({
        let mut cfg = cc_config(&sim);
        cfg.auth = AuthConfig::ClientCredentials {
            client_id: "nope".into(),
            client_secret: SecretString::from("x".to_string()),
        };
        cfg
    })
    .unwrap();
    let e = bad.count("Contact").await.unwrap_err();
    assert!(
        matches!(e, ClientError::Auth(_)) && !e.is_retriable(),
        "{e}"
    );
}

#[tokio::test]
async fn jwt_bearer_flow_and_claims_checked() {
    let sim = start(SimConfig::for_tests()).await;
    let jwt = |username: &str, audience: &str| {
        let mut cfg = cc_config(&sim);
        cfg.auth = AuthConfig::JwtBearer {
            client_id: sim.config().client_id.clone(),
            username: username.to_string(),
            private_key_pem: SecretString::from(JWT_PRIVATE_KEY.to_string()),
            audience: Some(audience.to_string()),
        };
        SalesforceClient::new(cfg).unwrap()
    };
    let ok = jwt(&sim.config().username, "https://login.salesforce.com");
    assert!(ok.count("Position__c").await.unwrap() > 0);
    let wrong_user = jwt("someone@else", "https://login.salesforce.com");
    let e = wrong_user.count("Contact").await.unwrap_err();
    assert!(e.to_string().contains("invalid_grant"), "{e}");
    let wrong_aud = jwt(&sim.config().username, "https://evil.example.com");
    let e = wrong_aud.count("Contact").await.unwrap_err();
    assert!(e.to_string().contains("audience"), "{e}");
}

#[tokio::test]
async fn reauthenticates_on_invalid_session() {
    let sim = start(SimConfig::for_tests()).await;
    let c = cc_client(&sim);
    let first = c.session().await.unwrap();
    c.count("Contact").await.unwrap();
    sim.set_faults(&FaultsPatch {
        expire_sessions: true,
        ..Default::default()
    });
    c.count("Contact")
        .await
        .expect("re-authenticated after INVALID_SESSION_ID");
    let second = c.session().await.unwrap();
    assert_eq!(second.generation, first.generation + 1);
    assert!(sim.stats()["unauthorized"].as_u64().unwrap() >= 1);

    // A given token cannot be renewed: the 401 surfaces, retriable for a caller that can get a new one.
    let token = sim.issue_session();
    let mut cfg = ClientConfig::with_access_token(base(&sim), SecretString::from(token));
    cfg.ca_pem = Some(sim.ca_pem().into_bytes());
    let given = SalesforceClient::new(cfg).unwrap();
    given.count("Contact").await.unwrap();
    sim.set_faults(&FaultsPatch {
        expire_sessions: true,
        ..Default::default()
    });
    let e = given.count("Contact").await.unwrap_err();
    assert!(matches!(e, ClientError::Auth(_)), "{e:?}");
}

#[tokio::test]
async fn pages_with_batch_size_and_tie_paging() {
    let sim = start(SimConfig::for_tests()).await;
    let mut cfg = cc_config(&sim);
    cfg.query_batch_size = Some(200);
    let c = SalesforceClient::new(cfg).unwrap();
    let soql = "SELECT Id, SystemModstamp FROM Contact WHERE SystemModstamp >= 2000-01-01T00:00:00Z ORDER BY SystemModstamp, Id";
    let first = c.query(soql).await.unwrap();
    assert_eq!(first.records.len(), 200);
    assert!(
        !first.done
            && first
                .next_records_url
                .as_deref()
                .unwrap()
                .contains("/query/01g")
    );
    let all = c.query_collect(soql, false).await.unwrap();
    assert_eq!(all.len() as u64, first.total_size);
    // Ordered by (SystemModstamp, Id), no duplicates.
    let keys: Vec<(i64, String)> = all
        .iter()
        .map(|r| {
            (
                parse_datetime(r["SystemModstamp"].as_str().unwrap())
                    .unwrap()
                    .timestamp_millis(),
                r["Id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    assert!(all.iter().all(|r| ids::is_valid(r["Id"].as_str().unwrap())));
    // Tie paging resumes exactly after a key inside a run of equal timestamps.
    let tie = keys
        .windows(2)
        .position(|w| w[0].0 == w[1].0)
        .expect("generated data has bulk-load ties");
    let (t, id) = &keys[tie];
    let ts = chrono::DateTime::from_timestamp_millis(*t)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let rest = c
        .query_collect(
            &format!("SELECT Id FROM Contact WHERE (SystemModstamp > {ts}) OR (SystemModstamp = {ts} AND Id > '{id}') ORDER BY SystemModstamp, Id"),
            false,
        )
        .await
        .unwrap();
    assert_eq!(rest.len(), keys.len() - tie - 1);
    assert_eq!(rest[0]["Id"], json!(keys[tie + 1].1));
    // queryAll also returns the recycle bin.
    let with_deleted = c.query_collect(soql, true).await.unwrap();
    assert!(with_deleted.len() > all.len());
    let limited = c
        .query("SELECT Id FROM Contact ORDER BY Id LIMIT 7")
        .await
        .unwrap();
    assert_eq!((limited.records.len(), limited.done), (7, true));
}

#[tokio::test]
async fn raw_pages_are_the_records_as_salesforce_writes_them() {
    let sim = start(SimConfig::for_tests()).await;
    let mut cfg = cc_config(&sim);
    cfg.query_batch_size = Some(200);
    let c = SalesforceClient::new(cfg).unwrap();
    let soql = "SELECT SystemModstamp, Id, LastName, IsDeleted, id FROM Contact ORDER BY SystemModstamp, Id";
    let first = c.query_raw(soql, true).await.unwrap();
    assert_eq!(first.records.len(), 200);
    assert!(
        !first.done
            && first
                .next_records_url
                .as_deref()
                .unwrap()
                .contains("/queryAll/01g")
    );
    // `attributes` first, then the fields in the order selected, each once.
    let text = first.records[0].get();
    let at = |k: &str| {
        text.find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k} in {text}"))
    };
    assert!(text.starts_with("{\"attributes\":{\"type\":\"Contact\",\"url\":\"/services/data/v"));
    assert!(
        at("SystemModstamp") < at("Id")
            && at("Id") < at("LastName")
            && at("LastName") < at("IsDeleted")
    );
    assert_eq!(text.matches("\"Id\":").count(), 1, "{text}");
    // Every page, raw or parsed, is the same answer.
    let raw = c.query_collect_raw(soql, true).await.unwrap();
    let parsed = c.query_collect(soql, true).await.unwrap();
    assert_eq!(raw.len() as u64, first.total_size);
    assert_eq!(raw.len(), parsed.len());
    for (r, p) in raw.iter().zip(&parsed) {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(r.get()).unwrap();
        assert_eq!(&v, p);
    }
}

#[tokio::test]
async fn latency_is_the_whole_answer_time() {
    let mut cfg = SimConfig::for_tests();
    cfg.latency_ms = 250;
    let sim = start(cfg).await;
    let c = cc_client(&sim);
    c.count("Contact").await.unwrap();
    // A query over every contact: answered no sooner than the latency after it was sent, its
    // evaluation within that time (the simulator's compute for it is counted).
    let t = std::time::Instant::now();
    c.query_collect(
        "SELECT Id, Name, Email FROM Contact ORDER BY SystemModstamp, Id",
        true,
    )
    .await
    .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert!(sim.stats()["query_micros"].as_u64().unwrap() > 0);
    // A 503 is not faster.
    let mut cfg = cc_config(&sim);
    cfg.max_retries = 0;
    let c = SalesforceClient::new(cfg).unwrap();
    c.session().await.unwrap();
    sim.set_faults(&FaultsPatch {
        fail_next: Some(1),
        ..Default::default()
    });
    let t = std::time::Instant::now();
    let e = c.count("Contact").await.unwrap_err();
    assert!(matches!(e, ClientError::Server { status: 503, .. }), "{e}");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn malformed_and_invalid_queries() {
    let sim = start(SimConfig::for_tests()).await;
    let c = cc_client(&sim);
    for (soql, code) in [
        ("SELECT Id FROM Contact GROUP BY Id", "MALFORMED_QUERY"),
        ("DELETE FROM Contact", "MALFORMED_QUERY"),
        ("SELECT Nope__c FROM Contact", "INVALID_FIELD"),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp > '2024-01-01'",
            "INVALID_FIELD",
        ),
        ("SELECT Id FROM Account", "INVALID_TYPE"),
    ] {
        let e = c.query(soql).await.unwrap_err();
        assert_eq!(e.error_code(), Some(code), "{soql}: {e}");
        assert_eq!(e.status(), Some(400));
        assert!(!e.is_retriable());
    }
}

#[tokio::test]
async fn updated_and_deleted_windows() {
    let mut cfg = SimConfig::for_tests();
    // One-second windows instead of Salesforce's minutes, so the test need not wait a minute.
    cfg.window_resolution_secs = 1;
    let sim = start(cfg).await;
    let c = cc_client(&sim);
    let start = Utc::now() - TimeDelta::minutes(2);
    let id = sim
        .insert(
            "Contact",
            json!({"LastName": "Window", "Email": "w@example.com"}),
        )
        .unwrap();
    let victim = sim
        .insert("Contact", json!({"LastName": "Victim"}))
        .unwrap();
    sim.delete("Contact", &victim).unwrap();
    // Window resolution: writes of the current second (minute, in Salesforce) are not covered yet.
    let end = Utc::now() + TimeDelta::minutes(2);
    let early = c.updated("Contact", start, end).await.unwrap();
    assert!(
        !early.ids.contains(&id),
        "the current second is not covered yet"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let up = c.updated("Contact", start, end).await.unwrap();
    assert!(up.ids.contains(&id) && !up.ids.contains(&victim), "{up:?}");
    let covered = parse_datetime(&up.latest_date_covered).unwrap();
    assert!(covered <= Utc::now() && covered > start);
    let del = c.deleted("Contact", start, end).await.unwrap();
    assert_eq!(
        del.deleted_records
            .iter()
            .filter(|d| d.id == victim)
            .count(),
        1
    );
    assert!(parse_datetime(&del.earliest_date_available).unwrap() < start);
    // A start older than the delete log's retention: earliestDateAvailable is after it, so resync.
    let old = Utc::now() - TimeDelta::days(20);
    let del = c.deleted("Contact", old, end).await.unwrap();
    assert!(parse_datetime(&del.earliest_date_available).unwrap() > old);
    // Undelete removes it from the log and makes it live again.
    sim.undelete("Contact", &victim).unwrap();
    let del = c.deleted("Contact", start, end).await.unwrap();
    assert!(del.deleted_records.iter().all(|d| d.id != victim));
    // Beyond the 30-day reach of `updated`: an error, not a silent empty answer.
    let e = c
        .updated("Contact", Utc::now() - TimeDelta::days(31), end)
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), Some("INVALID_REPLICATION_DATE"));
}

#[tokio::test]
async fn composite_retrieve_describe_and_merge() {
    let sim = start(SimConfig::for_tests()).await;
    let c = cc_client(&sim);
    let mut wanted: Vec<String> = sim
        .records("Contact")
        .unwrap()
        .iter()
        .filter(|r| r["IsDeleted"] == json!(false))
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .take(300)
        .collect();
    wanted.push(ids::make("003", "5g", 999_999));
    let got = c
        .retrieve("Contact", &wanted, &["Id", "Email", "LastName"])
        .await
        .unwrap();
    assert_eq!(got.len(), wanted.len());
    assert!(got[..300].iter().all(|r| r.is_some()));
    assert!(got[300].is_none(), "unknown ids come back as null");
    assert_eq!(got[0].as_ref().unwrap()["Id"], json!(wanted[0]));
    let d = c.describe("Position__c").await.unwrap();
    assert_eq!(d.key_prefix, "a01");
    assert!(
        d.custom
            && d.fields
                .iter()
                .any(|f| f.name == "Skills__c" && f.field_type == "textarea")
    );
    let (w, l) = (&wanted[0], &wanted[1]);
    sim.merge("Contact", w, l).unwrap();
    let loser = sim.get("Contact", l).unwrap();
    assert_eq!(
        (loser["IsDeleted"].clone(), loser["MasterRecordId"].clone()),
        (json!(true), json!(w))
    );
    let e = c.get("Contact", l, None).await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert_eq!(
        c.get("Contact", &w[..15], Some(&["Id"])).await.unwrap()["Id"],
        json!(w)
    );
}

#[tokio::test]
async fn retries_503_and_hangs() {
    let sim = start(SimConfig::for_tests()).await;
    let mut cfg = cc_config(&sim);
    cfg.request_timeout = Duration::from_millis(700);
    let c = SalesforceClient::new(cfg).unwrap();
    c.count("Contact").await.unwrap();
    sim.set_faults(&FaultsPatch {
        fail_next: Some(2),
        hang_next: Some(1),
        hang_ms: Some(3_000),
        ..Default::default()
    });
    c.count("Contact")
        .await
        .expect("503s and a hang are retried");
    let st = sim.stats();
    assert_eq!(st["unavailable"], json!(2));
    assert_eq!(st["hangs"], json!(1));
    sim.set_faults(&FaultsPatch {
        fail_next: Some(100),
        ..Default::default()
    });
    let e = c.count("Contact").await.unwrap_err();
    assert!(
        matches!(e, ClientError::Server { status: 503, .. }) && e.is_retriable(),
        "{e}"
    );
}

#[tokio::test]
async fn api_budget_from_limit_header() {
    let mut cfg = SimConfig::for_tests();
    cfg.daily_api_limit = 1_000;
    let sim = start(cfg).await;
    let mut ccfg = cc_config(&sim);
    ccfg.budget_share = 0.5;
    ccfg.budget_recheck = Duration::from_millis(30);
    ccfg.budget_wait_max = Some(Duration::from_millis(200));
    let c = SalesforceClient::new(ccfg).unwrap();
    c.count("Contact").await.unwrap();
    let u = c.budget().usage.unwrap();
    assert_eq!((u.used, u.max), (1, 1_000));
    // Usage at the share: calls wait, then give up with a retriable BudgetExhausted.
    sim.set_faults(&FaultsPatch {
        api_usage: Some(500),
        ..Default::default()
    });
    c.count("Contact").await.unwrap();
    let before = sim.stats()["by_route"]["query"].as_u64().unwrap();
    let e = c.count("Contact").await.unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::BudgetExhausted {
                used: 501,
                max: 1000,
                ..
            }
        ) && e.is_retriable(),
        "{e}"
    );
    assert_eq!(
        sim.stats()["by_route"]["query"].as_u64().unwrap(),
        before,
        "no query sent over budget"
    );
    assert!(c.budget().waiting && c.budget().waits >= 1);
    // The org's usage drops (a new day): a waiting call proceeds by itself.
    let c2 = std::sync::Arc::new(c);
    let waiter = {
        let c = c2.clone();
        tokio::spawn(async move { c.count("Contact").await })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    sim.set_faults(&FaultsPatch {
        api_usage: Some(0),
        ..Default::default()
    });
    waiter
        .await
        .unwrap()
        .expect("proceeds once usage is under the share");
    assert!(!c2.budget().waiting);
}

#[tokio::test]
async fn request_limit_exceeded_waits_then_proceeds() {
    let sim = start(SimConfig::for_tests()).await;
    let mut cfg = cc_config(&sim);
    cfg.budget_recheck = Duration::from_millis(20);
    cfg.budget_wait_max = Some(Duration::from_secs(5));
    let c = SalesforceClient::new(cfg).unwrap();
    sim.set_faults(&FaultsPatch {
        limit_exceeded_next: Some(1),
        ..Default::default()
    });
    c.count("Contact")
        .await
        .expect("a 403 REQUEST_LIMIT_EXCEEDED waits for budget, then goes on");
    assert_eq!(sim.stats()["limit_exceeded"], json!(1));
    // With no patience, it is a typed, retriable error.
    let mut cfg = cc_config(&sim);
    cfg.budget_wait_max = Some(Duration::ZERO);
    let c = SalesforceClient::new(cfg).unwrap();
    sim.set_faults(&FaultsPatch {
        daily_api_limit: Some(1),
        api_usage: Some(1),
        ..Default::default()
    });
    let e = c.count("Contact").await.unwrap_err();
    assert!(e.is_retriable(), "{e}");
    assert!(matches!(e, ClientError::BudgetExhausted { .. }), "{e:?}");
}
