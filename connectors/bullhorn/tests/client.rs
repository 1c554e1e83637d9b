//! The client against the in-process simulator: discovery through a wrong data center, login and re-login,
//! 429/5xx/dropped-connection handling, retry exhaustion, reads and the event-subscription API.
#![cfg(feature = "sim")]

use std::time::{Duration, Instant};

use crmflow_bullhorn::client::{
    AuthError, BullhornClient, ClientConfig, ClientError, Credentials, RetryPolicy,
};
use crmflow_bullhorn::sim::{FaultsPatch, SimConfig, SimHandle, Simulator};
use serde_json::{json, Value};

async fn sim() -> SimHandle {
    Simulator::start(SimConfig::for_tests())
        .await
        .expect("simulator")
}

fn config(sim: &SimHandle, rest_url: String) -> ClientConfig {
    let c = sim.credentials();
    let mut cfg = ClientConfig::new(
        rest_url,
        Credentials {
            client_id: c.client_id,
            client_secret: c.client_secret.into(),
            username: c.username,
            password: c.password.into(),
        },
    );
    cfg.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        rate_limit_wait: Duration::from_millis(20),
        max_rate_limited: 1_000,
    };
    cfg.requests_per_minute = 100_000;
    cfg.burst = 1_000;
    cfg
}

fn count(sim: &SimHandle, endpoint: &str, status: &str) -> u64 {
    sim.stats()
        .requests
        .get(endpoint)
        .and_then(|m| m.get(status))
        .copied()
        .unwrap_or(0)
}

