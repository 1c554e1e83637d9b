//! The Pub/Sub API (`eventbus.v1.PubSub`) over gRPC: `GetTopic`, `GetSchema` and the bidirectional
//! `Subscribe` stream with pull flow control — the server never sends more events than the stream's
//! outstanding `num_requested` credit — replay presets (LATEST, EARLIEST, CUSTOM after a replay id), the
//! retention window (a replay id older than it is `INVALID_ARGUMENT` with the `error-code` trailer
//! `sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted`), and keepalives (an empty
//! FetchResponse with the latest replay id) on idle streams. Every call needs the `accesstoken`,
//! `instanceurl` and `tenantid` metadata of a live session. The `break_streams` fault ends every open
//! stream with `UNAVAILABLE`.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::events::{decode_replay, encode_replay};
use super::Shared;
use crate::proto::pub_sub_server::PubSub;
use crate::proto::{
    ConsumerEvent, FetchRequest, FetchResponse, ProducerEvent, PublishRequest, PublishResponse,
    ReplayPreset, SchemaInfo, SchemaRequest, TopicInfo, TopicRequest,
};

/// Topic of every object's change events.
pub const ALL_CHANGE_EVENTS: &str = "/data/ChangeEvents";

/// The service.
pub struct PubSubService {
    pub(crate) shared: Shared,
}

fn status(code: tonic::Code, error_code: &str, message: &str) -> Status {
    let rpc_id = uuid::Uuid::new_v4().to_string();
    let mut md = MetadataMap::new();
    if let Ok(v) = error_code.parse() {
        md.insert("error-code", v);
    }
    if let Ok(v) = rpc_id.parse() {
        md.insert("rpc-id", v);
    }
    Status::with_metadata(code, format!("{message} rpcId: {rpc_id}"), md)
}

impl PubSubService {
    fn authorize(&self, md: &MetadataMap) -> Result<(), Status> {
        let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        let s = &self.shared;
        let token_ok = s.auth.lock().check(
            get("accesstoken"),
            Duration::from_secs(s.config.session_ttl_secs),
            s.config.session_sliding,
        );
        let url_ok = get("instanceurl").trim_end_matches('/') == s.base_url.trim_end_matches('/');
        let tenant = get("tenantid");
        let tenant_ok = !tenant.is_empty() && s.org_id.starts_with(tenant);
        if token_ok && url_ok && tenant_ok {
            Ok(())
        } else {
            Err(status(
                tonic::Code::Unauthenticated,
                "sfdc.platform.eventbus.grpc.service.auth.error",
                "An authentication exception occurred. Provide valid authentication via metadata headers.",
            ))
        }
    }

    /// The object a topic covers (`None` inside `Some`: every object).
    fn topic_filter(&self, topic: &str) -> Option<Option<usize>> {
        if topic == ALL_CHANGE_EVENTS {
            return Some(None);
        }
        let db = self.shared.db.read();
        db.objects
            .iter()
            .position(|o| o.def.topic() == topic)
            .map(Some)
    }

