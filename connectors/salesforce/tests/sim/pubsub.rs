//! The Pub/Sub client against the simulator's gRPC service over TLS.

use std::time::Duration;

use crmflow_salesforce::proto::pub_sub_client::PubSubClient as RawGrpc;
use crmflow_salesforce::proto::{FetchRequest, ReplayPreset};
use crmflow_salesforce::pubsub::{Credentials, PubSubClient, PubSubConfig, ReplayStart};
use crmflow_salesforce::sim::{FaultsPatch, SimConfig, SimHandle};
use secrecy::SecretString;
use serde_json::json;

use crate::common::*;

async fn client(sim: &SimHandle, batch: i32) -> PubSubClient {
    let mut cfg = PubSubConfig::new(base(sim));
    cfg.ca_pem = Some(sim.ca_pem().into_bytes());
    cfg.batch_size = batch;
    let rest = cc_client(sim);
    let creds = Credentials::from_session(&rest.session().await.unwrap()).unwrap();
    PubSubClient::connect(&cfg, creds)
        .await
        .expect("connects over TLS/h2")
}

async fn next(
    sub: &mut crmflow_salesforce::pubsub::Subscription,
) -> crmflow_salesforce::pubsub::ReceivedEvent {
    tokio::time::timeout(Duration::from_secs(10), sub.next_event())
        .await
        .expect("an event in time")
        .expect("no error")
        .expect("stream open")
}

#[tokio::test]
async fn topic_schema_and_earliest_replay() {
    let sim = start(SimConfig::for_tests()).await;
    let ps = client(&sim, 50).await;
    let topic = ps.get_topic("/data/ContactChangeEvent").await.unwrap();
    assert!(topic.can_subscribe && !topic.schema_id.is_empty());
    assert_eq!(topic.tenant_guid, sim.org_id());
    let id = sim
        .insert(
            "Contact",
            json!({"FirstName": "Eve", "LastName": "Pub", "Email": "eve@example.com"}),
        )
        .unwrap();
    sim.update("Contact", &id, json!({"Title": "CTO", "Email": null}))
        .unwrap();
    sim.delete("Contact", &id).unwrap();
    sim.undelete("Contact", &id).unwrap();
    let mut sub = ps
        .subscribe("/data/ContactChangeEvent", ReplayStart::Earliest)
        .await
        .unwrap();
    let create = next(&mut sub).await;
    assert_eq!(create.header.change_type, "CREATE");
    assert_eq!(create.header.record_ids, vec![id.clone()]);
    assert_eq!(create.header.entity_name, "Contact");
    assert_eq!(create.fields["LastName"], json!("Pub"));
    assert!(create.header.commit_timestamp > 0 && !create.header.transaction_key.is_empty());
    let update = next(&mut sub).await;
    assert_eq!(update.header.change_type, "UPDATE");
    // Only the changed fields travel, named through the bitmap.
    let mut changed = update.header.changed_fields.clone();
    changed.sort();
    assert_eq!(changed, vec!["Email", "LastModifiedDate", "Title"]);
    assert_eq!(update.header.nulled_fields, vec!["Email"]);
    assert_eq!(update.fields.get("Title"), Some(&json!("CTO")));
    assert!(
        !update.fields.contains_key("LastName"),
        "{:?}",
        update.fields
    );
    assert_eq!(next(&mut sub).await.header.change_type, "DELETE");
    assert_eq!(next(&mut sub).await.header.change_type, "UNDELETE");
    assert_eq!(
        ps.schema(&create.schema_id).await.unwrap().canonical_form(),
        ps.schema(&update.schema_id).await.unwrap().canonical_form()
    );
}

#[tokio::test]
async fn latest_and_custom_replay() {
    let sim = start(SimConfig::for_tests()).await;
    let ps = client(&sim, 10).await;
    let a = sim
        .insert("Position__c", json!({"Name": "Before"}))
        .unwrap();
    let mut latest = ps
        .subscribe("/data/Position__ChangeEvent", ReplayStart::Latest)
        .await
        .unwrap();
    // The server takes its start point when it reads the first FetchRequest: publish until one arrives.
    let mut after = Vec::new();
    let e = loop {
        after.push(sim.insert("Position__c", json!({"Name": "After"})).unwrap());
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), latest.next_event()).await {
            break r.unwrap().unwrap();
        }
        assert!(after.len() < 30, "LATEST subscription delivered nothing");
    };
    assert!(
        after.contains(&e.header.record_ids[0]),
        "LATEST starts after the tip, {a} is not replayed"
    );
    let mut from_start = ps
        .subscribe("/data/Position__ChangeEvent", ReplayStart::Earliest)
        .await
        .unwrap();
    let first = next(&mut from_start).await;
    assert_eq!(first.header.record_ids, vec![a]);
    let mut custom = ps
        .subscribe(
            "/data/Position__ChangeEvent",
            ReplayStart::After(first.replay_id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        next(&mut custom).await.header.record_ids,
        vec![after[0].clone()]
    );
    // The all-objects channel carries both objects, in commit order.
    sim.insert("Contact", json!({"LastName": "Any"})).unwrap();
    let mut all = ps
        .subscribe("/data/ChangeEvents", ReplayStart::Earliest)
        .await
        .unwrap();
    let mut entities = Vec::new();
    for _ in 0..after.len() + 2 {
        entities.push(next(&mut all).await.header.entity_name);
    }
    let mut want = vec!["Position__c".to_string(); after.len() + 1];
    want.push("Contact".to_string());
    assert_eq!(entities, want);
}

