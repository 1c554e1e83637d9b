//! What a batch of HubSpot webhook events asks for, decided without I/O: which objects to re-read
//! (by batch read) and which ids are gone (tombstones), per configured object.
//!
//! | event | action |
//! |---|---|
//! | `*.creation`, `*.propertyChange`, `*.restore`, `*.associationChange` | re-read the object (a property change carries one property; the pipeline wants the whole record) |
//! | `*.deletion`, `contact.privacyDeletion` | tombstone at `occurredAt` |
//! | `*.merge` | tombstones for `mergedObjectIds` (except the primary) at `occurredAt`; re-read `primaryObjectId` |
//!
//! The object is the subscription type's prefix (`contact`, `deal`) or, for the generic `object.*`
//! form, `objectTypeId`; events of objects the configuration does not read are counted as ignored.
//! An id both re-read and tombstoned in one batch gets both: the versions decide downstream.

use std::collections::{BTreeMap, BTreeSet};

use crmflow_hubspot::wire::WebhookEvent;

use crate::config::HubspotConfig;

/// The de-duplication key of a webhook event: HubSpot's `eventId` alone is not unique.
pub type EventKey = (u64, u64, i64, u64);

/// `(subscriptionId, eventId, occurredAt, objectId)`.
pub fn event_key(e: &WebhookEvent) -> EventKey {
    (e.subscription_id, e.event_id, e.occurred_at, e.object_id)
}

/// What to do for one configured object (index into `hubspot.objects`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ObjectPlan {
    /// Ids to read now.
    pub reads: BTreeSet<String>,
    /// Ids gone, with the newest time they were seen gone (epoch ms).
    pub tombstones: BTreeMap<String, i64>,
    /// Properties reported changed per id (the event's `changed_fields`).
    pub changed: BTreeMap<String, BTreeSet<String>>,
}

/// The plan of one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// By index into `hubspot.objects`.
    pub objects: BTreeMap<usize, ObjectPlan>,
    /// Events of objects or kinds we do not read.
    pub ignored: usize,
}

/// What an event's subscription type asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Delete,
    Merge,
    Ignore,
}

fn kind(action: &str) -> Kind {
    match action {
        "creation" | "propertyChange" | "restore" | "associationChange" => Kind::Read,
        "deletion" | "privacyDeletion" => Kind::Delete,
        "merge" => Kind::Merge,
        _ => Kind::Ignore,
    }
}

/// The configured object an event is about.
fn object_index(cfg: &HubspotConfig, e: &WebhookEvent) -> Option<usize> {
    let (prefix, _) = e.subscription_type.split_once('.')?;
    let name = if prefix == "object" {
        e.object_type_id.as_deref()?
    } else {
        prefix
    };
    cfg.objects.iter().position(|o| {
        o.object_type.eq_ignore_ascii_case(name)
            || o.entity.eq_ignore_ascii_case(name)
            || o.object_type_id
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(name))
    })
}

/// Plans `events` (already de-duplicated) against the configured objects.
pub fn plan<'a>(cfg: &HubspotConfig, events: impl IntoIterator<Item = &'a WebhookEvent>) -> Plan {
    let mut out = Plan::default();
    for e in events {
        let action = e.subscription_type.split_once('.').map_or("", |(_, a)| a);
        let k = kind(action);
        let Some(idx) = object_index(cfg, e).filter(|_| k != Kind::Ignore) else {
            out.ignored += 1;
            continue;
        };
        let p = out.objects.entry(idx).or_default();
        let mut gone = |id: u64| {
            let v = p.tombstones.entry(id.to_string()).or_insert(e.occurred_at);
            *v = (*v).max(e.occurred_at);
        };
        match k {
            Kind::Read => {
                let id = e.object_id.to_string();
                if let Some(prop) = &e.property_name {
                    p.changed
                        .entry(id.clone())
                        .or_default()
                        .insert(prop.clone());
                }
                p.reads.insert(id);
            }
            Kind::Delete => gone(e.object_id),
            Kind::Merge => {
                let primary = e
                    .primary_object_id
                    .or(e.new_object_id)
                    .unwrap_or(e.object_id);
                let merged: Vec<u64> = e
                    .merged_object_ids
                    .iter()
                    .flatten()
                    .copied()
                    .filter(|id| *id != primary)
                    .collect();
                for id in merged {
                    gone(id);
                }
                p.reads.insert(primary.to_string());
            }
            Kind::Ignore => unreachable!("filtered above"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HubspotObject;

    fn cfg() -> HubspotConfig {
        HubspotConfig {
            objects: HubspotObject::contacts_and_jobs("2-3001"),
            ..Default::default()
        }
    }

    fn ev(kind: &str, object_id: u64, occurred_at: i64) -> WebhookEvent {
        WebhookEvent {
            event_id: 1,
            subscription_id: 10,
            portal_id: 62515,
            app_id: 54321,
            occurred_at,
            subscription_type: kind.into(),
            attempt_number: 0,
            object_id,
            object_type_id: None,
            property_name: None,
            property_value: None,
            change_flag: None,
            change_source: None,
            source_id: None,
            primary_object_id: None,
            merged_object_ids: None,
            new_object_id: None,
            number_of_properties_moved: None,
        }
    }

    #[test]
    fn plan_table() {
        let mut change = ev("contact.propertyChange", 5, 100);
        change.property_name = Some("email".into());
        let mut merge = ev("contact.merge", 7, 300);
        merge.primary_object_id = Some(7);
        merge.merged_object_ids = Some(vec![7, 8, 9]);
        let mut job = ev("object.creation", 42, 50);
        job.object_type_id = Some("2-3001".into());
        let mut other_obj = ev("object.creation", 43, 50);
        other_obj.object_type_id = Some("2-9999".into());
        let events = vec![
            ev("contact.creation", 5, 90),
            change,
            ev("contact.deletion", 6, 200),
            ev("contact.deletion", 6, 150),
            merge,
            ev("contact.restore", 11, 400),
            ev("contact.privacyDeletion", 12, 500),
            job,
            other_obj,
            ev("company.creation", 1, 1),
            ev("contact.somethingNew", 1, 1),
        ];
        let p = plan(&cfg(), &events);
        let contacts = &p.objects[&0];
        assert_eq!(
            contacts
                .reads
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["11", "5", "7"]
        );
        assert_eq!(
            contacts.tombstones,
            [
                ("6".into(), 200),
                ("8".into(), 300),
                ("9".into(), 300),
                ("12".into(), 500)
            ]
            .into_iter()
            .collect()
        );
        assert_eq!(contacts.changed["5"].iter().collect::<Vec<_>>(), ["email"]);
        assert_eq!(p.objects[&1].reads.iter().collect::<Vec<_>>(), ["42"]);
        assert_eq!(p.ignored, 3, "unknown object type, company, unknown action");
    }

    #[test]
    fn event_keys_tell_apart_reused_event_ids() {
        let a = ev("contact.creation", 5, 90);
        let mut b = a.clone();
        b.object_id = 6;
        assert_ne!(event_key(&a), event_key(&b));
        let mut c = a.clone();
        c.attempt_number = 3;
        assert_eq!(event_key(&a), event_key(&c), "a retry is the same event");
    }
}
