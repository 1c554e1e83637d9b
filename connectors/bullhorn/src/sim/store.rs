//! The in-memory entity store: records of every simulated type, the `(dateLastModified, id)` index, the write
//! path and query execution.
//!
//! Records are kept as JSON maps in their *stored* shape: scalars as Bullhorn sends them, to-one references as
//! `{"id":N}`, to-many associations as `{"total":N,"data":[{"id":..}]}`; `fields.rs` resolves references at
//! read time. `id`, `dateLastModified` and `isDeleted` are also cached on the struct because almost every query
//! filters or sorts on them. Every write goes through [`Db::insert`], [`Db::update`] or [`Db::delete`], which
//! move `dateLastModified` forward (never backwards, even if the wall clock does) and return a [`Change`] that
//! the caller feeds to the event subscriptions.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::filter::{Expr, Path, Special};
use super::schema::{EntityDef, ENTITIES};
use crate::wire::{ChangeType, EntityEventType};

/// Wire type of one entity field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Integer id.
    Int,
    /// String (Bullhorn `Strings`).
    Str,
    /// Integer or decimal number.
    Number,
    /// Boolean.
    Bool,
    /// Timestamp, epoch milliseconds.
    Date,
    /// Address composite (`address1, city, state, zip, countryID, ...`).
    Address,
    /// Reference to one record of the named entity.
    ToOne(&'static str),
    /// Association with many records of the named entity.
    ToMany(&'static str),
}

/// Sub-fields of the Address composite.
pub const ADDRESS_FIELDS: &[&str] = &[
    "address1",
    "address2",
    "city",
    "countryCode",
    "countryID",
    "countryName",
    "state",
    "zip",
];

/// Entity types whose DELETE is a soft delete (`isDeleted=true`); every other type refuses deletes.
const SOFT_DELETABLE: &[&str] = &["Candidate", "JobOrder", "ClientContact"];
/// Entity types the REST API cannot write (reference data).
const IMMUTABLE: &[&str] = &["Skill", "Category", "CorporateUser"];

impl EntityDef {
    /// Position of `field` in [`EntityDef::fields`].
    pub fn index(&self, field: &str) -> Option<usize> {
        self.fields.binary_search_by(|(n, _)| (*n).cmp(field)).ok()
    }

    /// Type of `field`, if the entity has it.
    pub fn field(&self, field: &str) -> Option<FieldType> {
        self.fields
            .binary_search_by(|(n, _)| (*n).cmp(field))
            .ok()
            .map(|i| self.fields[i].1)
    }
}

/// Looks up a simulated entity type by its Bullhorn name.
pub fn entity_def(name: &str) -> Option<&'static EntityDef> {
    ENTITIES.iter().find(|d| d.name == name)
}

/// One stored record.
#[derive(Debug, Clone)]
pub struct Record {
    /// Record id (also in `fields["id"]`).
    pub id: i64,
    /// `dateLastModified`, epoch ms (also in `fields`).
    pub modified: i64,
    /// Soft-delete flag (also in `fields["isDeleted"]`).
    pub deleted: bool,
    /// Every populated field in stored shape.
    pub fields: Map<String, Value>,
    /// The same fields packed for rendering (see [`Packed`]).
    pub packed: Packed,
}

/// Values longer than this are not duplicated in [`Packed`] (memory over speed for resumes).
const RAW_MAX: usize = 4096;

/// What a [`Packed`] slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    /// Pre-serialized JSON in `buf`.
    Json,
    /// A value too long to duplicate: serialize it from `fields`.
    Long,
    /// Reference ids in `ids`.
    Ids,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    idx: u16,
    kind: SlotKind,
    start: u32,
    len: u32,
}

/// A record's fields packed for the search hot path: scalar values pre-serialized as JSON in one buffer and
/// reference ids in one array, indexed by schema position. Rendering a page then copies bytes instead of
/// walking JSON maps, escaping strings and chasing one heap allocation per value.
#[derive(Debug, Clone, Default)]
pub struct Packed {
    slots: Box<[Slot]>,
    buf: Box<[u8]>,
    ids: Box<[i64]>,
}