    fn topic_not_found(topic: &str) -> Status {
        status(
            tonic::Code::NotFound,
            "sfdc.platform.eventbus.grpc.topic.not.found",
            &format!("topic {topic} not found"),
        )
    }
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<FetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PubSub for PubSubService {
    type SubscribeStream = FetchStream;

    async fn subscribe(
        &self,
        request: Request<Streaming<FetchRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.authorize(request.metadata())?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<FetchResponse, Status>>(8);
        let shared = self.shared.clone();
        let filter_of = {
            let objects: Vec<String> = shared
                .db
                .read()
                .objects
                .iter()
                .map(|o| o.def.topic())
                .collect();
            move |t: &str| -> Option<Option<usize>> {
                if t == ALL_CHANGE_EVENTS {
                    Some(None)
                } else {
                    objects.iter().position(|o| o == t).map(Some)
                }
            }
        };
        shared.stats.lock().subscriptions += 1;
        let mut breaks = shared.stream_breaks.subscribe();
        breaks.borrow_and_update();
        tokio::spawn(async move {
            let first = match inbound.message().await {
                Ok(Some(f)) => f,
                _ => return,
            };
            let topic = first.topic_name.clone();
            let Some(filter) = filter_of(&topic) else {
                let _ = tx.send(Err(Self::topic_not_found(&topic))).await;
                return;
            };
            let (start, mut tip_rx) = {
                let mut bus = shared.bus.lock();
                bus.purge_expired(chrono::Utc::now().timestamp_millis());
                let start = match ReplayPreset::try_from(first.replay_preset).unwrap_or(ReplayPreset::Latest) {
                    ReplayPreset::Latest => Ok(bus.tip()),
                    ReplayPreset::Earliest => Ok(bus.earliest_start()),
                    ReplayPreset::Custom => match decode_replay(&first.replay_id) {
                        Some(r) if bus.valid_start(r) => Ok(r),
                        _ => Err(status(
                            tonic::Code::InvalidArgument,
                            "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted",
                            "The Replay ID validation failed. Ensure that the Replay ID is valid and within the retention window.",
                        )),
                    },
                };
                (start, bus.subscribe_tip())
            };
            let mut cursor = match start {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let mut credit: u64 = first.num_requested.max(0) as u64;
            let keepalive = Duration::from_secs(shared.config.keepalive_secs.max(1));
            let max_batch = shared.config.max_events_per_response.max(1);
            let mut last_sent = tokio::time::Instant::now();
            let mut inbound_open = true;
            loop {
                {
                    let mut st = shared.stats.lock();
                    st.max_pending_credit = st.max_pending_credit.max(credit);
                }
                // Deliver what the credit allows.
                while credit > 0 {
                    let batch = {
                        let mut bus = shared.bus.lock();
                        bus.purge_expired(chrono::Utc::now().timestamp_millis());
                        if cursor < bus.purged_through {
                            // The stream fell behind the retention window: events were lost to it.
                            Err(status(
                                tonic::Code::InvalidArgument,
                                "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted",
                                "The Replay ID validation failed. Events after it are past the retention window.",
                            ))
                        } else {
                            Ok((
                                bus.after(cursor, (credit as usize).min(max_batch), filter),
                                bus.tip(),
                            ))
                        }
                    };
                    let (events, tip) = match batch {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    if events.is_empty() {
                        // Nothing for this topic up to the tip.
                        cursor = cursor.max(tip);
                        break;
                    }
                    cursor = events.last().map(|e| e.replay).unwrap_or(cursor);
                    credit -= events.len() as u64;
                    let n = events.len() as u64;
                    let resp = FetchResponse {
                        events: events
                            .iter()
                            .map(|e| ConsumerEvent {
                                event: Some(ProducerEvent {
                                    id: e.id.clone(),
                                    schema_id: e.schema_id.clone(),
                                    payload: e.payload.clone(),
                                    headers: Vec::new(),
                                }),
                                replay_id: encode_replay(e.replay),
                            })
                            .collect(),
                        latest_replay_id: encode_replay(cursor),
                        rpc_id: uuid::Uuid::new_v4().to_string(),
                        pending_num_requested: credit.min(i32::MAX as u64) as i32,
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                    shared.stats.lock().events_delivered += n;
                    last_sent = tokio::time::Instant::now();
                }
                tokio::select! {
                    msg = inbound.message(), if inbound_open => match msg {
                        Ok(Some(req)) => {
                            if !req.topic_name.is_empty() && req.topic_name != topic {
                                let _ = tx.send(Err(status(
                                    tonic::Code::InvalidArgument,
                                    "sfdc.platform.eventbus.grpc.subscription.topic.mismatch",
                                    "topic_name must match the first FetchRequest's",
                                ))).await;
                                return;
                            }
                            credit = credit.saturating_add(req.num_requested.max(0) as u64);
                        }
                        // The client half-closed: keep serving the credit it already gave.
                        Ok(None) => inbound_open = false,
                        Err(_) => return,
                    },
                    changed = tip_rx.changed(), if credit > 0 => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    _ = tokio::time::sleep_until(last_sent + keepalive) => {
                        let resp = FetchResponse {
                            events: Vec::new(),
                            latest_replay_id: encode_replay(cursor),
                            rpc_id: uuid::Uuid::new_v4().to_string(),
                            pending_num_requested: credit.min(i32::MAX as u64) as i32,
                        };
                        if tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                        last_sent = tokio::time::Instant::now();
                    }
                    _ = breaks.changed() => {
                        let _ = tx.send(Err(status(
                            tonic::Code::Unavailable,
                            "sfdc.platform.eventbus.grpc.service.unavailable",
                            "The stream was dropped (injected fault). Subscribe again.",
                        ))).await;
                        return;
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_schema(
        &self,
        request: Request<SchemaRequest>,
    ) -> Result<Response<SchemaInfo>, Status> {
        self.authorize(request.metadata())?;
        let id = request.into_inner().schema_id;
        let schema = self.shared.bus.lock().schema(&id);
        match schema {
            Some(s) => Ok(Response::new(SchemaInfo {
                schema_json: s.json.clone(),
                schema_id: s.id.clone(),
                rpc_id: uuid::Uuid::new_v4().to_string(),
            })),
            None => Err(status(
                tonic::Code::NotFound,
                "sfdc.platform.eventbus.grpc.schema.not.found",
                &format!("schema {id} not found"),
            )),
        }
    }

    async fn get_topic(
        &self,
        request: Request<TopicRequest>,
    ) -> Result<Response<TopicInfo>, Status> {
        self.authorize(request.metadata())?;
        let topic = request.into_inner().topic_name;
        let Some(filter) = self.topic_filter(&topic) else {
            return Err(Self::topic_not_found(&topic));
        };
        let schema_id = match filter {
            Some(o) => self.shared.bus.lock().schemas[o].id.clone(),
            // The all-objects channel has no single schema.
            None => String::new(),
        };
        Ok(Response::new(TopicInfo {
            topic_name: topic,
            tenant_guid: self.shared.org_id.clone(),
            can_publish: false,
            can_subscribe: true,
            schema_id,
            rpc_id: uuid::Uuid::new_v4().to_string(),
        }))
    }

    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        self.authorize(request.metadata())?;
        Err(status(
            tonic::Code::PermissionDenied,
            "sfdc.platform.eventbus.grpc.publish.not.allowed",
            "change event channels are read-only",
        ))
    }
}
