//! Webhook delivery: signatures, batching, every event kind, shuffling, duplicates, retries and giving up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crmflow_hubspot::signature::{verify_v3, MAX_TIMESTAMP_AGE};
use crmflow_hubspot::sim::DEFAULT_CLIENT_SECRET;

use crate::common::{event_count, start, Answer, Receiver};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_batched_and_cover_every_kind() {
    let rx = Receiver::start().await;
    let sim = start(|c| {
        c.webhook_duplicate_rate = 0.0;
        c.webhook_url = Some(rx.url.clone());
    })
    .await;
    let a = sim
        .create(
            "contacts",
            &[("email", "a@example.com"), ("firstname", "A")],
        )
        .expect("create");
    let b = sim
        .create("contacts", &[("email", "b@example.com")])
        .expect("create");
    sim.update("contacts", a, &[("firstname", "Ann"), ("lastname", "Lee")])
        .expect("update");
    sim.archive("contacts", b).expect("archive");
    sim.restore("contacts", b).expect("restore");
    sim.merge("contacts", a, b).expect("merge");
    let job = sim
        .create("2-12345678", &[("job_title", "Rust Engineer")])
        .expect("job");
    sim.update("jobs", job, &[("job_status", "filled")])
        .expect("job update");
    sim.archive("jobs", job).expect("job archive");
    sim.create("deals", &[("dealname", "Placement")])
        .expect("deal");
    // 2 creations + 2 property changes + deletion + restore + merge; job: creation, change, deletion; deal.
    let batches = rx.wait_for(10, |a| event_count(a) >= 11).await;
    let mut kinds = BTreeMap::new();
    for req in &batches {
        let ts = req.header("x-hubspot-request-timestamp");
        let sig = req.header("x-hubspot-signature-v3");
        verify_v3(
            DEFAULT_CLIENT_SECRET.as_bytes(),
            "POST",
            &rx.url,
            &req.body,
            &ts,
            &sig,
            now_ms(),
            MAX_TIMESTAMP_AGE,
        )
        .expect("the v3 signature verifies with the full URL");
        assert!(verify_v3(
            b"wrong",
            "POST",
            &rx.url,
            &req.body,
            &ts,
            &sig,
            now_ms(),
            MAX_TIMESTAMP_AGE
        )
        .is_err());
        assert_eq!(req.header("content-type"), "application/json");
        let events = req.events();
        assert!(!events.is_empty() && events.len() <= 100);
        for e in events {
            assert_eq!(e.portal_id, 62_515);
            assert_eq!(e.attempt_number, 0);
            *kinds.entry(e.subscription_type.clone()).or_insert(0) += 1;
            match e.subscription_type.as_str() {
                "contact.merge" => {
                    assert_eq!(e.object_id, a);
                    assert_eq!(e.primary_object_id, Some(a));
                    assert_eq!(e.merged_object_ids, Some(vec![b]));
                }
                "contact.creation" => assert_eq!(e.change_flag.as_deref(), Some("CREATED")),
                "contact.deletion" => assert_eq!(e.change_flag.as_deref(), Some("DELETED")),
                "contact.propertyChange" => {
                    assert!(["firstname", "lastname"]
                        .contains(&e.property_name.as_deref().unwrap_or("")))
                }
                t if t.starts_with("object.") => {
                    assert_eq!(e.object_type_id.as_deref(), Some("2-12345678"));
                    assert_eq!(e.object_id, job);
                }
                "deal.creation" => {}
                other => assert!(other.starts_with("contact."), "unexpected {other}"),
            }
        }
    }
    let expect = [
        ("contact.creation", 2),
        ("contact.propertyChange", 2),
        ("contact.deletion", 1),
        ("contact.restore", 1),
        ("contact.merge", 1),
        ("object.creation", 1),
        ("object.propertyChange", 1),
        ("object.deletion", 1),
        ("deal.creation", 1),
    ];
    for (k, n) in expect {
        assert_eq!(kinds.get(k), Some(&n), "{k}: {kinds:?}");
    }
    let st = sim.stats().webhooks;
    assert_eq!(st.events, 11);
    assert_eq!(st.delivered, st.batches);
    assert_eq!(st.retries, 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_hold_at_most_100_events_and_arrive_out_of_order() {
    let rx = Receiver::start().await;
    let sim = start(|c| {
        c.webhook_duplicate_rate = 0.0;
        c.webhook_flush_ms = 100;
    })
    .await;
    sim.set_webhook_target(Some(&rx.url), None);
    sim.import(
        "contacts",
        350,
        1_700_000_000_000,
        &[("lifecyclestage", "lead")],
    )
    .expect("import");
    let batches = rx.wait_for(10, |a| event_count(a) >= 350).await;
    assert!(batches.len() >= 4, "350 events need at least 4 batches");
    let mut ids = Vec::new();
    for b in &batches {
        let ev = b.events();
        assert!(ev.len() <= 100, "batch of {}", ev.len());
        ids.extend(ev.iter().map(|e| e.event_id));
    }
    let distinct: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 350);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_ne!(ids, sorted, "events are not delivered in order");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_arrive_in_later_batches() {
    let rx = Receiver::start().await;
    let sim = start(|c| {
        c.webhook_duplicate_rate = 1.0;
    })
    .await;
    sim.set_webhook_target(Some(&rx.url), None);
    for i in 0..5 {
        sim.create("contacts", &[("email", &format!("d{i}@example.com"))])
            .expect("create");
    }
    let batches = rx.wait_for(10, |a| event_count(a) >= 10).await;
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for b in &batches {
        for e in b.events() {
            *seen.entry(e.event_id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.values().all(|n| *n == 2), "{seen:?}");
    assert_eq!(sim.stats().webhooks.duplicates, 5);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_slow_deliveries_are_retried_with_backoff() {
    let rx = Receiver::start().await;
    rx.behaviour
        .lock()
        .plan
        .extend([Answer::Fail, Answer::Fail, Answer::Slow(2_000)]);
    let sim = start(|c| {
        c.webhook_duplicate_rate = 0.0;
        c.webhook_timeout_ms = 600;
        c.webhook_retry_ms = vec![100, 200, 300, 400];
    })
    .await;
    sim.set_webhook_target(Some(&rx.url), None);
    let t0 = std::time::Instant::now();
    sim.create("contacts", &[("email", "r@example.com")])
        .expect("create");
    // Two 500s, then a hang longer than the 600 ms timeout: the fourth attempt is accepted.
    let batches = rx.wait_for(10, |a| !a.is_empty()).await;
    let elapsed = t0.elapsed();
    let e = &batches[0].events()[0];
    assert_eq!(e.attempt_number, 3, "attemptNumber counts the retries");
    // 100 + 200 + 300 ms of waits (±20%) plus the 600 ms timeout.
    assert!(elapsed >= Duration::from_millis(1_080), "{elapsed:?}");
    let st = sim.stats().webhooks;
    assert_eq!(st.deliveries, 4);
    assert_eq!(st.retries, 3);
    assert_eq!(st.failed_attempts, 3);
    assert_eq!(st.timeouts, 1);
    assert_eq!(st.delivered, 1);
    assert_eq!(rx.got.lock().len(), 4);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_given_up_after_the_last_retry_and_no_target_means_no_events() {
    let rx = Receiver::start().await;
    rx.behaviour.lock().plan.extend([Answer::Fail; 100]);
    let sim = start(|c| {
        c.webhook_duplicate_rate = 0.0;
        c.webhook_retry_ms = vec![20, 20];
    })
    .await;
    sim.create("contacts", &[("email", "before@example.com")])
        .expect("no target yet");
    sim.set_webhook_target(Some(&rx.url), None);
    sim.create("contacts", &[("email", "x@example.com")])
        .expect("create");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sim.stats().webhooks.given_up == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            sim.stats().webhooks
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = sim.stats().webhooks;
    assert_eq!(
        st.events, 1,
        "the write before the target existed made no event"
    );
    assert_eq!(st.deliveries, 3, "first try and two retries");
    assert_eq!(st.given_up, 1);
    assert_eq!(st.delivered, 0);
    sim.shutdown().await;
}
