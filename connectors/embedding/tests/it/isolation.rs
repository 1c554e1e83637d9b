//! Inputs the service rejects are isolated by bisecting; their batch-mates are embedded.

use crmflow_embedding::sim::vectors::embed_text;
use crmflow_embedding::{EmbedError, EmbeddingClient, Protocol};

use crate::{client, client_config, set_faults, start_sim, texts};

#[tokio::test]
async fn one_poison_input_fails_alone_and_nine_are_embedded() {
    for (protocol, status) in [(Protocol::Tei, 422), (Protocol::OpenAi, 400)] {
        let sim = start_sim(|_| {}).await;
        let mut inputs = texts(10);
        inputs[6] = "looks fine but carries __POISON__ inside".into();
        let client = client(&sim, protocol);

        // Without isolation the whole batch is refused, and not retried.
        let error = client.embed(&inputs).await.unwrap_err();
        assert_eq!(error.status(), Some(status), "{error}");
        assert!(error.is_input_rejection() && !error.is_retriable());
        assert_eq!(sim.stats().requests_total, 1);
        sim.reset_stats();

        let results = client.embed_isolating(&inputs).await.unwrap();
        assert_eq!(results.len(), 10);
        for (i, result) in results.iter().enumerate() {
            if i == 6 {
                let error = result.as_ref().unwrap_err();
                assert_eq!(error.status(), Some(status), "{protocol:?}: {error}");
            } else {
                assert_eq!(
                    result.as_ref().unwrap(),
                    &embed_text(&inputs[i], 384),
                    "{protocol:?} input {i}"
                );
            }
        }
        let stats = sim.stats();
        assert_eq!(
            stats.inputs_embedded, 9,
            "{protocol:?}: each good input embedded exactly once"
        );
        // 10 -> 5+5 -> (5 ok) 2+3 -> (2 ok) 1+2 -> (1 = poison) ... a handful of requests, not ten.
        assert!(stats.requests_total <= 8, "{protocol:?}: {stats:?}");
    }
}

#[tokio::test]
async fn several_poison_inputs_at_the_edges_are_all_isolated() {
    let sim = start_sim(|args| args.max_input_chars = 100).await;
    let mut inputs = texts(9);
    inputs[0] = "__POISON__".into();
    inputs[4] = "x".repeat(101); // too long
    inputs[8] = "tail __POISON__".into();
    let results = client(&sim, Protocol::Tei)
        .embed_isolating(&inputs)
        .await
        .unwrap();
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, vec![0, 4, 8]);
    assert_eq!(sim.stats().inputs_embedded, 6);
}

#[tokio::test]
async fn batch_over_the_service_limit_is_split() {
    let sim = start_sim(|args| args.max_batch = 4).await;
    let inputs = texts(10);
    let client = client(&sim, Protocol::OpenAi);

    let error = client.embed(&inputs).await.unwrap_err();
    assert_eq!(error.status(), Some(413), "{error}");
    assert!(error.is_input_rejection());

    let results = client.embed_isolating(&inputs).await.unwrap();
    for (i, result) in results.iter().enumerate() {
        assert_eq!(
            result.as_ref().unwrap(),
            &embed_text(&inputs[i], 384),
            "input {i}"
        );
    }
    let stats = sim.stats();
    assert_eq!(stats.inputs_embedded, 10);
    assert_eq!(stats.max_batch_seen, 10);
    // Plain embed: 10 refused. Isolating: 10 refused, then each 5 refused and served as 2 + 3.
    assert_eq!(stats.requests_with_status(413), 4, "{stats:?}");
    assert_eq!(stats.batches, 4, "{stats:?}");
}

#[tokio::test]
async fn payload_too_large_for_one_huge_input_isolates_it() {
    // A body limit below one input's size: the 413 comes from the HTTP layer, as with TEI's payload limit.
    let sim = start_sim(|args| {
        args.max_payload_bytes = 4096;
        args.max_input_chars = 1_000_000;
    })
    .await;
    let mut inputs = texts(6);
    inputs[3] = "word ".repeat(2000);
    let results = client(&sim, Protocol::Tei)
        .embed_isolating(&inputs)
        .await
        .unwrap();
    assert_eq!(results[3].as_ref().unwrap_err().status(), Some(413));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    assert_eq!(sim.stats().inputs_embedded, 5);
}

#[tokio::test]
async fn batch_level_failures_are_not_bisected() {
    let sim = start_sim(|_| {}).await;
    // 401 cannot be fixed by splitting: one request, and the whole batch fails.
    set_faults(&sim, |f| {
        f.fail_next = 1;
        f.fail_status = 401;
    });
    let client = client(&sim, Protocol::Tei);
    let error = client.embed_isolating(&texts(8)).await.unwrap_err();
    assert_eq!(error.status(), Some(401));
    assert!(!error.is_input_rejection() && !error.is_retriable());
    assert_eq!(sim.stats().requests_total, 1);

    // A service that stays down surfaces as a retriable batch error, so the caller keeps the batch.
    set_faults(&sim, |f| {
        f.fail_next = 100;
        f.fail_status = 503;
    });
    let mut config = client_config(&sim, Protocol::Tei);
    config.max_retries = 1;
    let error = EmbeddingClient::new(config)
        .unwrap()
        .embed_isolating(&texts(8))
        .await
        .unwrap_err();
    assert!(
        matches!(error, EmbedError::Server { status: 503, .. }),
        "{error}"
    );
    assert!(error.is_retriable());
}