/// A packed field.
pub enum PackedValue<'a> {
    /// Pre-serialized JSON.
    Json(&'a [u8]),
    /// Too long to pre-serialize; read `fields`.
    Long,
    /// Referenced ids (one for a to-one).
    Ids(&'a [i64]),
}

impl Packed {
    fn build(def: &EntityDef, fields: &Map<String, Value>) -> Self {
        let mut entries: Vec<(u16, &Value)> = fields
            .iter()
            .filter(|(_, v)| !v.is_null())
            .filter_map(|(name, v)| def.index(name).map(|i| (i as u16, v)))
            .collect();
        entries.sort_by_key(|(i, _)| *i);
        let mut slots = Vec::with_capacity(entries.len());
        let mut buf = Vec::new();
        let mut ids = Vec::new();
        for (idx, v) in entries {
            match def.fields[idx as usize].1 {
                FieldType::ToOne(_) | FieldType::ToMany(_) => {
                    let start = ids.len();
                    match v.get("data").and_then(Value::as_array) {
                        Some(members) => ids.extend(
                            members
                                .iter()
                                .filter_map(|m| m.get("id").and_then(Value::as_i64)),
                        ),
                        None => ids.extend(v.get("id").and_then(Value::as_i64)),
                    }
                    slots.push(Slot {
                        idx,
                        kind: SlotKind::Ids,
                        start: start as u32,
                        len: (ids.len() - start) as u32,
                    });
                }
                _ => {
                    let start = buf.len();
                    // Serializing a Value into a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut buf, v);
                    let kind = if buf.len() - start > RAW_MAX {
                        buf.truncate(start);
                        SlotKind::Long
                    } else {
                        SlotKind::Json
                    };
                    slots.push(Slot {
                        idx,
                        kind,
                        start: start as u32,
                        len: (buf.len() - start) as u32,
                    });
                }
            }
        }
        Self {
            slots: slots.into_boxed_slice(),
            buf: buf.into_boxed_slice(),
            ids: ids.into_boxed_slice(),
        }
    }

    /// The field at schema position `idx`, `None` when unset.
    pub fn get(&self, idx: u16) -> Option<PackedValue<'_>> {
        let s = self.slots[self.slots.binary_search_by_key(&idx, |s| s.idx).ok()?];
        let (a, b) = (s.start as usize, (s.start + s.len) as usize);
        Some(match s.kind {
            SlotKind::Json => PackedValue::Json(&self.buf[a..b]),
            SlotKind::Long => PackedValue::Long,
            SlotKind::Ids => PackedValue::Ids(&self.ids[a..b]),
        })
    }
}

impl Record {
    /// Value stored for `field`, `None` when unset.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field).filter(|v| !v.is_null())
    }
}

/// All records of one entity type, with the index by modification time.
#[derive(Debug)]
pub struct EntityStore {
    /// Schema of the type.
    pub def: &'static EntityDef,
    /// Records by id.
    pub records: BTreeMap<i64, Record>,
    /// `(dateLastModified, id)` of every record → its `isDeleted`: incremental polls are range scans of this
    /// index, and filters on `id`/`dateLastModified`/`isDeleted` alone are evaluated without touching records.
    pub by_modified: BTreeMap<(i64, i64), bool>,
    /// Next id handed out by an insert.
    pub next_id: i64,
}

