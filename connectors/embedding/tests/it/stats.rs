//! `/sim/stats` counts exactly, and the control endpoints change the simulator's behaviour over HTTP.

use std::time::Duration;

use crmflow_embedding::sim::SimStats;
use crmflow_embedding::{EmbedError, EmbeddingClient, Protocol};
use serde_json::{json, Value};

use crate::{client, client_config, start_sim, texts};

#[tokio::test]
async fn stats_count_requests_inputs_and_statuses_exactly() {
    let sim = start_sim(|_| {}).await;
    let http = reqwest::Client::new();
    let base = sim.base_url();

    client(&sim, Protocol::Tei).embed(&texts(5)).await.unwrap();
    client(&sim, Protocol::OpenAi)
        .embed(&texts(3))
        .await
        .unwrap();
    let empty = http
        .post(base.join("/embed").unwrap())
        .json(&json!({"inputs": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 422);
    let body: Value = empty.json().await.unwrap();
    assert_eq!(body["error_type"], "Validation");

    let stats: SimStats = http
        .get(base.join("/sim/stats").unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, sim.stats(), "HTTP and handle views agree");
    assert_eq!(stats.requests_total, 3);
    assert_eq!(stats.requests_by_endpoint["/embed"], 2);
    assert_eq!(stats.requests_by_endpoint["/v1/embeddings"], 1);
    assert_eq!(stats.requests_with_status(200), 2);
    assert_eq!(stats.requests_with_status(422), 1);
    assert_eq!(stats.inputs_embedded, 8);
    assert_eq!(stats.inputs_received, 8);
    assert_eq!(stats.batches, 2);
    assert_eq!(stats.max_batch_seen, 5);

    // Re-sending the same texts counts again: the counter is what a skip-if-unchanged test reads.
    client(&sim, Protocol::Tei).embed(&texts(5)).await.unwrap();
    assert_eq!(sim.stats().inputs_embedded, 13);

    let reset = http
        .post(base.join("/sim/reset-stats").unwrap())
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success());
    assert_eq!(sim.stats(), SimStats::default());
}

#[tokio::test]
async fn faults_can_be_set_over_http() {
    let sim = start_sim(|_| {}).await;
    let http = reqwest::Client::new();
    let url = sim.base_url().join("/sim/faults").unwrap();

    let applied: Value = http
        .post(url.clone())
        .json(&json!({"fail_next": 1, "fail_status": 500, "retry_after_secs": 7}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(applied["fail_next"], 1);
    assert_eq!(applied["latency_ms"], 0, "fields not sent are kept");

    let mut config = client_config(&sim, Protocol::OpenAi);
    config.max_retries = 0;
    let error = EmbeddingClient::new(config)
        .unwrap()
        .embed(&texts(2))
        .await
        .unwrap_err();
    assert!(
        matches!(error, EmbedError::Server { status: 500, .. }),
        "{error}"
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));

    let now: Value = http
        .get(url.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["fail_next"], 0, "the planned failure was consumed");

    let bad = http
        .post(url)
        .json(&json!({"fail_status": 200}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn openai_errors_use_the_openai_shape() {
    let sim = start_sim(|args| args.max_batch = 2).await;
    let http = reqwest::Client::new();
    let response = http
        .post(sim.base_url().join("/v1/embeddings").unwrap())
        .json(&json!({"model": "m", "input": ["a", "b", "c"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum allowed batch size 2"));
}
