//! Both protocols return the simulator's vectors, in order, with the promised similarity structure.

use crmflow_embedding::sim::vectors::{cosine, embed_text};
use crmflow_embedding::{EmbedError, EmbeddingClient, Protocol};
use serde_json::{json, Value};

use crate::{client, client_config, start_sim, texts, PROTOCOLS};

#[tokio::test]
async fn both_protocols_round_trip_in_order() {
    let sim = start_sim(|_| {}).await;
    let inputs = texts(7);
    let tei = client(&sim, Protocol::Tei).embed(&inputs).await.unwrap();
    let openai = client(&sim, Protocol::OpenAi).embed(&inputs).await.unwrap();
    assert_eq!(tei.len(), 7);
    for (i, text) in inputs.iter().enumerate() {
        // Exact equality: JSON carries f32 losslessly, and order must follow the inputs.
        assert_eq!(tei[i], embed_text(text, 384), "TEI vector {i}");
        assert_eq!(openai[i], tei[i], "OpenAI vector {i}");
    }
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn vectors_are_deterministic_across_servers() {
    let first = start_sim(|_| {}).await;
    let second = start_sim(|_| {}).await;
    let inputs = texts(3);
    let a = client(&first, Protocol::Tei).embed(&inputs).await.unwrap();
    let again = client(&first, Protocol::Tei).embed(&inputs).await.unwrap();
    let b = client(&second, Protocol::OpenAi)
        .embed(&inputs)
        .await
        .unwrap();
    assert_eq!(a, again);
    assert_eq!(a, b);
    assert_ne!(a[0], a[1], "different texts must not share a vector");
}

#[tokio::test]
async fn similar_texts_get_similar_vectors() {
    let sim = start_sim(|_| {}).await;
    let candidate =
        "Java developer with Spring Boot, microservices and AWS experience, based in Manchester, \
                     eight years building payment platforms for banks.";
    let inputs = vec![
        candidate.to_owned(),
        candidate.replace("eight", "nine"),
        "Experienced pastry chef creating wedding cakes, croissants and sourdough in a French bakery.".to_owned(),
    ];
    for protocol in PROTOCOLS {
        let v = client(&sim, protocol).embed(&inputs).await.unwrap();
        let near = cosine(&v[0], &v[1]);
        let far = cosine(&v[0], &v[2]);
        assert!(near > 0.9, "{protocol:?} near-identical cosine {near}");
        assert!(far.abs() < 0.3, "{protocol:?} unrelated cosine {far}");
    }
}

#[tokio::test]
async fn dimension_follows_the_simulator_and_is_checked() {
    let sim = start_sim(|args| args.dim = 16).await;
    let vectors = client(&sim, Protocol::Tei).embed(&texts(2)).await.unwrap();
    assert!(vectors.iter().all(|v| v.len() == 16));

    let mut config = client_config(&sim, Protocol::OpenAi);
    config.expected_dim = Some(384);
    let error = EmbeddingClient::new(config)
        .unwrap()
        .embed(&texts(2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            EmbedError::DimensionMismatch {
                expected: 384,
                got: 16,
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.is_retriable());
}

#[tokio::test]
async fn empty_batch_sends_nothing() {
    let sim = start_sim(|_| {}).await;
    assert!(client(&sim, Protocol::Tei)
        .embed(&[])
        .await
        .unwrap()
        .is_empty());
    assert!(client(&sim, Protocol::Tei)
        .embed_isolating(&[])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(sim.stats().requests_total, 0);
}

#[tokio::test]
async fn service_endpoints_look_like_tei_and_openai() {
    let sim = start_sim(|args| {
        args.max_batch = 64;
        args.model = "sim-model".into();
    })
    .await;
    let http = reqwest::Client::new();
    let base = sim.base_url();

    let health = http
        .get(base.join("/health").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let info: Value = http
        .get(base.join("/info").unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["model_id"], "sim-model");
    assert_eq!(info["max_client_batch_size"], 64);

    // TEI accepts one string as well as a list.
    let one: Vec<Vec<f32>> = http
        .post(base.join("/embed").unwrap())
        .json(&json!({"inputs": "hello world"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one, vec![embed_text("hello world", 384)]);

    let openai: Value = http
        .post(base.join("/v1/embeddings").unwrap())
        .json(&json!({"model": "x", "input": ["a b", "c d"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openai["model"], "sim-model");
    assert_eq!(openai["data"][1]["index"], 1);
    assert_eq!(openai["data"].as_array().unwrap().len(), 2);
    assert!(openai["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn latency_is_added_per_request() {
    let sim = start_sim(|args| args.latency_ms = 150).await;
    let started = std::time::Instant::now();
    client(&sim, Protocol::Tei).embed(&texts(3)).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(150),
        "{elapsed:?}"
    );
}
