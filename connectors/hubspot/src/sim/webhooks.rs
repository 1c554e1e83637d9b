//! Webhook delivery as HubSpot does it: every write becomes events (`contact.creation`,
//! `contact.propertyChange` — one per changed property —, `contact.deletion`, `contact.merge`,
//! `contact.restore`; `deal.*` likewise; the custom object uses the generic `object.*` types with
//! `objectTypeId`, as HubSpot's generic webhooks do), which are batched (at most `webhook_batch_max`, 100),
//! shuffled, sometimes duplicated into a later batch, and POSTed as a JSON array to the target URL with
//! `X-HubSpot-Signature-v3` (see [`crate::signature`]), `X-HubSpot-Request-Timestamp` and the v1 signature.
//! A delivery that answers non-2xx, fails, or takes longer than `webhook_timeout_ms` is retried after each
//! wait of `webhook_retry_ms` (±20% jitter) with `attemptNumber` increased, then given up. Every step is
//! counted in `/sim/stats` (`webhooks`).
//!
//! Events exist only while a target is configured (HubSpot sends only to subscribed apps): writes made with
//! no target produce none.

use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::schema::TypeDef;
use super::store::{Change, ChangeKind};
use super::Shared;
use crate::signature::{sign_v3, SIGNATURE_V3_HEADER, TIMESTAMP_HEADER};
use crate::wire::WebhookEvent;

/// Where webhooks go, changeable at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Full URL the events are POSTed to (and signed with).
    pub url: String,
    /// Signing key (the app's client secret).
    pub secret: String,
}

/// Event production state.
pub struct Webhooks {
    /// Current target; `None`: no events.
    pub target: Option<Target>,
    next_event_id: u64,
    tx: mpsc::UnboundedSender<WebhookEvent>,
}

const KINDS: [&str; 5] = ["creation", "propertyChange", "deletion", "merge", "restore"];

impl Webhooks {
    /// State sending events into `tx`.
    pub fn new(target: Option<Target>, tx: mpsc::UnboundedSender<WebhookEvent>) -> Self {
        Self {
            target,
            next_event_id: 1,
            tx,
        }
    }

    /// Turns a change into events and queues them; returns how many.
    pub fn publish(&mut self, types: &[TypeDef], c: &Change, portal_id: u64, app_id: u64) -> usize {
        if self.target.is_none() {
            return 0;
        }
        let def = &types[c.type_idx];
        let (prefix, type_id) = match def.webhook_prefix {
            Some(p) => (p, None),
            None => ("object", Some(def.object_type_id.clone())),
        };
        let source_id = match c.source {
            "CRM_UI" => Some(format!("userId:{}", 40_000 + c.id % 97)),
            "API" | "IMPORT" => Some(format!("app:{app_id}")),
            _ => None,
        };
        let mut base = |kind_idx: usize| {
            let id = self.next_event_id;
            self.next_event_id += 1;
            WebhookEvent {
                event_id: id,
                subscription_id: 1_000 + c.type_idx as u64 * 10 + kind_idx as u64,
                portal_id,
                app_id,
                occurred_at: c.at_ms,
                subscription_type: format!("{prefix}.{}", KINDS[kind_idx]),
                attempt_number: 0,
                object_id: c.id,
                object_type_id: type_id.clone(),
                property_name: None,
                property_value: None,
                change_flag: None,
                change_source: Some(c.source.to_string()),
                source_id: source_id.clone(),
                primary_object_id: None,
                merged_object_ids: None,
                new_object_id: None,
                number_of_properties_moved: None,
            }
        };
        let events: Vec<WebhookEvent> = match &c.kind {
            ChangeKind::Created => vec![WebhookEvent {
                change_flag: Some("CREATED".into()),
                ..base(0)
            }],
            ChangeKind::Updated(props) => props
                .iter()
                .map(|(k, v)| WebhookEvent {
                    property_name: Some(k.clone()),
                    property_value: Some(v.clone().unwrap_or_default()),
                    ..base(1)
                })
                .collect(),
            ChangeKind::Archived => vec![WebhookEvent {
                change_flag: Some("DELETED".into()),
                ..base(2)
            }],
            ChangeKind::Merged { merged, moved } => vec![WebhookEvent {
                primary_object_id: Some(c.id),
                merged_object_ids: Some(merged.clone()),
                new_object_id: Some(c.id),
                number_of_properties_moved: Some(*moved),
                ..base(3)
            }],
            ChangeKind::Restored => vec![base(4)],
        };
        let n = events.len();
        for e in events {
            let _ = self.tx.send(e);
        }
        n
    }
}

/// Runs until the channel closes: batches queued events and delivers them.
pub async fn dispatch(s: Shared, mut rx: mpsc::UnboundedReceiver<WebhookEvent>) {
    let cfg = s.config.clone();
    let http = match reqwest::Client::builder().build() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(%e, "webhook http client");
            return;
        }
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x3eb0);
    let permits = Arc::new(Semaphore::new(cfg.webhook_concurrency.max(1)));
    let mut inflight = JoinSet::new();
    let flush = Duration::from_millis(cfg.webhook_flush_ms.max(1));
    let mut carry: Vec<WebhookEvent> = Vec::new();
    loop {
        // Wait for a first event (or, with duplicates pending, at most one flush interval).
        let first = if carry.is_empty() {
            match rx.recv().await {
                Some(e) => Some(e),
                None => break,
            }
        } else {
            match tokio::time::timeout(flush, rx.recv()).await {
                Ok(Some(e)) => Some(e),
                Ok(None) => break,
                Err(_) => None,
            }
        };
        let mut buf: Vec<WebhookEvent> = std::mem::take(&mut carry);
        buf.extend(first);
        let deadline = tokio::time::Instant::now() + flush;
        while buf.len() < cfg.webhook_batch_max * 10 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => buf.push(e),
                _ => break,
            }
        }
        while inflight.try_join_next().is_some() {}
        for e in &buf {
            if e.attempt_number == 0 && rng.random_bool(cfg.webhook_duplicate_rate) {
                let mut d = e.clone();
                // Marks the copy so it is not duplicated again; reset before sending.
                d.attempt_number = u32::MAX;
                carry.push(d);
            }
        }
        s.stats.lock().webhooks.duplicates += carry.len() as u64;
        for e in &mut buf {
            e.attempt_number = 0;
        }
        if cfg.webhook_shuffle {
            buf.shuffle(&mut rng);
        }
        for chunk in buf.chunks(cfg.webhook_batch_max) {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let batch = chunk.to_vec();
            let s2 = s.clone();
            let http = http.clone();
            let seed = rng.random::<u64>();
            s.stats.lock().webhooks.batches += 1;
            inflight.spawn(async move {
                deliver(s2, http, batch, seed).await;
                drop(permit);
            });
        }
    }
}

