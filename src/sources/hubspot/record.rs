//! HubSpot objects as change events, shared by the poller and the webhook ingress: which version an
//! object is at, what its tombstone looks like, and the `ChangeEvent` built from either.
//!
//! A live object's version is its modified-time property (`lastmodifieddate` for contacts,
//! `hs_lastmodifieddate` otherwise; ISO 8601 or epoch ms), else `updatedAt`. An archived object's
//! version is its `archivedAt` (a restore moves the modified time past it, so the restored row wins
//! the sink's version guard). An object known only from a deletion or merge webhook gets the event's
//! `occurredAt` and a bare record `{"id":..,"archived":true}`.

use crmflow_hubspot::wire::CrmObject;

use crate::model::{ChangeEvent, Op};
use crate::operators::hubspot::parse_date;

/// The `crm` of HubSpot events.
pub const CRM: &str = "hubspot";

/// The version of a live object, epoch ms.
pub fn version(obj: &CrmObject, modified_property: &str) -> Option<i64> {
    obj.properties
        .get(modified_property)
        .and_then(|v| v.as_deref())
        .and_then(parse_date)
        .or_else(|| parse_date(&obj.updated_at))
}

/// The version of an archived object, epoch ms: `archivedAt`, else its last update.
pub fn archived_version(obj: &CrmObject) -> Option<i64> {
    obj.archived_at
        .as_deref()
        .and_then(parse_date)
        .or_else(|| parse_date(&obj.updated_at))
}

/// The event of a live object (op UPSERT), or of an archived one (op DELETE).
pub fn object_event(
    entity: &str,
    obj: &CrmObject,
    modified_property: &str,
    mode: &str,
    changed_fields: Vec<String>,
    observed_at: i64,
) -> Option<ChangeEvent> {
    let (op, v) = if obj.archived {
        (Op::Delete, archived_version(obj)?)
    } else {
        (Op::Upsert, version(obj, modified_property)?)
    };
    let record = serde_json::to_string(obj).ok()?;
    Some(ChangeEvent::new(
        CRM,
        entity,
        &obj.id,
        op,
        v,
        observed_at,
        changed_fields,
        mode,
        record,
    ))
}

/// Ids merged into `obj` (`hs_merged_object_ids`, `;`-separated): they no longer exist anywhere
/// (not even among archived objects), so their tombstones come from the survivor.
pub fn merged_ids(obj: &CrmObject) -> Vec<String> {
    obj.properties
        .get("hs_merged_object_ids")
        .and_then(|v| v.as_deref())
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|id| !id.is_empty() && *id != obj.id)
        .map(str::to_owned)
        .collect()
}

/// The bare record of a tombstone known only by id.
pub fn bare_record(id: &str) -> String {
    serde_json::json!({ "id": id, "archived": true }).to_string()
}

/// A tombstone of an object known only by id (a deletion or merge webhook), at `version`.
pub fn bare_tombstone(
    entity: &str,
    id: &str,
    version: i64,
    mode: &str,
    observed_at: i64,
) -> ChangeEvent {
    let record = bare_record(id);
    ChangeEvent::new(
        CRM,
        entity,
        id,
        Op::Delete,
        version,
        observed_at,
        vec![],
        mode,
        record,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(props: &[(&str, Option<&str>)], archived_at: Option<&str>) -> CrmObject {
        CrmObject {
            id: "7".into(),
            properties: props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                .collect(),
            created_at: "2024-01-01T00:00:00Z".into(),
            updated_at: "2024-02-01T10:00:00Z".into(),
            archived: archived_at.is_some(),
            archived_at: archived_at.map(str::to_owned),
        }
    }

    #[test]
    fn versions_table() {
        let cases: &[(&str, CrmObject, Option<i64>)] = &[
            (
                "iso modified",
                obj(
                    &[("lastmodifieddate", Some("2024-02-01T10:00:00.123Z"))],
                    None,
                ),
                Some(1_706_781_600_123),
            ),
            (
                "epoch modified",
                obj(&[("lastmodifieddate", Some("1706781600999"))], None),
                Some(1_706_781_600_999),
            ),
            (
                "null modified falls back to updatedAt",
                obj(&[("lastmodifieddate", None)], None),
                Some(1_706_781_600_000),
            ),
            (
                "other property ignored",
                obj(&[("hs_lastmodifieddate", Some("1"))], None),
                Some(1_706_781_600_000),
            ),
        ];
        for (name, o, want) in cases {
            assert_eq!(version(o, "lastmodifieddate"), *want, "{name}");
        }
        let a = obj(&[], Some("2024-03-01T00:00:00Z"));
        assert_eq!(archived_version(&a), Some(1_709_251_200_000));
    }

    #[test]
    fn events_are_deterministic_and_archived_objects_are_deletes() {
        let live = obj(&[("lastmodifieddate", Some("1706781600999"))], None);
        let a = object_event("contact", &live, "lastmodifieddate", "webhook", vec![], 1).unwrap();
        let b = object_event("contact", &live, "lastmodifieddate", "poll", vec![], 2).unwrap();
        assert_eq!(
            a.event_id, b.event_id,
            "same version, same event id whoever saw it"
        );
        assert_eq!(
            (a.op, a.source_version, a.record_id.as_str()),
            (Op::Upsert, 1_706_781_600_999, "7")
        );
        let gone = obj(&[], Some("2024-03-01T00:00:00Z"));
        let d = object_event("contact", &gone, "lastmodifieddate", "poll", vec![], 1).unwrap();
        assert_eq!((d.op, d.source_version), (Op::Delete, 1_709_251_200_000));
        let mut survivor = live.clone();
        survivor
            .properties
            .insert("hs_merged_object_ids".into(), Some("3; 4;7".into()));
        assert_eq!(merged_ids(&survivor), ["3", "4"]);
        assert!(merged_ids(&live).is_empty());
        let t = bare_tombstone("contact", "9", 5, "webhook", 6);
        assert_eq!(
            (t.op, t.record_id.as_str(), t.source_version),
            (Op::Delete, "9", 5)
        );
        assert!(t.record.contains("\"archived\":true"));
    }
}
