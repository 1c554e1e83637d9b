//! The API over HTTP: HubSpot's JSON shapes and error bodies, the OAuth token endpoint and token expiry,
//! rate-limit headers and 429 bodies, index lag, writes, and the control endpoints.

use std::time::Duration;

use crmflow_hubspot::sim::{FaultsPatch, DEFAULT_PRIVATE_APP_TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{http, start};

async fn get(base: &str, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = http()
        .get(format!("{base}{path}"))
        .bearer_auth(DEFAULT_PRIVATE_APP_TOKEN)
        .send()
        .await
        .expect("send");
    let (s, h) = (r.status(), r.headers().clone());
    (s, h, r.json().await.unwrap_or(Value::Null))
}

async fn post(
    base: &str,
    path: &str,
    body: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = http()
        .post(format!("{base}{path}"))
        .bearer_auth(DEFAULT_PRIVATE_APP_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("send");
    let (s, h) = (r.status(), r.headers().clone());
    (s, h, r.json().await.unwrap_or(Value::Null))
}

fn assert_error(body: &Value, category: &str) {
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["category"], category, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["correlationId"]
            .as_str()
            .is_some_and(|c| c.len() >= 32),
        "{body}"
    );
}

#[tokio::test]
async fn objects_have_hubspot_shapes_and_errors_hubspot_bodies() {
    let sim = start(|_| {}).await;
    let base = sim.base_url();
    let (s, _, page) = get(
        &base,
        "/crm/v3/objects/contacts?limit=3&properties=email,phone",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let o = &page["results"][0];
    assert!(o["id"].is_string());
    assert!(
        o["createdAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
        "{o}"
    );
    assert_eq!(o["archived"], false);
    for (k, v) in o["properties"].as_object().expect("properties") {
        assert!(v.is_string() || v.is_null(), "{k}: {v}");
    }
    for k in [
        "email",
        "phone",
        "hs_object_id",
        "createdate",
        "lastmodifieddate",
    ] {
        assert!(o["properties"].get(k).is_some(), "{k} in {o}");
    }
    assert_eq!(o["properties"]["hs_object_id"], o["id"]);
    let after = page["paging"]["next"]["after"].as_str().expect("after");
    assert!(page["paging"]["next"]["link"]
        .as_str()
        .is_some_and(|l| l.contains(after)));
    // Defaults when no properties are asked for; the custom object by its id and by its name.
    let (_, _, jobs) = get(&base, "/crm/v3/objects/2-12345678?limit=2").await;
    let (_, _, jobs2) = get(&base, "/crm/v3/objects/jobs?limit=2").await;
    assert_eq!(jobs["results"], jobs2["results"]);
    assert!(jobs["results"][0]["properties"]
        .get("hs_lastmodifieddate")
        .is_some());
    // Errors.
    let r = http()
        .get(format!("{base}/crm/v3/objects/contacts"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_error(&r.json().await.expect("json"), "INVALID_AUTHENTICATION");
    let (s, _, b) = post(
        &base,
        "/crm/v3/objects/contacts/search",
        json!({"limit": 101}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&b, "VALIDATION_ERROR");
    let (s, _, b) = get(&base, "/crm/v3/objects/widgets").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&b, "VALIDATION_ERROR");
    let (s, _, b) = get(&base, "/crm/v3/objects/contacts/1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&b, "OBJECT_NOT_FOUND");
    let (s, _, props) = get(&base, "/crm/v3/properties/contacts").await;
    assert_eq!(s, StatusCode::OK);
    let lm = props["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|p| p["name"] == "lastmodifieddate")
        .expect("lastmodifieddate defined");
    assert_eq!(lm["type"], "datetime");
    sim.shutdown().await;
}

#[tokio::test]
async fn oauth_tokens_are_issued_and_expire() {
    let sim = start(|c| c.access_token_ttl_secs = 1).await;
    let base = sim.base_url();
    let c = sim.config().clone();
    let form = |rt: &str| {
        vec![
            ("grant_type", "refresh_token".to_string()),
            ("client_id", c.client_id.clone()),
            ("client_secret", c.client_secret.clone()),
            ("refresh_token", rt.to_string()),
        ]
    };
    let r = http()
        .post(format!("{base}/oauth/v1/token"))
        .form(&form(&c.refresh_token))
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.expect("json");
    assert_eq!(t["token_type"], "bearer");
    assert_eq!(t["expires_in"], 1);
    let access = t["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let call = |tok: String| {
        let base = base.clone();
        async move {
            http()
                .get(format!("{base}/crm/v3/objects/contacts?limit=1"))
                .bearer_auth(tok)
                .send()
                .await
                .expect("send")
        }
    };
    assert_eq!(call(access.clone()).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = call(access).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_error(&r.json().await.expect("json"), "EXPIRED_AUTHENTICATION");
    let r = http()
        .post(format!("{base}/oauth/v1/token"))
        .form(&form("stolen"))
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: Value = r.json().await.expect("json");
    assert_eq!(b["status"], "BAD_REFRESH_TOKEN");
    assert_eq!(sim.stats().tokens_issued, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limits_send_hubspot_headers_and_429_bodies() {
    let sim = start(|c| {
        c.ten_secondly_limit = 5;
        c.search_per_sec = 2;
        c.daily_limit = 1_000;
    })
    .await;
    let base = sim.base_url();
    for i in 0..5u64 {
        let (s, h, _) = get(&base, "/crm/v3/objects/contacts?limit=1").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["x-hubspot-ratelimit-max"], "5");
        assert_eq!(h["x-hubspot-ratelimit-interval-milliseconds"], "10000");
        assert_eq!(
            h["x-hubspot-ratelimit-remaining"],
            (4 - i).to_string().as_str()
        );
        assert_eq!(h["x-hubspot-ratelimit-daily"], "1000");
    }
    let (s, h, b) = get(&base, "/crm/v3/objects/contacts?limit=1").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(b["errorType"], "RATE_LIMIT");
    assert_eq!(b["status"], "error");
    assert!(b["message"]
        .as_str()
        .is_some_and(|m| m.contains("ten_secondly_rolling")));
    assert!(
        h.get("retry-after").is_none(),
        "no Retry-After unless configured"
    );
    // Search has its own per-second limit and answers without rate-limit headers.
    let body = json!({"limit": 1});
    let (s, h, _) = post(&base, "/crm/v3/objects/contacts/search", body.clone()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h.get("x-hubspot-ratelimit-remaining").is_none());
    post(&base, "/crm/v3/objects/contacts/search", body.clone()).await;
    let (s, _, b) = post(&base, "/crm/v3/objects/contacts/search", body.clone()).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b["policyName"], "SECONDLY");
    // The daily limit, and Retry-After when configured.
    sim.set_faults(FaultsPatch {
        daily_limit: Some(1),
        retry_after_secs: Some(7),
        ..Default::default()
    })
    .expect("faults");
    let (s, h, b) = post(&base, "/crm/v3/objects/contacts/search", body).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b["policyName"], "DAILY");
    assert_eq!(h["retry-after"], "7");
    let st = sim.stats();
    assert_eq!(st.rate_limited.get("TEN_SECONDLY_ROLLING"), Some(&1));
    assert_eq!(st.rate_limited.get("SECONDLY"), Some(&1));
    assert_eq!(st.rate_limited.get("DAILY"), Some(&1));
    assert_eq!(st.count("objects/contacts", "429"), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn writes_reach_search_only_after_the_index_lag_and_archived_objects_never() {
    let sim = start(|c| c.index_lag_ms = 1_500).await;
    let base = sim.base_url();
    let (s, _, created) = post(
        &base,
        "/crm/v3/objects/contacts",
        json!({"properties": {"email": "lag@example.com", "firstname": "Lag"}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = created["id"].as_str().expect("id").to_string();
    let (s, _, _) = get(&base, &format!("/crm/v3/objects/contacts/{id}")).await;
    assert_eq!(s, StatusCode::OK, "reads see the write at once");
    let by_email = json!({"filterGroups": [{"filters": [
        {"propertyName": "email", "operator": "EQ", "value": "lag@example.com"}]}]});
    let search = || post(&base, "/crm/v3/objects/contacts/search", by_email.clone());
    assert_eq!(search().await.2["total"], 0, "search does not yet");
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(search().await.2["total"], 1);
    let r = http()
        .delete(format!("{base}/crm/v3/objects/contacts/{id}"))
        .bearer_auth(DEFAULT_PRIVATE_APP_TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        search().await.2["total"],
        1,
        "the archive reaches search late too"
    );
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(search().await.2["total"], 0);
    let (_, _, archived) = get(
        &base,
        &format!("/crm/v3/objects/contacts/{id}?archived=true"),
    )
    .await;
    assert_eq!(archived["archived"], true);
    assert!(archived["archivedAt"].is_string());
    sim.shutdown().await;
}

#[tokio::test]
async fn control_endpoints_show_ground_truth_and_the_same_seed_gives_the_same_account() {
    let a = start(|_| {}).await;
    let b = start(|_| {}).await;
    let state = |base: String, object: &'static str| async move {
        http()
            .get(format!("{base}/sim/state/{object}"))
            .send()
            .await
            .expect("state")
            .text()
            .await
            .expect("text")
    };
    assert_eq!(
        state(a.base_url(), "contacts").await,
        state(b.base_url(), "contacts").await,
        "seeded"
    );
    let r: Value = http()
        .post(format!("{}/sim/changes?count=300", a.base_url()))
        .send()
        .await
        .expect("changes")
        .json()
        .await
        .expect("json");
    assert!(r["applied"].as_u64().is_some_and(|n| n > 200), "{r}");
    let text = state(a.base_url(), "contacts").await;
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let (live, archived) = a.count("contacts").expect("count");
    assert_eq!(lines.len(), live + archived);
    assert!(lines
        .iter()
        .any(|l| l["archived"] == true && l["archivedAt"].is_string()));
    assert!(lines.iter().all(|l| l["objectTypeId"] == "0-1"));
    let merged: Value = http()
        .get(format!("{}/sim/merged/contacts", a.base_url()))
        .send()
        .await
        .expect("merged")
        .json()
        .await
        .expect("json");
    let merged = merged.as_object().expect("map");
    assert!(!merged.is_empty(), "the change generator merges");
    for (from, to) in merged {
        assert!(
            !lines.iter().any(|l| l["id"] == from.as_str()),
            "{from} vanished"
        );
        assert!(lines.iter().any(|l| &l["id"] == to), "{to} holds it");
    }
    let stats: Value = http()
        .get(format!("{}/sim/stats", a.base_url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert!(stats["requests"]["sim/state"]["200"]
        .as_u64()
        .is_some_and(|n| n >= 2));
    assert_eq!(stats["records"]["contacts"]["live"], live);
    let f: Value = http()
        .post(format!("{}/sim/faults", a.base_url()))
        .json(&json!({"fail_next": 1}))
        .send()
        .await
        .expect("faults")
        .json()
        .await
        .expect("json");
    assert_eq!(f["fail_next"], 1);
    let (s, _, body) = get(&a.base_url(), "/crm/v3/objects/contacts").await;
    assert!(s.is_server_error());
    assert_eq!(body["status"], "error");
    a.shutdown().await;
    b.shutdown().await;
}
