//! Fault injection, each observable at `/sim/stats`: 5xx, 429 (budget and concurrent sessions), dropped
//! connections, latency.

use std::time::{Duration, Instant};

use crate::common::{login, start};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

async fn stats(base: &str) -> Value {
    Client::new()
        .get(format!("{base}/sim/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json")
}

async fn set_faults(base: &str, body: Value) -> StatusCode {
    Client::new()
        .post(format!("{base}/sim/faults"))
        .json(&body)
        .send()
        .await
        .expect("faults")
        .status()
}

#[tokio::test]
async fn server_errors_and_rate_limits_show_in_stats() {
    let sim = start(|_| {}).await;
    let base = sim.base_url();
    let s = login(&sim).await;

    assert_eq!(
        set_faults(&base, json!({"fail_next": 2})).await,
        StatusCode::OK
    );
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(s.get("ping", &[]).await.0.as_u16());
    }
    assert!(
        statuses[..2].iter().all(|s| *s == 500 || *s == 503),
        "{statuses:?}"
    );
    assert_eq!(statuses[2], 200);

    assert_eq!(
        set_faults(
            &base,
            json!({"rate_limit_per_min": 2, "retry_after_secs": 1})
        )
        .await,
        StatusCode::OK
    );
    let http = Client::new();
    let mut last = None;
    for _ in 0..3 {
        last = Some(
            http.get(format!("{}ping", s.rest_url))
                .header("BhRestToken", &s.token)
                .send()
                .await
                .expect("ping"),
        );
    }
    let r = last.expect("response");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errorCode"], 429);

    let st = stats(&base).await;
    let ping = &st["requests"]["ping"];
    let n = |k: &str| ping[k].as_u64().unwrap_or(0);
    assert_eq!(n("500") + n("503"), 2, "{st}");
    assert_eq!(n("429"), 1, "{st}");
    assert_eq!(n("200"), 3, "{st}");
    assert_eq!(st["requests"]["oauth/token"]["200"], 1);

    // Invalid settings are refused.
    assert_eq!(
        set_faults(&base, json!({"error_rate": 2.0})).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        set_faults(&base, json!({"nonsense": 1})).await,
        StatusCode::BAD_REQUEST
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_connections_get_no_response() {
    let sim = start(|_| {}).await;
    let s = login(&sim).await;
    sim.drop_next(1);
    let http = Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let res = http
        .get(format!("{}ping", s.rest_url))
        .header("BhRestToken", &s.token)
        .send()
        .await;
    let failed = match res {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(
        failed,
        "a dropped connection must not deliver a complete response"
    );
    let ok = http
        .get(format!("{}ping", s.rest_url))
        .header("BhRestToken", &s.token)
        .send()
        .await
        .expect("ping");
    assert_eq!(ok.status(), StatusCode::OK);
    let st = sim.stats();
    assert_eq!(st.dropped_connections, 1);
    assert_eq!(st.requests["ping"]["dropped"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_and_concurrent_session_limit() {
    let sim = start(|c| c.max_concurrent_sessions = 1).await;
    let s = login(&sim).await;
    sim.set_latency_ms(150);
    let t = Instant::now();
    assert_eq!(s.get("ping", &[]).await.0, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(150));
    sim.set_latency_ms(0);

    // A second session is over the limit.
    let http = Client::new();
    let code = crate::common::auth_code(&sim, &http).await;
    let tok: crmflow_bullhorn::wire::TokenResponse = crate::common::exchange(&sim, &http, &code)
        .await
        .json()
        .await
        .expect("token");
    let r = crate::common::rest_login(&sim, &http, &tok.access_token).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(sim.stats().requests["login"]["429"], 1);
    sim.shutdown().await;
}