impl EntityStore {
    fn new(def: &'static EntityDef) -> Self {
        Self {
            def,
            records: BTreeMap::new(),
            by_modified: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// Adds a fully-formed record (used by the seed generator; bypasses events).
    pub fn put(&mut self, mut fields: Map<String, Value>) {
        let id = fields
            .get("id")
            .and_then(Value::as_i64)
            .unwrap_or(self.next_id);
        let modified = fields
            .get("dateLastModified")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let deleted = fields
            .get("isDeleted")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        fields.insert("id".into(), id.into());
        if let Some(old) = self.records.get(&id) {
            self.by_modified.remove(&(old.modified, id));
        }
        self.by_modified.insert((modified, id), deleted);
        self.next_id = self.next_id.max(id + 1);
        let packed = Packed::build(self.def, &fields);
        self.records.insert(
            id,
            Record {
                id,
                modified,
                deleted,
                fields,
                packed,
            },
        );
    }
}

/// What a write did; fed to event subscriptions and turned into the REST answer.
#[derive(Debug, Clone)]
pub struct Change {
    /// Entity name.
    pub entity: &'static str,
    /// Record id.
    pub id: i64,
    /// REST `changeType`.
    pub change_type: ChangeType,
    /// Event kind (a soft delete may be configured to surface as UPDATED).
    pub event: EntityEventType,
    /// Fields the write set (UPDATED events).
    pub updated: Vec<String>,
    /// New `dateLastModified`.
    pub timestamp: i64,
    /// Owner id, reported as `PERSON_ID` in event metadata.
    pub person_id: i64,
    /// The fields written, echoed as `data` in the REST answer.
    pub data: Value,
}

/// How a soft delete is reported to event subscriptions (Bullhorn behaviour is unconfirmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "sim", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum SoftDeleteEvent {
    /// A DELETED event.
    #[default]
    Deleted,
    /// An UPDATED event with `updatedProperties:["isDeleted"]`.
    Updated,
}

/// The whole simulated database.
#[derive(Debug)]
pub struct Db {
    /// One store per simulated entity type, in [`ENTITIES`] order.
    pub stores: Vec<EntityStore>,
    /// Largest `dateLastModified` handed out so far: writes never go below it.
    pub clock: i64,
    /// Event kind of soft deletes.
    pub soft_delete_event: SoftDeleteEvent,
}

/// Sort key of a search or query: a field path and a direction.
#[derive(Debug, Clone)]
pub struct SortKey {
    /// Field to sort by.
    pub path: Path,
    /// `-field` sorts descending.
    pub desc: bool,
}

/// Result of [`Db::execute`]: the page of records and the number of matches overall.
pub struct Page<'a> {
    /// Number of records matching the filter.
    pub total: usize,
    /// The records of the requested page, in order.
    pub records: Vec<&'a Record>,
}