const FIELDS: &str = "id,firstName,dateLastModified,isDeleted";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_follows_the_data_center_redirect_and_searches() {
    let sim = sim().await;
    let client = BullhornClient::connect(config(&sim, sim.wrong_dc_rest_services_url()))
        .await
        .expect("login");
    let page = client
        .search::<Value>(
            "Candidate",
            "isDeleted:0",
            FIELDS,
            Some("dateLastModified,id"),
            0,
            50,
        )
        .await
        .expect("search");
    assert_eq!(page.data.len(), 50);
    assert!(page.total.expect("total") >= 50);
    assert_eq!(count(&sim, "wrong_dc", "307"), 1, "{:?}", sim.stats());
    assert_eq!(count(&sim, "oauth/authorize", "302"), 1);
    let debug = format!("{:?}", config(&sim, sim.rest_services_url()));
    assert!(!debug.contains(&sim.credentials().password), "{debug}");
    assert!(!debug.contains(&sim.credentials().client_secret), "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_password_is_a_typed_error_without_the_password() {
    let sim = sim().await;
    let mut cfg = config(&sim, sim.rest_services_url());
    cfg.credentials.password = "wrong-hunter2".to_string().into();
    let err = BullhornClient::connect(cfg).await.expect_err("must fail");
    assert!(
        matches!(err, ClientError::Auth(AuthError::InvalidCredentials)),
        "{err:?}"
    );
    assert!(!err.is_retriable());
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_are_renewed_once_with_the_refresh_token() {
    let sim = sim().await;
    let client = BullhornClient::connect(config(&sim, sim.rest_services_url()))
        .await
        .expect("login");
    assert_eq!(sim.expire_all_sessions(), 1);
    // Many callers hit the 401 together; one renewal serves them all.
    let calls = (0..8).map(|i| {
        let c = client.clone();
        async move {
            c.search::<Value>("Candidate", "isDeleted:0", FIELDS, None, i * 10, 10)
                .await
        }
    });
    for r in futures::future::join_all(calls).await {
        r.expect("search after expiry");
    }
    assert_eq!(
        count(&sim, "oauth/authorize", "302"),
        1,
        "refresh, not a new authorization"
    );
    assert_eq!(count(&sim, "oauth/token", "200"), 2, "{:?}", sim.stats());
    assert_eq!(count(&sim, "login", "200"), 2);
    // The refresh token was replaced: a second expiry refreshes again with the new one.
    sim.expire_all_sessions();
    client.ping().await.expect("ping");
    assert_eq!(count(&sim, "oauth/token", "200"), 3);
    assert_eq!(
        count(&sim, "oauth/token", "400"),
        0,
        "no refresh token reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_server_errors_and_dropped_connections_are_retried() {
    let sim = sim().await;
    let client = BullhornClient::connect(config(&sim, sim.rest_services_url()))
        .await
        .expect("login");
    sim.set_faults(FaultsPatch {
        rate_limit_next: Some(20),
        ..Default::default()
    })
    .expect("faults");
    client
        .search::<Value>("Candidate", "isDeleted:0", FIELDS, None, 0, 5)
        .await
        .expect("after 429s");
    assert_eq!(count(&sim, "search/Candidate", "429"), 20);
    sim.fail_next(3);
    client
        .search::<Value>("Candidate", "isDeleted:0", FIELDS, None, 0, 5)
        .await
        .expect("after 5xx");
    sim.drop_next(2);
    client
        .get_entities::<Value>("Candidate", &[1, 2], FIELDS)
        .await
        .expect("after drops");
    assert_eq!(sim.stats().dropped_connections, 2);
    // Retry-After is honoured.
    sim.set_faults(FaultsPatch {
        rate_limit_next: Some(1),
        retry_after_secs: Some(1),
        ..Default::default()
    })
    .expect("faults");
    let t = Instant::now();
    client.ping().await.expect("ping");
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_server_errors_give_up_with_a_typed_error() {
    let sim = sim().await;
    let client = BullhornClient::connect(config(&sim, sim.rest_services_url()))
        .await
        .expect("login");
    sim.fail_next(100);
    let err = client
        .search::<Value>("Candidate", "isDeleted:0", FIELDS, None, 0, 5)
        .await
        .expect_err("gives up");
    assert!(
        matches!(err, ClientError::RetriesExhausted { attempts: 4, .. }),
        "{err}"
    );
    assert!(err.is_retriable(), "a later poll may succeed");
    sim.fail_next(0);
    // A client-side 4xx is not retried.
    let err = client
        .search::<Value>("Candidate", "noSuchField:1", FIELDS, None, 0, 5)
        .await
        .expect_err("400");
    assert_eq!(err.status(), Some(400), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_reads_by_id() {
    let sim = sim().await;
    let client = BullhornClient::connect(config(&sim, sim.rest_services_url()))
        .await
        .expect("login");
    let one: Vec<Value> = client
        .get_entities("Candidate", &[3], FIELDS)
        .await
        .expect("one");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["id"], 3);
    let some: Vec<Value> = client
        .get_entities("Candidate", &[1, 2, 99_999_999], FIELDS)
        .await
        .expect("some");
    assert_eq!(some.len(), 2);
    let none: Vec<Value> = client
        .get_entities("Candidate", &[99_999_999], FIELDS)
        .await
        .expect("none");
    assert!(none.is_empty());
    let jobs = client
        .query::<Value>("JobOrder", "id > 0", "id,title", Some("id"), 0, 10)
        .await
        .expect("query");
    assert_eq!(jobs.data.len(), 10);
    assert!(jobs.total.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_subscription_round_trip() {
    let sim = sim().await;
    let client = BullhornClient::connect(config(&sim, sim.rest_services_url()))
        .await
        .expect("login");
    let names = vec!["Candidate".to_string()];
    client
        .subscribe("it", &names, &["INSERTED", "UPDATED", "DELETED"])
        .await
        .expect("subscribe");
    client
        .subscribe("it", &names, &["INSERTED", "UPDATED", "DELETED"])
        .await
        .expect("idempotent");
    assert!(client
        .poll_events("it", 100)
        .await
        .expect("empty")
        .is_none());
    sim.update("Candidate", 5, json!({"email": "x@example.com"}))
        .expect("update");
    sim.soft_delete("Candidate", 6).expect("delete");
    let batch = client
        .poll_events("it", 100)
        .await
        .expect("poll")
        .expect("batch");
    assert_eq!(batch.events.len(), 2);
    assert_eq!(
        client.last_request_id("it").await.expect("last"),
        batch.request_id
    );
    let again = client
        .reget_events("it", batch.request_id)
        .await
        .expect("reget")
        .expect("batch");
    assert_eq!(again, batch);
    assert!(client.unsubscribe("it").await.expect("unsubscribe"));
}
