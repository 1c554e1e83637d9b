//! Transient failures (429, 5xx, hangs, refused connections) are retried as the same single batch.

use std::time::{Duration, Instant};

use crmflow_embedding::sim::vectors::embed_text;
use crmflow_embedding::{EmbedError, EmbeddingClient, Protocol};

use crate::{client, client_config, set_faults, start_sim, texts, PROTOCOLS};

#[tokio::test]
async fn rate_limit_waits_for_retry_after_and_resends_the_same_batch() {
    for protocol in PROTOCOLS {
        let sim = start_sim(|_| {}).await;
        set_faults(&sim, |f| {
            f.fail_next = 1;
            f.fail_status = 429;
            f.retry_after_secs = Some(1);
        });
        let inputs = texts(20);
        let started = Instant::now();
        let vectors = client(&sim, protocol).embed(&inputs).await.unwrap();
        let elapsed = started.elapsed();

        // The client's own backoff is 10-50 ms here, so only Retry-After explains a one-second wait.
        assert!(
            elapsed >= Duration::from_millis(950),
            "{protocol:?} waited only {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_secs(3),
            "{protocol:?} waited {elapsed:?}"
        );
        assert_eq!(vectors[19], embed_text(&inputs[19], 384));
        let stats = sim.stats();
        assert_eq!(stats.requests_total, 2, "one failed attempt plus one retry");
        assert_eq!(stats.requests_with_status(429), 1);
        assert_eq!(stats.requests_with_status(200), 1);
        // The retry carried the whole batch again, in one request.
        assert_eq!(stats.inputs_received, 40);
        assert_eq!(stats.max_batch_seen, 20);
        assert_eq!((stats.batches, stats.inputs_embedded), (1, 20));
    }
}

#[tokio::test]
async fn server_error_burst_is_retried_until_success() {
    let sim = start_sim(|_| {}).await;
    set_faults(&sim, |f| {
        f.fail_next = 3;
        f.fail_status = 503;
    });
    let vectors = client(&sim, Protocol::Tei).embed(&texts(5)).await.unwrap();
    assert_eq!(vectors.len(), 5);
    let stats = sim.stats();
    assert_eq!(stats.requests_with_status(503), 3);
    assert_eq!(stats.requests_with_status(200), 1);
    assert_eq!(stats.requests_total, 4);
    assert_eq!(stats.inputs_embedded, 5);
}

#[tokio::test]
async fn exhausted_retries_return_the_last_transient_error() {
    let sim = start_sim(|_| {}).await;
    set_faults(&sim, |f| {
        f.fail_next = 10;
        f.fail_status = 500;
    });
    let mut config = client_config(&sim, Protocol::OpenAi);
    config.max_retries = 2;
    let error = EmbeddingClient::new(config)
        .unwrap()
        .embed(&texts(4))
        .await
        .unwrap_err();
    assert!(
        matches!(error, EmbedError::Server { status: 500, .. }),
        "{error}"
    );
    // Still retriable: the caller must keep the batch, not dead-letter it.
    assert!(error.is_retriable());
    assert_eq!(sim.stats().requests_total, 3, "first attempt + 2 retries");
    assert_eq!(sim.stats().inputs_embedded, 0);
}

#[tokio::test]
async fn hung_request_times_out_and_is_retried() {
    let sim = start_sim(|_| {}).await;
    set_faults(&sim, |f| f.hang_next = 1);
    let mut config = client_config(&sim, Protocol::Tei);
    config.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let vectors = EmbeddingClient::new(config)
        .unwrap()
        .embed(&texts(3))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(vectors.len(), 3);
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let stats = sim.stats();
    assert_eq!(
        (stats.hangs, stats.requests_total, stats.batches),
        (1, 2, 1)
    );
    // Shutdown must not wait out the 300 s hang still parked in the server.
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown())
        .await
        .expect("shutdown is prompt")
        .unwrap();
}

#[tokio::test]
async fn timeout_error_is_typed_and_retriable() {
    let sim = start_sim(|_| {}).await;
    set_faults(&sim, |f| f.hang_next = 5);
    let mut config = client_config(&sim, Protocol::Tei);
    config.timeout = Duration::from_millis(100);
    config.max_retries = 1;
    let error = EmbeddingClient::new(config)
        .unwrap()
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert!(matches!(error, EmbedError::Timeout { .. }), "{error}");
    assert!(error.is_retriable());
}

#[tokio::test]
async fn refused_connection_is_a_retriable_transport_error() {
    let sim = start_sim(|_| {}).await;
    let mut config = client_config(&sim, Protocol::Tei);
    sim.shutdown().await.unwrap();
    config.max_retries = 1;
    let error = EmbeddingClient::new(config)
        .unwrap()
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert!(matches!(error, EmbedError::Transport { .. }), "{error}");
    assert!(error.is_retriable());
}

#[tokio::test]
async fn rate_limit_per_second_is_enforced_and_survived() {
    let sim = start_sim(|args| args.rate_limit_per_sec = 2).await;
    let client = client(&sim, Protocol::Tei);
    let batches: Vec<Vec<String>> = (0..4).map(|i| vec![format!("batch {i}")]).collect();
    let results = futures::future::join_all(batches.iter().map(|b| client.embed(b))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let stats = sim.stats();
    assert!(stats.requests_with_status(429) >= 2, "{stats:?}");
    assert_eq!(stats.batches, 4);
}

#[tokio::test]
async fn random_errors_are_absorbed_by_retries() {
    let sim = start_sim(|args| {
        args.error_rate = 0.5;
        args.fail_status = 502;
    })
    .await;
    let mut config = client_config(&sim, Protocol::OpenAi);
    config.max_retries = 30;
    config.backoff_max = std::time::Duration::from_millis(10);
    let client = EmbeddingClient::new(config).unwrap();
    for i in 0..20 {
        client.embed(&texts(i % 4 + 1)).await.unwrap();
    }
    let stats = sim.stats();
    // P(no 502 in >= 20 draws at rate 0.5) = 2^-20.
    assert!(stats.requests_with_status(502) > 0, "{stats:?}");
    assert_eq!(stats.batches, 20);
}