/// Current wall clock, epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Db {
    /// An empty database with every simulated type.
    pub fn new(soft_delete_event: SoftDeleteEvent) -> Self {
        Self {
            stores: ENTITIES.iter().map(EntityStore::new).collect(),
            clock: 0,
            soft_delete_event,
        }
    }

    /// Store of `entity`, or Bullhorn's 404 for an unknown type.
    pub fn store(&self, entity: &str) -> Result<&EntityStore, ApiError> {
        self.stores
            .iter()
            .find(|s| s.def.name == entity)
            .ok_or_else(|| ApiError::unknown_entity(entity))
    }

    fn store_mut(&mut self, entity: &str) -> Result<&mut EntityStore, ApiError> {
        self.stores
            .iter_mut()
            .find(|s| s.def.name == entity)
            .ok_or_else(|| ApiError::unknown_entity(entity))
    }

    /// Record of `entity` with `id`, if both exist.
    pub fn record(&self, entity: &str, id: i64) -> Option<&Record> {
        self.store(entity).ok()?.records.get(&id)
    }

    /// Next `dateLastModified`: the wall clock, but never earlier than anything handed out before, so an
    /// incremental poller that saw timestamp T never misses a later write stamped below T.
    fn tick(&mut self) -> i64 {
        self.clock = self.clock.max(now_ms());
        self.clock
    }

    /// Checks and converts the client-supplied fields of a write into stored shape.
    fn validate_body(
        &self,
        def: &'static EntityDef,
        body: &Map<String, Value>,
        allow_is_deleted: bool,
    ) -> Result<Map<String, Value>, ApiError> {
        let mut out = Map::new();
        for (name, value) in body {
            let ty = def.field(name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid field '{name}' for entity type '{}'",
                    def.name
                ))
            })?;
            if matches!(name.as_str(), "id" | "dateAdded" | "dateLastModified")
                || (name == "isDeleted" && !allow_is_deleted)
            {
                return Err(ApiError::bad_request(format!(
                    "Field '{name}' of '{}' is read-only",
                    def.name
                )));
            }
            let v = self.convert(def.name, name, ty, value)?;
            out.insert(name.clone(), v);
        }
        Ok(out)
    }

    fn convert(
        &self,
        entity: &str,
        name: &str,
        ty: FieldType,
        value: &Value,
    ) -> Result<Value, ApiError> {
        let wrong = |what: &str| {
            ApiError::bad_request(format!(
                "Invalid value for '{entity}.{name}': expected {what}, got {value}"
            ))
        };
        if value.is_null() {
            return Ok(Value::Null);
        }
        Ok(match ty {
            FieldType::Str => match value {
                Value::String(_) => value.clone(),
                Value::Number(n) => Value::String(n.to_string()),
                _ => return Err(wrong("a string")),
            },
            FieldType::Int | FieldType::Date => value
                .as_i64()
                .map(Value::from)
                .ok_or_else(|| wrong("an integer"))?,
            FieldType::Number => {
                if value.is_number() {
                    value.clone()
                } else {
                    return Err(wrong("a number"));
                }
            }
            FieldType::Bool => match value {
                Value::Bool(_) => value.clone(),
                Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                    Value::Bool(n.as_i64() == Some(1))
                }
                _ => return Err(wrong("a boolean")),
            },
            FieldType::Address => {
                let obj = value
                    .as_object()
                    .ok_or_else(|| wrong("an address object"))?;
                if let Some(k) = obj.keys().find(|k| !ADDRESS_FIELDS.contains(&k.as_str())) {
                    return Err(wrong(&format!("an address object (unknown key '{k}')")));
                }
                value.clone()
            }
            FieldType::ToOne(target) => {
                let id = value
                    .get("id")
                    .and_then(Value::as_i64)
                    .or_else(|| value.as_i64())
                    .ok_or_else(|| wrong("a reference {\"id\":N}"))?;
                if let Ok(store) = self.store(target) {
                    if !store.records.contains_key(&id) {
                        return Err(ApiError::bad_request(format!(
                            "Invalid value for '{entity}.{name}': no {target} with id {id}"
                        )));
                    }
                }
                serde_json::json!({ "id": id })
            }
            FieldType::ToMany(target) => {
                // Bullhorn's `{"replaceAll":[ids]}` form, or the read shape `{"total":n,"data":[{"id":..}]}`.
                let ids: Option<Vec<i64>> = match (value.get("replaceAll"), value.get("data")) {
                    (Some(Value::Array(a)), _) => a.iter().map(Value::as_i64).collect(),
                    (None, Some(Value::Array(a))) => a
                        .iter()
                        .map(|m| m.get("id").and_then(Value::as_i64))
                        .collect(),
                    _ => None,
                };
                let ids =
                    ids.ok_or_else(|| wrong("a to-many association {\"replaceAll\":[ids]}"))?;
                if let Ok(store) = self.store(target) {
                    if let Some(bad) = ids.iter().find(|id| !store.records.contains_key(id)) {
                        return Err(ApiError::bad_request(format!(
                            "Invalid value for '{entity}.{name}': no {target} with id {bad}"
                        )));
                    }
                }
                serde_json::json!({
                    "total": ids.len(),
                    "data": ids.iter().map(|id| serde_json::json!({ "id": id })).collect::<Vec<_>>(),
                })
            }
        })
    }

    /// `PUT entity/{Type}`: creates a record.
    pub fn insert(&mut self, entity: &str, body: &Map<String, Value>) -> Result<Change, ApiError> {
        let def = self.store(entity)?.def;
        if IMMUTABLE.contains(&def.name) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "errors.entityImmutable",
                format!(
                    "Entity type '{}' cannot be created through the API",
                    def.name
                ),
            ));
        }
        let mut fields = self.validate_body(def, body, false)?;
        let now = self.tick();
        let store = self.store_mut(entity)?;
        let id = store.next_id;
        fields.insert("id".into(), id.into());
        fields.insert("dateAdded".into(), now.into());
        fields.insert("dateLastModified".into(), now.into());
        if def.field("isDeleted").is_some() {
            fields.insert("isDeleted".into(), false.into());
        }
        let person_id = owner_id(&fields);
        let data = Value::Object(fields.clone());
        store.put(fields);
        Ok(Change {
            entity: def.name,
            id,
            change_type: ChangeType::Insert,
            event: EntityEventType::Inserted,
            updated: Vec::new(),
            timestamp: now,
            person_id,
            data,
        })
    }

    /// `POST entity/{Type}/{id}`: changes the given fields (a body `{"isDeleted":true}` is a soft delete).
    pub fn update(
        &mut self,
        entity: &str,
        id: i64,
        body: &Map<String, Value>,
    ) -> Result<Change, ApiError> {
        let def = self.store(entity)?.def;
        if IMMUTABLE.contains(&def.name) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "errors.entityImmutable",
                format!(
                    "Entity type '{}' cannot be changed through the API",
                    def.name
                ),
            ));
        }
        let allow_delete = SOFT_DELETABLE.contains(&def.name);
        let fields = self.validate_body(def, body, allow_delete)?;
        if !self.store(entity)?.records.contains_key(&id) {
            return Err(ApiError::not_found(def.name, id));
        }
        let soft_delete_event = self.soft_delete_event;
        let now = self.tick();
        let store = self.store_mut(entity)?;
        let rec = store
            .records
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found(def.name, id))?;
        let was_deleted = rec.deleted;
        let mut updated: Vec<String> = fields.keys().cloned().collect();
        for (k, v) in &fields {
            rec.fields.insert(k.clone(), v.clone());
        }
        rec.deleted = rec
            .fields
            .get("isDeleted")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        store.by_modified.remove(&(rec.modified, id));
        rec.modified = now;
        rec.fields.insert("dateLastModified".into(), now.into());
        rec.packed = Packed::build(def, &rec.fields);
        store.by_modified.insert((now, id), rec.deleted);
        let person_id = owner_id(&rec.fields);
        let became_deleted = rec.deleted && !was_deleted;
        let event = if became_deleted && soft_delete_event == SoftDeleteEvent::Deleted {
            EntityEventType::Deleted
        } else {
            EntityEventType::Updated
        };
        if event == EntityEventType::Deleted {
            updated.clear();
        }
        Ok(Change {
            entity: def.name,
            id,
            change_type: ChangeType::Update,
            event,
            updated,
            timestamp: now,
            person_id,
            data: Value::Object(fields),
        })
    }

    /// Removes a record outright, as a hard delete, an admin purge or a GDPR erasure does: no
    /// `dateLastModified` moves and no event is published, so incremental reads never learn of it. `true` when
    /// the record existed.
    pub fn purge(&mut self, entity: &str, id: i64) -> Result<bool, ApiError> {
        let store = self.store_mut(entity)?;
        match store.records.remove(&id) {
            Some(rec) => {
                store.by_modified.remove(&(rec.modified, id));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `DELETE entity/{Type}/{id}`: soft delete for soft-deletable types, refused for the others.
    pub fn delete(&mut self, entity: &str, id: i64) -> Result<Change, ApiError> {
        let def = self.store(entity)?.def;
        if !SOFT_DELETABLE.contains(&def.name) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "errors.entityNotDeletable",
                format!("Entity type '{}' cannot be deleted", def.name),
            ));
        }
        let mut body = Map::new();
        body.insert("isDeleted".into(), true.into());
        let mut change = self.update(entity, id, &body)?;
        change.change_type = ChangeType::Delete;
        change.data = Value::Object(Map::new());
        Ok(change)
    }

    /// Runs a filter, sort and page over one entity type.
    ///
    /// When the sort is `dateLastModified[,id]` ascending (or descending on both) the `(dateLastModified,id)`
    /// index yields records already in order, restricted to the `dateLastModified` bounds found in the top-level
    /// conjunction of the filter; otherwise matches are collected and sorted (ties always broken by id, so pages
    /// are stable).
    pub fn execute<'a>(
        &'a self,
        store: &'a EntityStore,
        filter: &Expr,
        sort: &[SortKey],
        start: usize,
        count: usize,
    ) -> Page<'a> {
        let mut total = 0usize;
        let mut records = Vec::with_capacity(count.min(1024));
        let mut take = |rec: &'a Record, total: &mut usize| {
            if filter.eval(rec) {
                if *total >= start && records.len() < count {
                    records.push(rec);
                }
                *total += 1;
            }
        };
        let order = index_order(sort);
        match order {
            IndexOrder::ById { desc } => {
                let (lo, hi) = filter.id_bounds();
                if range_is_empty(&lo.map(|x| (x, 0)), &hi.map(|x| (x, 0))) {
                    return Page { total, records };
                }
                let range = store.records.range((lo, hi)).map(|(_, r)| r);
                let it: Box<dyn Iterator<Item = &Record>> = if desc {
                    Box::new(range.rev())
                } else {
                    Box::new(range)
                };
                for rec in it {
                    take(rec, &mut total);
                }
            }
            IndexOrder::ByModified { desc } => {
                let (lo, hi) = filter.modified_bounds();
                let lo = match lo {
                    Bound::Included(x) => Bound::Included((x, i64::MIN)),
                    Bound::Excluded(x) => Bound::Excluded((x, i64::MAX)),
                    Bound::Unbounded => Bound::Unbounded,
                };
                let hi = match hi {
                    Bound::Included(x) => Bound::Included((x, i64::MAX)),
                    Bound::Excluded(x) => Bound::Excluded((x, i64::MIN)),
                    Bound::Unbounded => Bound::Unbounded,
                };
                if range_is_empty(&lo, &hi) {
                    return Page { total, records };
                }
                let range = store.by_modified.range((lo, hi));
                let it: Box<dyn Iterator<Item = (&(i64, i64), &bool)>> = if desc {
                    Box::new(range.rev())
                } else {
                    Box::new(range)
                };
                let key_only = filter.key_only();
                for (&(modified, id), &deleted) in it {
                    let hit = if key_only {
                        filter.eval_key(id, modified, deleted)
                    } else {
                        store.records.get(&id).is_some_and(|r| filter.eval(r))
                    };
                    if hit {
                        if total >= start && records.len() < count {
                            if let Some(rec) = store.records.get(&id) {
                                records.push(rec);
                            }
                        }
                        total += 1;
                    }
                }
            }
            IndexOrder::None => {
                let mut all: Vec<&Record> =
                    store.records.values().filter(|r| filter.eval(r)).collect();
                all.sort_by(|a, b| compare_records(a, b, sort));
                total = all.len();
                records = all.into_iter().skip(start).take(count).collect();
            }
        }
        Page { total, records }
    }
}

