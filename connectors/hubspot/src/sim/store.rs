//! The simulated account's records and the one write path that changes them.
//!
//! Each object type has an [`ObjectStore`]: the ground truth (`records`, live and archived), the ids merged
//! away (`merged_into`, so a read of a merged-away id finds the survivor, as HubSpot does for contacts), and
//! the **search index**, a separate copy that receives each write only `index_lag` later (HubSpot's search
//! trails writes by seconds) and never holds archived objects. Every write returns the [`Change`]s it made, which
//! the webhook dispatcher turns into events.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::ApiError;
use super::schema::TypeDef;
use crate::wire::{CrmObject, Properties};

/// One object.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Object id.
    pub id: u64,
    /// Stored property values (absent = null); ids and timestamps are computed from the fields below.
    pub props: BTreeMap<String, String>,
    /// Creation time, epoch ms.
    pub created_ms: i64,
    /// Last modification time, epoch ms.
    pub updated_ms: i64,
    /// Archived (deleted).
    pub archived: bool,
    /// When it was archived, epoch ms.
    pub archived_ms: Option<i64>,
}

/// What a write did, for webhooks.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    /// A new object.
    Created,
    /// Properties changed: (name, new value).
    Updated(Vec<(String, Option<String>)>),
    /// Archived.
    Archived,
    /// Restored from the archive.
    Restored,
    /// `merged` were merged into this object (they no longer exist).
    Merged {
        /// Ids merged away.
        merged: Vec<u64>,
        /// Properties copied from them.
        moved: u32,
    },
}

/// One change to one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Index of the object type in [`Db::types`].
    pub type_idx: usize,
    /// Object id (the survivor for merges).
    pub id: u64,
    /// When, epoch ms.
    pub at_ms: i64,
    /// What happened.
    pub kind: ChangeKind,
    /// `changeSource` of the event (`CRM_UI`, `API`, `IMPORT`).
    pub source: &'static str,
}

/// The records of one object type.
#[derive(Debug, Default)]
pub struct ObjectStore {
    /// Ground truth: every existing object, archived ones included.
    pub records: BTreeMap<u64, Arc<Record>>,
    /// Merged-away id → the id it was merged into.
    pub merged_into: BTreeMap<u64, u64>,
    /// What search sees: live objects as of `index_lag` ago.
    pub index: BTreeMap<u64, Arc<Record>>,
    /// Writes not yet visible to search: (due, id, new version or `None` to remove).
    pub(crate) pending: VecDeque<(Instant, u64, Option<Arc<Record>>)>,
    /// Next id to assign.
    pub next_id: u64,
    /// Bumped whenever `index` changes, so cached search results know they are stale.
    pub index_generation: u64,
}

impl ObjectStore {
    /// Follows merges from `id` to the object that holds it now.
    pub fn resolve(&self, id: u64) -> u64 {
        let mut id = id;
        for _ in 0..32 {
            match self.merged_into.get(&id) {
                Some(&to) => id = to,
                None => break,
            }
        }
        id
    }
}

/// Every object type's records.
#[derive(Debug)]
pub struct Db {
    /// Type definitions, in a fixed order (contacts, deals, jobs).
    pub types: Vec<TypeDef>,
    /// One store per type, same order.
    pub stores: Vec<ObjectStore>,
    /// How long a write takes to reach search.
    pub index_lag: Duration,
    /// Latest timestamp handed out, so write times never go backwards.
    last_ms: i64,
}

/// Wall-clock epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// ISO 8601 with milliseconds and `Z`, as HubSpot writes times.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Epoch ms from epoch-ms digits or ISO 8601 (`2024-01-10T15:03:22.123Z`, or a bare date).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

impl Db {
    /// A database of `types` holding `stores` (already filled and indexed).
    pub fn new(types: Vec<TypeDef>, stores: Vec<ObjectStore>, index_lag: Duration) -> Self {
        let last_ms = stores
            .iter()
            .flat_map(|s| s.records.values().map(|r| r.updated_ms))
            .max()
            .unwrap_or(0);
        Self {
            types,
            stores,
            index_lag,
            last_ms,
        }
    }

