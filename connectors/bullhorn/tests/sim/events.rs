//! Event subscriptions: batches are consumed by a poll, a lost batch is re-got with `requestId`,
//! `lastRequestId` tells where a crashed consumer stopped, and the event kinds match the writes.

use crate::common::{login, start};
use crmflow_bullhorn::sim::SoftDeleteEvent;
use crmflow_bullhorn::wire::{EntityEventType, EventBatch};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn lost_batch_is_regot_by_request_id() {
    let sim = start(|_| {}).await;
    let s = login(&sim).await;
    let (st, v) = s
        .send(Method::PUT, "event/subscription/cdc?type=entity&names=Candidate,JobOrder&eventTypes=INSERTED,UPDATED,DELETED", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["subscriptionId"], "cdc");
    assert_eq!(v["lastRequestId"], 0);
    assert!(v["jmsSelector"]
        .as_str()
        .is_some_and(|j| j.contains("BhEntityName='Candidate'")));

    // Nothing yet: 200 with an empty body.
    let (st, v) = s
        .get("event/subscription/cdc", &[("maxEvents", "10")])
        .await;
    assert_eq!((st, v), (StatusCode::OK, Value::Null));

    let id = sim
        .insert(
            "Candidate",
            json!({"firstName": "Grace", "lastName": "Hopper", "name": "Grace Hopper"}),
        )
        .expect("insert");
    sim.update(
        "Candidate",
        3,
        json!({"email": "x@example.org", "status": "Active"}),
    )
    .expect("update");
    sim.soft_delete("Candidate", 4).expect("delete");
    sim.update("JobOrder", 2, json!({"numOpenings": 3}))
        .expect("job update");
    sim.update("Candidate", id, json!({"phone": "555"}))
        .expect("update new");

    let (_, v) = s.get("event/subscription/cdc", &[("maxEvents", "3")]).await;
    let lost: EventBatch = serde_json::from_value(v).expect("batch");
    assert_eq!(lost.request_id, 1);
    assert_eq!(lost.events.len(), 3);
    let kinds: Vec<_> = lost.events.iter().map(|e| e.entity_event_type).collect();
    assert_eq!(
        kinds,
        [
            EntityEventType::Inserted,
            EntityEventType::Updated,
            EntityEventType::Deleted
        ]
    );
    assert_eq!(lost.events[0].entity_id, id);
    assert!(
        lost.events[0].updated_properties.is_none(),
        "INSERTED carries no updatedProperties"
    );
    let mut props = lost.events[1].updated_properties.clone().expect("props");
    props.sort();
    assert_eq!(props, ["email", "status"]);
    assert!(lost.events[0].event_id.starts_with("ID:JBM-"));

    // The consumer "crashes" before processing batch 1; the next poll moves on...
    let (_, v) = s
        .get("event/subscription/cdc", &[("maxEvents", "100")])
        .await;
    let next: EventBatch = serde_json::from_value(v).expect("batch");
    assert_eq!(next.request_id, 2);
    assert_eq!(next.events.len(), 2);
    assert_eq!(next.events[0].entity_name, "JobOrder");

    // ...and recovery: lastRequestId, then re-get the lost batch unchanged.
    let (_, v) = s.get("event/subscription/cdc/lastRequestId", &[]).await;
    assert_eq!(v, json!({"result": 2}));
    let (_, v) = s.get("event/subscription/cdc", &[("requestId", "1")]).await;
    let again: EventBatch = serde_json::from_value(v).expect("batch");
    assert_eq!(again, lost);

    // REST writes feed events too.
    let (st, _) = s
        .send(
            Method::POST,
            "entity/JobOrder/1",
            Some(json!({"isOpen": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s
        .get("event/subscription/cdc", &[("maxEvents", "100")])
        .await;
    let b: EventBatch = serde_json::from_value(v).expect("batch");
    assert_eq!((b.events.len(), b.events[0].entity_id), (1, 1));
    assert_eq!(
        b.events[0].updated_properties.as_deref(),
        Some(&["isOpen".to_string()][..])
    );

    let (_, v) = s.send(Method::DELETE, "event/subscription/cdc", None).await;
    assert_eq!(v, json!({"result": true}));
    let (st, _) = s.get("event/subscription/cdc", &[("maxEvents", "1")]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    sim.shutdown().await;
}

#[tokio::test]
async fn requestid_depth_and_soft_delete_as_update_are_configurable() {
    let sim = start(|c| {
        c.event_requestid_depth = 1;
        c.soft_delete_event = SoftDeleteEvent::Updated;
    })
    .await;
    let s = login(&sim).await;
    s.send(
        Method::PUT,
        "event/subscription/s?type=entity&names=Candidate&eventTypes=UPDATED,DELETED",
        None,
    )
    .await;
    sim.soft_delete("Candidate", 7).expect("delete");
    sim.update("Candidate", 8, json!({"status": "Placed"}))
        .expect("update");
    let (_, v) = s.get("event/subscription/s", &[("maxEvents", "1")]).await;
    let b1: EventBatch = serde_json::from_value(v).expect("batch");
    assert_eq!(b1.events[0].entity_event_type, EntityEventType::Updated);
    assert_eq!(
        b1.events[0].updated_properties.as_deref(),
        Some(&["isDeleted".to_string()][..])
    );
    s.get("event/subscription/s", &[("maxEvents", "1")]).await;
    // Depth 1: batch 1 can no longer be re-got, batch 2 can.
    let (_, v) = s.get("event/subscription/s", &[("requestId", "1")]).await;
    assert_eq!(v, Value::Null);
    let (_, v) = s.get("event/subscription/s", &[("requestId", "2")]).await;
    assert_eq!(v["requestId"], 2);
    sim.shutdown().await;
}
