//! What the dead-letter queue holds, as reconciliation needs it: for one raw topic, the newest
//! version of each record the normalize stage rejected. A record missing from Postgres (or stale
//! there) whose CRM version the DLQ already holds is known, not drift: re-sending it would only
//! be rejected again, so it is reported as `in_dlq` and left to `crmflow dlq replay`.

use std::collections::HashMap;

use super::ReconcileError;
use crate::config::Config;
use crate::dlq::{Filter, H_SOURCE_TOPIC};

/// Newest rejected version by record id, for one raw topic.
#[derive(Debug, Default, Clone)]
pub struct DlqIndex {
    versions: HashMap<String, i64>,
}

impl DlqIndex {
    /// The newest version of `id` in the DLQ.
    pub fn version(&self, id: &str) -> Option<i64> {
        self.versions.get(id).copied()
    }

    /// Records known.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Adds one rejected version.
    pub fn add(&mut self, id: String, version: i64) {
        let v = self.versions.entry(id).or_insert(version);
        *v = (*v).max(version);
    }

    /// Reads the whole DLQ (beginning to its end now) and keeps the dead letters of `raw_topic`
    /// whose payload is a change event.
    pub async fn load(cfg: &Config, raw_topic: &str) -> Result<Self, ReconcileError> {
        let cfg = cfg.clone();
        let topic = raw_topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut index = DlqIndex::default();
            let codec = crate::codec::change_event();
            crate::dlq::scan(&cfg, &Filter::default(), |e| {
                if e.header(H_SOURCE_TOPIC) == Some(topic.as_str()) {
                    if let Some(ev) = e.payload.as_deref().and_then(|p| codec.decode(p).ok()) {
                        index.add(ev.record_id, ev.source_version);
                    }
                }
                true
            })
            .map(|()| index)
        })
        .await
        .map_err(|e| ReconcileError::Dlq(e.to_string()))?
        .map_err(|e| ReconcileError::Dlq(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_version() {
        let mut i = DlqIndex::default();
        i.add("1".into(), 5);
        i.add("1".into(), 3);
        i.add("2".into(), 1);
        assert_eq!(i.version("1"), Some(5));
        assert_eq!(i.version("2"), Some(1));
        assert_eq!(i.version("3"), None);
        assert_eq!(i.len(), 2);
    }
}
