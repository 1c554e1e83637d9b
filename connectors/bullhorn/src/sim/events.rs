//! Event subscriptions: `PUT|GET|DELETE event/subscription/{id}` and `.../lastRequestId`.
//!
//! Every write of the store becomes a [`Change`]; [`Events::publish`] appends it to the queue of every
//! subscription whose entity names and event types match. A poll without `requestId` takes up to `maxEvents`
//! from the queue (consuming them, as Bullhorn purges a batch once handed out), numbers the batch with a new
//! `requestId` and keeps it so that `requestId=N` can fetch it again — the at-least-once recovery path — for
//! the last `event_requestid_depth` batches. An empty poll answers according to [`EmptyPoll`].

use std::collections::{BTreeMap, VecDeque};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::store::{entity_def, now_ms, Change};
use crate::wire::{EntityEventType, Event, EventBatch, SubscriptionCreated};

/// Answer to a poll that finds no events (Bullhorn's is unconfirmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "sim", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum EmptyPoll {
    /// 200 with an empty body (most likely, per the reference).
    #[default]
    EmptyBody,
    /// 200 with `{"requestId":N,"events":[]}` (N is the last request id, not a new one).
    EmptyEvents,
    /// 204 No Content.
    NoContent,
}

/// Most events kept queued per subscription; older ones are dropped (Bullhorn purges unread events too).
const QUEUE_LIMIT: usize = 1_000_000;

/// One subscription.
#[derive(Debug)]
pub struct Subscription {
    /// Entity names it listens to.
    pub names: Vec<String>,
    /// Event types it listens to.
    pub types: Vec<EntityEventType>,
    /// Creation time, ms.
    pub created_on: i64,
    /// JMS selector echoed at creation.
    pub selector: String,
    /// Events not yet handed out.
    pub queue: VecDeque<Event>,
    /// Recent batches by request id, for re-gets.
    pub batches: VecDeque<(u64, Vec<Event>)>,
    /// Last request id handed out.
    pub last_request_id: u64,
}

/// What a poll answers.
pub enum PollResult {
    /// A batch of events.
    Batch(EventBatch),
    /// Nothing to hand out.
    Empty {
        /// The subscription's last request id (for the `EmptyEvents` shape).
        last_request_id: u64,
    },
}

/// All subscriptions.
#[derive(Debug, Default)]
pub struct Events {
    /// Subscriptions by id.
    pub subs: BTreeMap<String, Subscription>,
    /// Sequence behind `eventId` and `CHANGE_HISTORY_ID`.
    next_event: u64,
    /// Batches kept for re-get per subscription.
    pub depth: usize,
    /// Most subscriptions.
    pub max_subscriptions: usize,
    /// While lapsed (`POST /sim/events/lapse`), writes publish nothing: the events are lost, as when a
    /// subscription expired unread or Bullhorn purged its queue.
    pub lapsed: bool,
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "errors.subscriptionNotFound",
        format!("Subscription '{id}' does not exist"),
    )
}

impl Events {
    /// Empty set of subscriptions.
    pub fn new(depth: usize, max_subscriptions: usize) -> Self {
        Self {
            depth,
            max_subscriptions,
            ..Self::default()
        }
    }