    /// The type index of a path name (`contacts`, `0-1`, `2-12345678`, `jobs`, `p62515_jobs`, ...).
    pub fn type_idx(&self, name: &str) -> Result<usize, ApiError> {
        self.types
            .iter()
            .position(|t| t.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
            .ok_or_else(|| ApiError::unknown_object_type(name))
    }

    /// The store of a path name.
    pub fn store(&self, name: &str) -> Result<&ObjectStore, ApiError> {
        Ok(&self.stores[self.type_idx(name)?])
    }

    /// A record by id (following merges), archived or not.
    pub fn get(&self, t: usize, id: u64) -> Option<&Arc<Record>> {
        let s = &self.stores[t];
        s.records.get(&s.resolve(id))
    }

    fn stamp(&mut self) -> i64 {
        self.last_ms = now_ms().max(self.last_ms);
        self.last_ms
    }

    /// Whether some write is due to reach search.
    pub fn index_due(&self, now: Instant) -> bool {
        self.stores
            .iter()
            .any(|s| s.pending.front().is_some_and(|(due, ..)| *due <= now))
    }

    /// Applies every write due by `now` to the search index.
    pub fn refresh_index(&mut self, now: Instant) {
        for s in &mut self.stores {
            while s.pending.front().is_some_and(|(due, ..)| *due <= now) {
                if let Some((_, id, rec)) = s.pending.pop_front() {
                    s.index_generation += 1;
                    match rec {
                        Some(r) => {
                            s.index.insert(id, r);
                        }
                        None => {
                            s.index.remove(&id);
                        }
                    }
                }
            }
        }
    }

    /// Makes every pending write visible to search now.
    pub fn flush_index(&mut self) {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        self.refresh_index(far);
    }

    /// Writes not yet visible to search.
    pub fn pending_index_writes(&self) -> usize {
        self.stores.iter().map(|s| s.pending.len()).sum()
    }

    fn put(&mut self, t: usize, rec: Record) {
        let lag = self.index_lag;
        let s = &mut self.stores[t];
        let arc = Arc::new(rec);
        s.records.insert(arc.id, arc.clone());
        let visible = (!arc.archived).then(|| arc.clone());
        if lag.is_zero() && s.pending.is_empty() {
            s.index_generation += 1;
            match visible {
                Some(r) => s.index.insert(r.id, r),
                None => s.index.remove(&arc.id),
            };
        } else {
            s.pending.push_back((Instant::now() + lag, arc.id, visible));
        }
    }

    fn check_props(
        &self,
        t: usize,
        props: &BTreeMap<String, Option<String>>,
    ) -> Result<(), ApiError> {
        let def = &self.types[t];
        for name in props.keys() {
            match def.prop(name) {
                None => {
                    return Err(ApiError::validation(format!(
                        "Property values were not valid: Property \"{name}\" does not exist"
                    )))
                }
                Some(p) if p.calculated => {
                    return Err(ApiError::validation(format!(
                        "Property values were not valid: \"{name}\" is a read only property; its value cannot be set."
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Creates an object; `at_ms` overrides the time (bulk imports share one).
    pub fn create(
        &mut self,
        t: usize,
        props: BTreeMap<String, Option<String>>,
        at_ms: Option<i64>,
        source: &'static str,
    ) -> Result<Change, ApiError> {
        self.check_props(t, &props)?;
        let at = at_ms.unwrap_or_else(|| self.stamp());
        let id = {
            let s = &mut self.stores[t];
            let id = s.next_id;
            s.next_id += 1;
            id
        };
        let rec = Record {
            id,
            props: props
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect(),
            created_ms: at,
            updated_ms: at,
            archived: false,
            archived_ms: None,
        };
        self.put(t, rec);
        Ok(Change {
            type_idx: t,
            id,
            at_ms: at,
            kind: ChangeKind::Created,
            source,
        })
    }

    fn live(&self, t: usize, id: u64) -> Result<Record, ApiError> {
        match self.stores[t].records.get(&id) {
            Some(r) if !r.archived => Ok((**r).clone()),
            _ => Err(ApiError::not_found(format!(
                "resource not found: no live {} with id {id}",
                self.types[t].name
            ))),
        }
    }

    /// Changes properties (`None` clears one); `None` when nothing changed (HubSpot keeps the modified time).
    pub fn update(
        &mut self,
        t: usize,
        id: u64,
        props: BTreeMap<String, Option<String>>,
        source: &'static str,
    ) -> Result<Option<Change>, ApiError> {
        self.check_props(t, &props)?;
        let id = self.stores[t].resolve(id);
        let mut rec = self.live(t, id)?;
        let mut changed = Vec::new();
        for (k, v) in props {
            let old = rec.props.get(&k).cloned();
            if old == v {
                continue;
            }
            match &v {
                Some(val) => rec.props.insert(k.clone(), val.clone()),
                None => rec.props.remove(&k),
            };
            changed.push((k, v));
        }
        if changed.is_empty() {
            return Ok(None);
        }
        let at = self.stamp();
        rec.updated_ms = at;
        self.put(t, rec);
        Ok(Some(Change {
            type_idx: t,
            id,
            at_ms: at,
            kind: ChangeKind::Updated(changed),
            source,
        }))
    }

    /// Archives (deletes) an object.
    pub fn archive(&mut self, t: usize, id: u64, source: &'static str) -> Result<Change, ApiError> {
        let mut rec = self.live(t, id)?;
        let at = self.stamp();
        rec.archived = true;
        rec.archived_ms = Some(at);
        rec.updated_ms = at;
        self.put(t, rec);
        Ok(Change {
            type_idx: t,
            id,
            at_ms: at,
            kind: ChangeKind::Archived,
            source,
        })
    }

    /// Deletes an object permanently (a GDPR deletion, or an archived object purged after 90 days): it
    /// leaves every listing, archived ones included, and no webhook is sent. `true` when it existed.
    pub fn purge(&mut self, t: usize, id: u64) -> bool {
        let lag = self.index_lag;
        let s = &mut self.stores[t];
        if s.records.remove(&id).is_none() {
            return false;
        }
        if lag.is_zero() && s.pending.is_empty() {
            s.index_generation += 1;
            s.index.remove(&id);
        } else {
            s.pending.push_back((Instant::now() + lag, id, None));
        }
        true
    }

    /// Restores an archived object.
    pub fn restore(&mut self, t: usize, id: u64, source: &'static str) -> Result<Change, ApiError> {
        let mut rec = match self.stores[t].records.get(&id) {
            Some(r) if r.archived => (**r).clone(),
            _ => {
                return Err(ApiError::not_found(format!(
                    "resource not found: no archived {} with id {id}",
                    self.types[t].name
                )))
            }
        };
        let at = self.stamp();
        rec.archived = false;
        rec.archived_ms = None;
        rec.updated_ms = at;
        self.put(t, rec);
        Ok(Change {
            type_idx: t,
            id,
            at_ms: at,
            kind: ChangeKind::Restored,
            source,
        })
    }

    /// Merges `secondary` into `primary`: the primary keeps its values and takes the secondary's where it
    /// has none, records the merged id in `hs_merged_object_ids`; the secondary id disappears (reads of it
    /// find the primary).
    pub fn merge(
        &mut self,
        t: usize,
        primary: u64,
        secondary: u64,
        source: &'static str,
    ) -> Result<Change, ApiError> {
        if primary == secondary {
            return Err(ApiError::validation("Cannot merge an object with itself"));
        }
        let mut p = self.live(t, primary)?;
        let s = self.live(t, secondary)?;
        let mut moved = 0;
        for (k, v) in &s.props {
            if k == "hs_merged_object_ids" {
                continue;
            }
            if !p.props.contains_key(k) {
                p.props.insert(k.clone(), v.clone());
                moved += 1;
            }
        }
        let mut merged: Vec<String> = p
            .props
            .get("hs_merged_object_ids")
            .map(|v| v.split(';').map(str::to_string).collect())
            .unwrap_or_default();
        merged.push(secondary.to_string());
        if let Some(m) = s.props.get("hs_merged_object_ids") {
            merged.extend(m.split(';').map(str::to_string));
        }
        p.props
            .insert("hs_merged_object_ids".into(), merged.join(";"));
        let at = self.stamp();
        p.updated_ms = at;
        let lag = self.index_lag;
        {
            let st = &mut self.stores[t];
            st.records.remove(&secondary);
            st.merged_into.insert(secondary, primary);
            if lag.is_zero() && st.pending.is_empty() {
                st.index_generation += 1;
                st.index.remove(&secondary);
            } else {
                st.pending
                    .push_back((Instant::now() + lag, secondary, None));
            }
        }
        self.put(t, p);
        Ok(Change {
            type_idx: t,
            id: primary,
            at_ms: at,
            kind: ChangeKind::Merged {
                merged: vec![secondary],
                moved,
            },
            source,
        })
    }

    /// The value of a property as the API shows it (ids and times computed).
    pub fn value(def: &TypeDef, r: &Record, name: &str) -> Option<String> {
        if name == "hs_object_id" {
            Some(r.id.to_string())
        } else if name == def.created_prop {
            Some(iso(r.created_ms))
        } else if name == def.modified_prop {
            Some(iso(r.updated_ms))
        } else {
            r.props.get(name).cloned()
        }
    }

    /// The property names a read returns: the defaults when none were asked for, else the known ones asked for
    /// plus the id and the two timestamps (unknown names are ignored, as HubSpot does).
    pub fn selection<'a>(def: &'a TypeDef, requested: &'a [String]) -> Vec<&'a str> {
        if requested.is_empty() {
            return def.default_props.clone();
        }
        let mut out: Vec<&str> = requested
            .iter()
            .map(String::as_str)
            .filter(|n| def.prop(n).is_some())
            .collect();
        for always in [def.created_prop, def.modified_prop, "hs_object_id"] {
            out.push(always);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// An object in HubSpot's JSON shape with the selected properties.
    pub fn render(def: &TypeDef, r: &Record, sel: &[&str], with_archived_at: bool) -> CrmObject {
        let properties: Properties = sel
            .iter()
            .map(|n| ((*n).to_string(), Self::value(def, r, n)))
            .collect();
        CrmObject {
            id: r.id.to_string(),
            properties,
            created_at: iso(r.created_ms),
            updated_at: iso(r.updated_ms),
            archived: r.archived,
            archived_at: if with_archived_at {
                r.archived_ms.map(iso)
            } else {
                None
            },
        }
    }

    /// Ground truth of one object: every property, archived flags.
    pub fn render_all(def: &TypeDef, r: &Record) -> CrmObject {
        let sel: Vec<&str> = def.props.iter().map(|p| p.name).collect();
        Self::render(def, r, &sel, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::schema::types;

    fn db(lag: Duration) -> Db {
        let types = types("2-1", 1);
        let stores = types
            .iter()
            .map(|_| ObjectStore {
                next_id: 1,
                ..Default::default()
            })
            .collect();
        Db::new(types, stores, lag)
    }

    fn props(kv: &[(&str, &str)]) -> BTreeMap<String, Option<String>> {
        kv.iter()
            .map(|(k, v)| ((*k).to_string(), Some((*v).to_string())))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn writes_reach_search_after_the_lag_and_archives_leave_it() {
        let mut d = db(Duration::from_secs(2));
        let c = d
            .create(0, props(&[("email", "a@b.c")]), None, "API")
            .expect("create");
        assert!(d.stores[0].records.contains_key(&c.id));
        assert!(!d.stores[0].index.contains_key(&c.id), "not searchable yet");
        tokio::time::advance(Duration::from_millis(1_999)).await;
        d.refresh_index(Instant::now());
        assert!(!d.stores[0].index.contains_key(&c.id));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(d.index_due(Instant::now()));
        d.refresh_index(Instant::now());
        assert!(d.stores[0].index.contains_key(&c.id));
        d.archive(0, c.id, "API").expect("archive");
        d.flush_index();
        assert!(!d.stores[0].index.contains_key(&c.id));
        assert!(d.stores[0].records[&c.id].archived);
        d.restore(0, c.id, "API").expect("restore");
        d.flush_index();
        assert!(d.stores[0].index.contains_key(&c.id));
    }

    #[test]
    fn merge_removes_the_secondary_and_reads_follow_it() {
        let mut d = db(Duration::ZERO);
        let a = d
            .create(0, props(&[("email", "a@x")]), None, "API")
            .expect("a")
            .id;
        let b = d
            .create(0, props(&[("email", "b@x"), ("phone", "1")]), None, "API")
            .expect("b")
            .id;
        let ch = d.merge(0, a, b, "CRM_UI").expect("merge");
        assert_eq!(
            ch.kind,
            ChangeKind::Merged {
                merged: vec![b],
                moved: 1
            }
        );
        assert!(!d.stores[0].records.contains_key(&b));
        assert!(!d.stores[0].index.contains_key(&b));
        let r = d.get(0, b).expect("follows the merge");
        assert_eq!(r.id, a);
        assert_eq!(r.props["phone"], "1");
        assert_eq!(r.props["email"], "a@x", "the primary keeps its values");
        assert_eq!(r.props["hs_merged_object_ids"], b.to_string());
    }

    #[test]
    fn updates_without_a_difference_change_nothing_and_unknown_properties_are_refused() {
        let mut d = db(Duration::ZERO);
        let a = d
            .create(0, props(&[("email", "a@x")]), Some(5), "API")
            .expect("a")
            .id;
        assert_eq!(
            d.update(0, a, props(&[("email", "a@x")]), "API")
                .expect("ok"),
            None
        );
        assert_eq!(d.stores[0].records[&a].updated_ms, 5);
        assert!(d.update(0, a, props(&[("nope", "1")]), "API").is_err());
        assert!(d
            .update(0, a, props(&[("hs_object_id", "1")]), "API")
            .is_err());
        let ch = d
            .update(0, a, [("email".to_string(), None)].into(), "API")
            .expect("ok")
            .expect("changed");
        assert_eq!(ch.kind, ChangeKind::Updated(vec![("email".into(), None)]));
    }

    #[test]
    fn times_round_trip() {
        assert_eq!(iso(1_704_899_002_123), "2024-01-10T15:03:22.123Z");
        assert_eq!(
            parse_time("2024-01-10T15:03:22.123Z"),
            Some(1_704_899_002_123)
        );
        assert_eq!(parse_time("1704899002123"), Some(1_704_899_002_123));
        assert_eq!(parse_time("2024-01-10"), Some(1_704_844_800_000));
        assert_eq!(parse_time("soon"), None);
    }
}