#[tokio::test]
async fn flow_control_never_exceeds_credit() {
    let sim = start(SimConfig::for_tests()).await;
    for _ in 0..30 {
        sim.insert("Contact", json!({"LastName": "Flow"})).unwrap();
    }
    // A raw stream, to control num_requested exactly.
    let rest = cc_client(&sim);
    let s = rest.session().await.unwrap();
    let raw = raw_channel(&sim).await;
    let mut grpc = RawGrpc::new(raw);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(FetchRequest {
        topic_name: "/data/ContactChangeEvent".into(),
        replay_preset: ReplayPreset::Earliest as i32,
        num_requested: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    {
        use secrecy::ExposeSecret;
        let md = req.metadata_mut();
        md.insert(
            "accesstoken",
            s.access_token.expose_secret().parse().unwrap(),
        );
        md.insert("instanceurl", sim.base_url().parse().unwrap());
        md.insert("tenantid", sim.org_id().parse().unwrap());
    }
    let mut inbound = grpc.subscribe(req).await.unwrap().into_inner();
    let mut got = 0;
    while got < 5 {
        let r = inbound.message().await.unwrap().unwrap();
        got += r.events.len();
    }
    assert_eq!(got, 5);
    // No more credit: nothing arrives.
    let quiet = tokio::time::timeout(Duration::from_millis(400), inbound.message()).await;
    assert!(
        quiet.is_err(),
        "server sent events beyond num_requested: {quiet:?}"
    );
    tx.send(FetchRequest {
        num_requested: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut more = 0;
    while more < 3 {
        let r = inbound.message().await.unwrap().unwrap();
        more += r.events.len();
        assert!(r.pending_num_requested >= 0);
    }
    assert_eq!(more, 3);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), inbound.message())
            .await
            .is_err()
    );
    assert!(sim.stats()["max_pending_credit"].as_u64().unwrap() <= 5);
}

async fn raw_channel(sim: &SimHandle) -> tonic::transport::Channel {
    // A plain tonic channel over the simulator's TLS (the crate's client keeps its channel private).
    use hyper_util::rt::TokioIo;
    let tls =
        crmflow_salesforce::tls::client_config(Some(sim.ca_pem().as_bytes()), &[b"h2"]).unwrap();
    let addr = sim.addr();
    let connector = tower::service_fn(move |_u: http::Uri| {
        let tls = tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let s = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(s))
        }
    });
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap()
}

#[tokio::test]
async fn gap_and_overflow_events() {
    let sim = start(SimConfig::for_tests()).await;
    let ps = client(&sim, 20).await;
    sim.set_faults(&FaultsPatch {
        gap_next: Some(1),
        overflow_next: Some(0),
        ..Default::default()
    });
    let id = sim.insert("Contact", json!({"LastName": "Gap"})).unwrap();
    sim.set_faults(&FaultsPatch {
        overflow_next: Some(1),
        ..Default::default()
    });
    sim.update("Contact", &id, json!({"Title": "x"})).unwrap();
    let mut sub = ps
        .subscribe("/data/ContactChangeEvent", ReplayStart::Earliest)
        .await
        .unwrap();
    let gap = next(&mut sub).await;
    assert_eq!(gap.header.change_type, "GAP_CREATE");
    assert!(gap.header.is_gap() && gap.fields.is_empty());
    assert_eq!(gap.header.record_ids, vec![id]);
    let over = next(&mut sub).await;
    assert_eq!(over.header.change_type, "GAP_OVERFLOW");
    assert_eq!(over.header.record_ids, vec!["003*".to_string()]);
}

#[tokio::test]
async fn expired_replay_id_and_bad_auth() {
    let sim = start(SimConfig::for_tests()).await;
    let ps = client(&sim, 20).await;
    sim.insert("Contact", json!({"LastName": "Old"})).unwrap();
    let mut sub = ps
        .subscribe("/data/ContactChangeEvent", ReplayStart::Earliest)
        .await
        .unwrap();
    let old = next(&mut sub).await.replay_id;
    drop(sub);
    sim.set_faults(&FaultsPatch {
        purge_events: true,
        ..Default::default()
    });
    sim.insert("Contact", json!({"LastName": "New"})).unwrap();
    let mut sub = ps
        .subscribe("/data/ContactChangeEvent", ReplayStart::After(old))
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), sub.next_event())
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.is_replay_expired() && !e.is_retriable(), "{e}");

    let mut cfg = PubSubConfig::new(base(&sim));
    cfg.ca_pem = Some(sim.ca_pem().into_bytes());
    let bad = PubSubClient::connect(
        &cfg,
        Credentials {
            access_token: SecretString::from("00Dbogus!AQ".to_string()),
            instance_url: sim.base_url(),
            tenant_id: sim.org_id(),
        },
    )
    .await
    .unwrap();
    let e = bad.get_topic("/data/ContactChangeEvent").await.unwrap_err();
    assert!(e.is_auth() && e.is_retriable(), "{e}");
    let e = ps.get_topic("/data/NoSuchChangeEvent").await.unwrap_err();
    assert!(!e.is_retriable(), "{e}");
}