    /// `PUT event/subscription/{id}?type=entity&names=..&eventTypes=..`. Re-creating an existing id returns
    /// it unchanged (so a restarting client keeps its queue).
    pub fn create(
        &mut self,
        id: &str,
        kind: Option<&str>,
        names: Option<&str>,
        types: Option<&str>,
    ) -> Result<SubscriptionCreated, ApiError> {
        if let Some(sub) = self.subs.get(id) {
            return Ok(SubscriptionCreated {
                subscription_id: id.into(),
                jms_selector: sub.selector.clone(),
                last_request_id: sub.last_request_id,
                created_on: sub.created_on,
            });
        }
        if !kind.unwrap_or("entity").eq_ignore_ascii_case("entity") {
            return Err(ApiError::bad_request(
                "Only type=entity subscriptions are supported",
            ));
        }
        let names: Vec<String> = names
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if names.is_empty() {
            return Err(ApiError::bad_request("Missing required parameter 'names'"));
        }
        if let Some(bad) = names.iter().find(|n| entity_def(n).is_none()) {
            return Err(ApiError::unknown_entity(bad));
        }
        let mut ev = Vec::new();
        for t in types
            .unwrap_or("INSERTED,UPDATED,DELETED")
            .split(',')
            .map(str::trim)
        {
            ev.push(match t.to_ascii_uppercase().as_str() {
                "INSERTED" => EntityEventType::Inserted,
                "UPDATED" => EntityEventType::Updated,
                "DELETED" => EntityEventType::Deleted,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid eventTypes value '{t}'"
                    )))
                }
            });
        }
        if self.subs.len() >= self.max_subscriptions {
            return Err(ApiError::bad_request(format!(
                "Subscription limit reached ({})",
                self.max_subscriptions
            )));
        }
        let selector = names
            .iter()
            .flat_map(|n| {
                ev.iter().map(move |t| {
                    let t = serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                    format!("(JMSType='ENTITY' AND BhCorpId=1 AND BhEntityName='{n}' AND BhEntityEventType='{t}')")
                })
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let created_on = now_ms();
        self.subs.insert(
            id.into(),
            Subscription {
                names,
                types: ev,
                created_on,
                selector: selector.clone(),
                queue: VecDeque::new(),
                batches: VecDeque::new(),
                last_request_id: 0,
            },
        );
        Ok(SubscriptionCreated {
            subscription_id: id.into(),
            jms_selector: selector,
            last_request_id: 0,
            created_on,
        })
    }

    /// Starts (`true`) or ends a lapse. Starting one also drops every queued, unread event; batches already
    /// handed out can still be re-got. Returns how many queued events were dropped.
    pub fn set_lapsed(&mut self, lapsed: bool) -> usize {
        self.lapsed = lapsed;
        if !lapsed {
            return 0;
        }
        self.subs
            .values_mut()
            .map(|s| std::mem::take(&mut s.queue).len())
            .sum()
    }

    /// Feeds one write to the matching subscriptions.
    pub fn publish(&mut self, c: &Change) {
        if self.subs.is_empty() || self.lapsed {
            return;
        }
        self.next_event += 1;
        let n = self.next_event;
        let mut meta = BTreeMap::new();
        meta.insert("PERSON_ID".to_string(), c.person_id.to_string());
        if c.event != EntityEventType::Inserted {
            meta.insert("CHANGE_HISTORY_ID".to_string(), n.to_string());
            meta.insert(
                "TRANSACTION_ID".to_string(),
                uuid::Uuid::new_v4().to_string(),
            );
        }
        let event = Event {
            event_id: format!("ID:JBM-{}", 40_000_000 + n),
            event_type: "ENTITY".into(),
            event_timestamp: c.timestamp,
            event_metadata: meta,
            entity_name: c.entity.into(),
            entity_id: c.id,
            entity_event_type: c.event,
            updated_properties: (c.event == EntityEventType::Updated).then(|| c.updated.clone()),
        };
        for sub in self.subs.values_mut() {
            if sub.names.iter().any(|x| x == c.entity) && sub.types.contains(&c.event) {
                if sub.queue.len() >= QUEUE_LIMIT {
                    sub.queue.pop_front();
                }
                sub.queue.push_back(event.clone());
            }
        }
    }

    /// `GET event/subscription/{id}?maxEvents=N`.
    pub fn poll(&mut self, id: &str, max_events: usize) -> Result<PollResult, ApiError> {
        let depth = self.depth;
        let sub = self.subs.get_mut(id).ok_or_else(|| not_found(id))?;
        if sub.queue.is_empty() || max_events == 0 {
            return Ok(PollResult::Empty {
                last_request_id: sub.last_request_id,
            });
        }
        let n = max_events.min(sub.queue.len());
        let events: Vec<Event> = sub.queue.drain(..n).collect();
        sub.last_request_id += 1;
        let request_id = sub.last_request_id;
        sub.batches.push_back((request_id, events.clone()));
        while sub.batches.len() > depth {
            sub.batches.pop_front();
        }
        Ok(PollResult::Batch(EventBatch { request_id, events }))
    }

    /// `GET event/subscription/{id}?requestId=N`: the same batch again, if still retained.
    pub fn reget(&mut self, id: &str, request_id: u64) -> Result<PollResult, ApiError> {
        let sub = self.subs.get(id).ok_or_else(|| not_found(id))?;
        Ok(match sub.batches.iter().find(|(r, _)| *r == request_id) {
            Some((r, events)) => PollResult::Batch(EventBatch {
                request_id: *r,
                events: events.clone(),
            }),
            None => PollResult::Empty {
                last_request_id: sub.last_request_id,
            },
        })
    }

    /// `GET event/subscription/{id}/lastRequestId`.
    pub fn last_request_id(&self, id: &str) -> Result<u64, ApiError> {
        self.subs
            .get(id)
            .map(|s| s.last_request_id)
            .ok_or_else(|| not_found(id))
    }

    /// `DELETE event/subscription/{id}`.
    pub fn delete(&mut self, id: &str) -> Result<(), ApiError> {
        self.subs
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| not_found(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ChangeType;

    fn change(id: i64, event: EntityEventType) -> Change {
        Change {
            entity: "Candidate",
            id,
            change_type: ChangeType::Update,
            event,
            updated: vec!["email".into()],
            timestamp: 1,
            person_id: 3,
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn batches_are_consumed_and_regettable_within_depth() {
        let mut ev = Events::new(2, 10);
        ev.create("s", None, Some("Candidate"), None)
            .expect("create");
        for i in 0..5 {
            ev.publish(&change(i, EntityEventType::Updated));
        }
        let PollResult::Batch(b1) = ev.poll("s", 2).expect("poll") else {
            panic!("empty")
        };
        let PollResult::Batch(b2) = ev.poll("s", 2).expect("poll") else {
            panic!("empty")
        };
        let PollResult::Batch(b3) = ev.poll("s", 2).expect("poll") else {
            panic!("empty")
        };
        assert_eq!((b1.request_id, b2.request_id, b3.request_id), (1, 2, 3));
        assert_eq!(b3.events.len(), 1);
        assert!(matches!(
            ev.poll("s", 2),
            Ok(PollResult::Empty { last_request_id: 3 })
        ));
        let PollResult::Batch(again) = ev.reget("s", 2).expect("reget") else {
            panic!("lost")
        };
        assert_eq!(again, b2);
        // Depth 2: batch 1 is gone.
        assert!(matches!(ev.reget("s", 1), Ok(PollResult::Empty { .. })));
        assert_eq!(ev.last_request_id("s").expect("last"), 3);
    }

    #[test]
    fn subscriptions_filter_by_name_and_type() {
        let mut ev = Events::new(2, 10);
        ev.create("s", Some("entity"), Some("JobOrder"), Some("INSERTED"))
            .expect("create");
        ev.publish(&change(1, EntityEventType::Updated));
        assert!(matches!(ev.poll("s", 10), Ok(PollResult::Empty { .. })));
        assert!(ev.create("t", None, Some("Nope"), None).is_err());
    }
}