/// Delivers one batch with retries.
async fn deliver(s: Shared, http: reqwest::Client, mut batch: Vec<WebhookEvent>, seed: u64) {
    let cfg = &s.config;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let timeout = Duration::from_millis(cfg.webhook_timeout_ms);
    for attempt in 0..=cfg.webhook_retry_ms.len() {
        let Some(target) = s.webhooks.lock().target.clone() else {
            return;
        };
        for e in &mut batch {
            e.attempt_number = attempt as u32;
        }
        let body = match serde_json::to_vec(&batch) {
            Ok(b) => b,
            Err(_) => return,
        };
        let ts = chrono::Utc::now().timestamp_millis().to_string();
        let v3 = sign_v3(target.secret.as_bytes(), "POST", &target.url, &body, &ts);
        let v1 = {
            let mut h = Sha256::new();
            h.update(target.secret.as_bytes());
            h.update(&body);
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        {
            let mut st = s.stats.lock();
            st.webhooks.deliveries += 1;
            if attempt > 0 {
                st.webhooks.retries += 1;
            }
        }
        let sent = http
            .post(&target.url)
            .timeout(timeout)
            .header("Content-Type", "application/json")
            .header(SIGNATURE_V3_HEADER, v3)
            .header(TIMESTAMP_HEADER, &ts)
            .header("X-HubSpot-Signature", v1)
            .header("X-HubSpot-Signature-Version", "v1")
            .body(body)
            .send()
            .await;
        let ok = match sent {
            Ok(r) if r.status().is_success() => {
                // The body is part of the answer: a receiver slower than the timeout fails here too.
                true
            }
            Ok(_) => false,
            Err(e) => {
                if e.is_timeout() {
                    s.stats.lock().webhooks.timeouts += 1;
                }
                false
            }
        };
        if ok {
            s.stats.lock().webhooks.delivered += 1;
            return;
        }
        s.stats.lock().webhooks.failed_attempts += 1;
        match cfg.webhook_retry_ms.get(attempt) {
            Some(ms) => {
                let jitter = rng.random_range(0.8..1.2);
                tokio::time::sleep(Duration::from_millis(*ms).mul_f64(jitter)).await;
            }
            None => {
                tracing::warn!(events = batch.len(), "webhook batch given up");
                s.stats.lock().webhooks.given_up += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::schema::types;

    fn change(type_idx: usize, kind: ChangeKind) -> Change {
        Change {
            type_idx,
            id: 7,
            at_ms: 1_000,
            kind,
            source: "CRM_UI",
        }
    }

    #[test]
    fn changes_become_hubspot_events() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t = types("2-99", 1);
        let mut w = Webhooks::new(None, tx);
        assert_eq!(
            w.publish(&t, &change(0, ChangeKind::Created), 1, 2),
            0,
            "no target, no events"
        );
        w.target = Some(Target {
            url: "http://x/".into(),
            secret: "s".into(),
        });
        assert_eq!(w.publish(&t, &change(0, ChangeKind::Created), 1, 2), 1);
        let e = rx.try_recv().expect("event");
        assert_eq!(e.subscription_type, "contact.creation");
        assert_eq!(e.change_flag.as_deref(), Some("CREATED"));
        assert_eq!(e.object_type_id, None);
        let upd = ChangeKind::Updated(vec![
            ("email".into(), Some("a@b".into())),
            ("phone".into(), None),
        ]);
        assert_eq!(w.publish(&t, &change(1, upd), 1, 2), 2);
        let e = rx.try_recv().expect("event");
        assert_eq!(e.subscription_type, "deal.propertyChange");
        assert_eq!(e.property_name.as_deref(), Some("email"));
        assert_eq!(
            rx.try_recv().expect("2nd").property_value.as_deref(),
            Some("")
        );
        w.publish(
            &t,
            &change(
                2,
                ChangeKind::Merged {
                    merged: vec![8],
                    moved: 1,
                },
            ),
            1,
            2,
        );
        let e = rx.try_recv().expect("event");
        assert_eq!(e.subscription_type, "object.merge");
        assert_eq!(e.object_type_id.as_deref(), Some("2-99"));
        assert_eq!(e.merged_object_ids, Some(vec![8]));
        assert_eq!(e.primary_object_id, Some(7));
        w.publish(&t, &change(0, ChangeKind::Archived), 1, 2);
        assert_eq!(
            rx.try_recv().expect("del").subscription_type,
            "contact.deletion"
        );
        w.publish(&t, &change(0, ChangeKind::Restored), 1, 2);
        let e = rx.try_recv().expect("restore");
        assert_eq!(e.subscription_type, "contact.restore");
        assert!(e.event_id > 1);
    }
}
