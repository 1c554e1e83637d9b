//! The `break_streams` fault: every open Pub/Sub `Subscribe` stream ends with gRPC `UNAVAILABLE`,
//! which the client reports as a retriable status, and a new subscription after the last replay id
//! sees the events that came since.

use std::time::Duration;

use crmflow_salesforce::pubsub::{
    Credentials, PubSubClient, PubSubConfig, PubSubError, ReplayStart,
};
use crmflow_salesforce::sim::{FaultsPatch, SimConfig};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn broken_streams_end_with_unavailable_and_a_resubscription_resumes() {
    let sim = start(SimConfig::for_tests()).await;
    let mut cfg = PubSubConfig::new(base(&sim));
    cfg.ca_pem = Some(sim.ca_pem().into_bytes());
    let rest = cc_client(&sim);
    let creds = Credentials::from_session(&rest.session().await.unwrap()).unwrap();
    let ps = PubSubClient::connect(&cfg, creds).await.unwrap();

    let mut sub = ps
        .subscribe("/data/ContactChangeEvent", ReplayStart::Latest)
        .await
        .unwrap();
    let id = sim
        .insert(
            "Contact",
            json!({"LastName": "Before", "Email": "b@example.com"}),
        )
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), sub.next_event())
        .await
        .expect("in time")
        .expect("no error")
        .expect("open");
    assert_eq!(first.header.record_ids, [id]);

    sim.set_faults(&FaultsPatch {
        break_streams: true,
        ..Default::default()
    });
    let err = tokio::time::timeout(Duration::from_secs(10), sub.next_event())
        .await
        .expect("the stream ends in time")
        .expect_err("a broken stream is an error");
    assert!(
        matches!(
            &err,
            PubSubError::Status {
                code: tonic::Code::Unavailable,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retriable(), "{err:?}");

    // Written while no stream was open; a subscription after the last replay id gets it.
    let later = sim
        .insert(
            "Contact",
            json!({"LastName": "After", "Email": "a@example.com"}),
        )
        .unwrap();
    let mut sub = ps
        .subscribe(
            "/data/ContactChangeEvent",
            ReplayStart::After(first.replay_id.clone()),
        )
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), sub.next_event())
        .await
        .expect("in time")
        .expect("no error")
        .expect("open");
    assert_eq!(ev.header.record_ids, [later]);
    sim.shutdown().await;
}