fn range_is_empty(lo: &Bound<(i64, i64)>, hi: &Bound<(i64, i64)>) -> bool {
    // BTreeSet::range panics on an inverted range; an inverted range simply matches nothing.
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        _ => false,
    }
}

fn owner_id(fields: &Map<String, Value>) -> i64 {
    fields
        .get("owner")
        .and_then(|o| o.get("id"))
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

enum IndexOrder {
    ById { desc: bool },
    ByModified { desc: bool },
    None,
}

fn index_order(sort: &[SortKey]) -> IndexOrder {
    let keys: Vec<(Special, bool)> = sort.iter().map(|k| (k.path.special, k.desc)).collect();
    match keys.as_slice() {
        [] => IndexOrder::ById { desc: false },
        [(Special::Id, d)] => IndexOrder::ById { desc: *d },
        [(Special::Modified, false)] | [(Special::Modified, false), (Special::Id, false)] => {
            IndexOrder::ByModified { desc: false }
        }
        [(Special::Modified, true), (Special::Id, true)] => IndexOrder::ByModified { desc: true },
        _ => IndexOrder::None,
    }
}

fn compare_records(a: &Record, b: &Record, sort: &[SortKey]) -> Ordering {
    for key in sort {
        let ord = compare_values(key.path.first_value(a), key.path.first_value(b));
        let ord = if key.desc { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.id.cmp(&b.id)
}

/// Total order over stored values for sorting: null < bool < number < string (case-insensitive).
pub fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(_)) => 1,
            Some(Value::Number(_)) => 2,
            Some(Value::String(_)) => 3,
            Some(_) => 4,
        }
    }
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x
            .chars()
            .flat_map(char::to_lowercase)
            .cmp(y.chars().flat_map(char::to_lowercase)),
        _ => rank(a).cmp(&rank(b)),
    }
}
