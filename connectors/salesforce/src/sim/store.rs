//! The org's records in memory and the one write path: insert, update, delete (to the recycle bin),
//! undelete and merge. Each write returns the [`Change`]s it made, which feed the change-event bus.
//! Reads: SOQL evaluation ([`Db::run_query`]), the updated/deleted windows and lookups by id.
//!
//! Each object keeps an ordered index of `(SystemModstamp, Id)` beside its records, moved by every
//! write that stamps a record. A query ordered by `SystemModstamp[, Id]` — a sync's keyset page —
//! walks that index from the least key its filter admits (see [`lower_bound`]), evaluates the whole
//! filter on each record and stops at `LIMIT`: its answer is the scan-and-sort answer (the same
//! rows in the same order; a property test checks it), without touching or sorting the rest.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::schema::{FieldType, ObjectDef};
use super::soql::{Expr, Literal, Op, Query, Select, SoqlError};
use crate::ids;
use crate::wire::{format_datetime, parse_datetime};

/// A record.
#[derive(Debug, Clone)]
pub struct Record {
    /// 18-character id.
    pub id: String,
    /// Every field, as the REST API renders it (datetimes as `...000+0000` strings).
    pub fields: Map<String, Value>,
    /// `SystemModstamp`, epoch ms.
    pub modstamp_ms: i64,
    /// In the recycle bin.
    pub is_deleted: bool,
    /// When it was deleted, epoch ms.
    pub deleted_ms: Option<i64>,
}

/// What a write did to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// New record.
    Create,
    /// Fields changed.
    Update,
    /// Moved to the recycle bin.
    Delete,
    /// Restored from the recycle bin.
    Undelete,
}

/// One record changed by a write.
#[derive(Debug, Clone)]
pub struct Change {
    /// Index of the object in [`Db::objects`].
    pub object: usize,
    /// What happened.
    pub kind: ChangeKind,
    /// The record id.
    pub id: String,
    /// Fields whose value changed (UPDATE), or every non-null field (CREATE/UNDELETE).
    pub changed: Vec<String>,
    /// Fields set to null by an UPDATE.
    pub nulled: Vec<String>,
    /// Values after the change of the `changed` fields.
    pub values: Map<String, Value>,
    /// Commit time, epoch ms.
    pub at_ms: i64,
}

/// Records of one object.
#[derive(Debug)]
pub struct ObjectStore {
    /// Definition.
    pub def: ObjectDef,
    /// Records by id (deleted ones included). Written only through [`Db`]'s write methods, which
    /// keep `by_modstamp` in step.
    pub records: BTreeMap<String, Record>,
    /// `(SystemModstamp ms, id)` of every record (deleted ones included), in query order.
    by_modstamp: BTreeSet<(i64, String)>,
    /// Deletions `(id, deleted ms)` the `deleted` resource still reports, oldest first.
    pub deleted_log: Vec<(String, i64)>,
    /// Deletions before this (epoch ms) were purged from the log.
    pub log_purged_before_ms: i64,
    next_n: u64,
}

impl ObjectStore {
    /// Moves record `id` in the modstamp index from `from_ms` to `to_ms`.
    fn restamp(&mut self, id: &str, from_ms: i64, to_ms: i64) {
        if from_ms != to_ms {
            self.by_modstamp.remove(&(from_ms, id.to_string()));
            self.by_modstamp.insert((to_ms, id.to_string()));
        }
    }

    /// Whether the modstamp index holds exactly the records' keys (tests).
    #[cfg(test)]
    pub fn index_consistent(&self) -> bool {
        self.by_modstamp.len() == self.records.len()
            && self
                .by_modstamp
                .iter()
                .all(|(t, id)| self.records.get(id).is_some_and(|r| r.modstamp_ms == *t))
    }
}

/// The whole org.
#[derive(Debug)]
pub struct Db {
    /// Objects (index 0 Contact-like, 1 Position-like).
    pub objects: Vec<ObjectStore>,
    /// Pod part of generated ids.
    pub pod: String,
    /// Owner of generated records.
    pub owner_id: String,
    last_ms: i64,
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    /// Salesforce error code (`NOT_FOUND`, `ENTITY_IS_DELETED`, `INVALID_FIELD`, ...).
    pub code: &'static str,
    /// Message.
    pub message: String,
}

fn werr(code: &'static str, message: impl Into<String>) -> WriteError {
    WriteError {
        code,
        message: message.into(),
    }
}

impl Db {
    /// An empty org with the two objects.
    pub fn new(defs: Vec<ObjectDef>, pod: &str, owner_id: String) -> Self {
        Self {
            objects: defs
                .into_iter()
                .map(|def| ObjectStore {
                    def,
                    records: BTreeMap::new(),
                    by_modstamp: BTreeSet::new(),
                    deleted_log: Vec::new(),
                    log_purged_before_ms: 0,
                    next_n: 1,
                })
                .collect(),
            pod: pod.to_string(),
            owner_id,
            last_ms: 0,
        }
    }

    /// Index of the object named `name` (case-insensitive).
    pub fn object_index(&self, name: &str) -> Option<usize> {
        self.objects
            .iter()
            .position(|o| o.def.name.eq_ignore_ascii_case(name))
    }

    /// A commit time: now, never before the previous one.
    pub fn tick(&mut self, now_ms: i64) -> i64 {
        self.last_ms = self.last_ms.max(now_ms);
        self.last_ms
    }

    fn set_times(rec: &mut Record, at_ms: i64, created: bool) {
        let s = chrono::DateTime::from_timestamp_millis(at_ms)
            .map(format_datetime)
            .unwrap_or_default();
        if created {
            rec.fields
                .insert("CreatedDate".into(), Value::String(s.clone()));
        }
        rec.fields
            .insert("LastModifiedDate".into(), Value::String(s.clone()));
        rec.fields.insert("SystemModstamp".into(), Value::String(s));
        rec.modstamp_ms = at_ms;
    }

    /// Creates a record at `at_ms` from `fields` (canonical names; unknown names refused).
    pub fn insert(
        &mut self,
        object: usize,
        fields: &Map<String, Value>,
        at_ms: i64,
    ) -> Result<Change, WriteError> {
        let pod = self.pod.clone();
        let owner = self.owner_id.clone();
        let store = &mut self.objects[object];
        let n = store.next_n;
        store.next_n += 1;
        let id = ids::make(store.def.key_prefix, &pod, n);
        let mut rec = Record {
            id: id.clone(),
            fields: Map::new(),
            modstamp_ms: at_ms,
            is_deleted: false,
            deleted_ms: None,
        };
        for fd in &store.def.fields {
            rec.fields.insert(fd.name.into(), Value::Null);
        }
        rec.fields.insert("Id".into(), Value::String(id.clone()));
        rec.fields.insert("IsDeleted".into(), Value::Bool(false));
        rec.fields.insert("OwnerId".into(), Value::String(owner));
        if store.def.field("Remote__c").is_some() {
            rec.fields.insert("Remote__c".into(), Value::Bool(false));
        }
        for (k, v) in fields {
            let fd = store.def.field(k).ok_or_else(|| {
                werr(
                    "INVALID_FIELD",
                    format!("No such column '{k}' on sobject of type {}", store.def.name),
                )
            })?;
            rec.fields.insert(fd.name.into(), v.clone());
        }
        Self::derive_name(&store.def, &mut rec.fields);
        Self::set_times(&mut rec, at_ms, true);
        let changed: Vec<String> = store
            .def
            .event_fields()
            .filter(|fd| !rec.fields.get(fd.name).is_none_or(Value::is_null))
            .map(|fd| fd.name.to_string())
            .collect();
        let values = changed
            .iter()
            .map(|k| (k.clone(), rec.fields[k].clone()))
            .collect();
        store.records.insert(id.clone(), rec);
        store.by_modstamp.insert((at_ms, id.clone()));
        Ok(Change {
            object,
            kind: ChangeKind::Create,
            id,
            changed,
            nulled: Vec::new(),
            values,
            at_ms,
        })
    }

    fn derive_name(def: &ObjectDef, fields: &mut Map<String, Value>) {
        if def.kind == super::schema::ObjectKind::Contact {
            let first = fields
                .get("FirstName")
                .and_then(Value::as_str)
                .unwrap_or("");
            let last = fields.get("LastName").and_then(Value::as_str).unwrap_or("");
            let name = format!("{first} {last}").trim().to_string();
            fields.insert("Name".into(), Value::String(name));
        }
    }

    fn live_mut(&mut self, object: usize, id: &str) -> Result<&mut Record, WriteError> {
        let id18 = ids::to18(id).map_err(|e| werr("MALFORMED_ID", e.to_string()))?;
        let rec = self.objects[object]
            .records
            .get_mut(&id18)
            .ok_or_else(|| werr("NOT_FOUND", "The requested resource does not exist"))?;
        if rec.is_deleted {
            return Err(werr("ENTITY_IS_DELETED", "entity is deleted"));
        }
        Ok(rec)
    }

    /// Changes fields of a live record; a write that changes nothing still bumps the timestamps.
    pub fn update(
        &mut self,
        object: usize,
        id: &str,
        fields: &Map<String, Value>,
        at_ms: i64,
    ) -> Result<Change, WriteError> {
        let def = self.objects[object].def.clone();
        let rec = self.live_mut(object, id)?;
        let before_ms = rec.modstamp_ms;
        let mut changed = Vec::new();
        let mut nulled = Vec::new();
        let before = rec.fields.clone();
        for (k, v) in fields {
            let fd = def.field(k).ok_or_else(|| {
                werr(
                    "INVALID_FIELD",
                    format!("No such column '{k}' on sobject of type {}", def.name),
                )
            })?;
            let read_only = matches!(
                fd.name,
                "Id" | "IsDeleted"
                    | "SystemModstamp"
                    | "CreatedDate"
                    | "LastModifiedDate"
                    | "MasterRecordId"
            ) || (fd.name == "Name"
                && def.kind == super::schema::ObjectKind::Contact);
            if read_only {
                return Err(werr(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!("Unable to create/update fields: {}", fd.name),
                ));
            }
            rec.fields.insert(fd.name.into(), v.clone());
        }
        Self::derive_name(&def, &mut rec.fields);
        Self::set_times(rec, at_ms, false);
        for fd in def.event_fields() {
            let (old, new) = (before.get(fd.name), rec.fields.get(fd.name));
            if old != new {
                changed.push(fd.name.to_string());
                if new.is_none_or(Value::is_null) {
                    nulled.push(fd.name.to_string());
                }
            }
        }
        // An update always stamps LastModifiedDate, even within the same millisecond as the last write.
        if !changed.iter().any(|c| c == "LastModifiedDate") {
            changed.push("LastModifiedDate".to_string());
        }
        let values = changed
            .iter()
            .map(|k| (k.clone(), rec.fields[k].clone()))
            .collect();
        let id = rec.id.clone();
        self.objects[object].restamp(&id, before_ms, at_ms);
        Ok(Change {
            object,
            kind: ChangeKind::Update,
            id,
            changed,
            nulled,
            values,
            at_ms,
        })
    }

    /// Moves a live record to the recycle bin (`IsDeleted` true, visible to `queryAll` and `deleted`).
    pub fn delete(&mut self, object: usize, id: &str, at_ms: i64) -> Result<Change, WriteError> {
        let rec = self.live_mut(object, id)?;
        let before_ms = rec.modstamp_ms;
        rec.is_deleted = true;
        rec.deleted_ms = Some(at_ms);
        rec.fields.insert("IsDeleted".into(), Value::Bool(true));
        Self::set_times(rec, at_ms, false);
        let id = rec.id.clone();
        let store = &mut self.objects[object];
        store.restamp(&id, before_ms, at_ms);
        store.deleted_log.push((id.clone(), at_ms));
        Ok(Change {
            object,
            kind: ChangeKind::Delete,
            id,
            changed: Vec::new(),
            nulled: Vec::new(),
            values: Map::new(),
            at_ms,
        })
    }

    /// Restores a record from the recycle bin.
    pub fn undelete(&mut self, object: usize, id: &str, at_ms: i64) -> Result<Change, WriteError> {
        let id18 = ids::to18(id).map_err(|e| werr("MALFORMED_ID", e.to_string()))?;
        let store = &mut self.objects[object];
        let def = store.def.clone();
        let rec = store
            .records
            .get_mut(&id18)
            .ok_or_else(|| werr("NOT_FOUND", "The requested resource does not exist"))?;
        if !rec.is_deleted {
            return Err(werr("UNDELETE_FAILED", "Entity is not in the recycle bin"));
        }
        let before_ms = rec.modstamp_ms;
        rec.is_deleted = false;
        rec.deleted_ms = None;
        rec.fields.insert("IsDeleted".into(), Value::Bool(false));
        rec.fields.insert("MasterRecordId".into(), Value::Null);
        Self::set_times(rec, at_ms, false);
        let changed: Vec<String> = def
            .event_fields()
            .filter(|fd| !rec.fields.get(fd.name).is_none_or(Value::is_null))
            .map(|fd| fd.name.to_string())
            .collect();
        let values = changed
            .iter()
            .map(|k| (k.clone(), rec.fields[k].clone()))
            .collect();
        store.deleted_log.retain(|(d, _)| *d != id18);
        store.restamp(&id18, before_ms, at_ms);
        Ok(Change {
            object,
            kind: ChangeKind::Undelete,
            id: id18,
            changed,
            nulled: Vec::new(),
            values,
            at_ms,
        })
    }

    /// Merges `loser` into `winner` (Contact only, as in Salesforce): the winner takes the loser's non-null
    /// values for fields it lacks and is modified; the loser is deleted with `MasterRecordId` = winner.
    pub fn merge(
        &mut self,
        object: usize,
        winner: &str,
        loser: &str,
        at_ms: i64,
    ) -> Result<Vec<Change>, WriteError> {
        if self.objects[object].def.kind != super::schema::ObjectKind::Contact {
            return Err(werr(
                "INVALID_OPERATION",
                "merge is supported for Contact only",
            ));
        }
        let loser_fields = self.live_mut(object, loser)?.fields.clone();
        let winner_fields = self.live_mut(object, winner)?.fields.clone();
        if winner_fields["Id"] == loser_fields["Id"] {
            return Err(werr(
                "INVALID_OPERATION",
                "cannot merge a record with itself",
            ));
        }
        let mut fill = Map::new();
        for k in [
            "Email",
            "Phone",
            "MobilePhone",
            "Title",
            "Skills__c",
            "Description",
        ] {
            if winner_fields.get(k).is_none_or(Value::is_null) {
                if let Some(v) = loser_fields.get(k).filter(|v| !v.is_null()) {
                    fill.insert(k.into(), v.clone());
                }
            }
        }
        let w = self.update(object, winner, &fill, at_ms)?;
        let winner_id = w.id.clone();
        let l = self.delete(object, loser, at_ms)?;
        if let Some(rec) = self.objects[object].records.get_mut(&l.id) {
            rec.fields
                .insert("MasterRecordId".into(), Value::String(winner_id));
        }
        Ok(vec![w, l])
    }

    /// Removes a record without a trace, live or in the recycle bin (a hard delete, or the bin
    /// emptied past a merge loser): absent from `query`, `queryAll` and the `deleted` resource, and
    /// no change event is published for it.
    pub fn purge(&mut self, object: usize, id: &str) -> Result<(), WriteError> {
        let id18 = ids::to18(id).map_err(|e| werr("MALFORMED_ID", e.to_string()))?;
        let store = &mut self.objects[object];
        store
            .records
            .remove(&id18)
            .ok_or_else(|| werr("NOT_FOUND", "The requested resource does not exist"))?;
        store.deleted_log.retain(|(d, _)| *d != id18);
        Ok(())
    }

    /// A record by id (15 or 18 characters), deleted ones included.
    pub fn get(&self, object: usize, id: &str) -> Option<&Record> {
        let id18 = ids::to18(id).ok()?;
        self.objects[object].records.get(&id18)
    }

    /// Ids changed in `[start, end)` (live records only, as `updated` reports).
    pub fn updated_ids(&self, object: usize, start_ms: i64, end_ms: i64) -> Vec<String> {
        self.objects[object]
            .records
            .values()
            .filter(|r| !r.is_deleted && r.modstamp_ms >= start_ms && r.modstamp_ms < end_ms)
            .map(|r| r.id.clone())
            .collect()
    }

    /// Deletions in `[start, end)` still in the log.
    pub fn deleted_in(&self, object: usize, start_ms: i64, end_ms: i64) -> Vec<(String, i64)> {
        self.objects[object]
            .deleted_log
            .iter()
            .filter(|(_, t)| *t >= start_ms && *t < end_ms)
            .cloned()
            .collect()
    }

    /// Forgets deletions older than `before_ms` (the delete log's retention, or an early purge).
    pub fn purge_deleted_log(&mut self, object: usize, before_ms: i64) {
        let s = &mut self.objects[object];
        s.deleted_log.retain(|(_, t)| *t >= before_ms);
        s.log_purged_before_ms = s.log_purged_before_ms.max(before_ms);
    }

    /// Runs a bound query: the matching records (sorted, limited) with the selected fields, and the count.
    pub fn run_query(
        &self,
        q: &Query,
        include_deleted: bool,
    ) -> Result<(usize, Vec<&Record>, Vec<&'static str>), SoqlError> {
        self.run_query_planned(q, include_deleted, true)
    }

    /// [`Db::run_query`]; `use_index` false always scans and sorts (what the index must agree with).
    pub(super) fn run_query_planned(
        &self,
        q: &Query,
        include_deleted: bool,
        use_index: bool,
    ) -> Result<(usize, Vec<&Record>, Vec<&'static str>), SoqlError> {
        let object = self.object_index(&q.from).ok_or_else(|| SoqlError {
            code: "INVALID_TYPE",
            message: format!("sObject type '{}' is not supported.", q.from),
        })?;
        let store = &self.objects[object];
        let def = &store.def;
        let field = |name: &str| -> Result<(&'static str, FieldType), SoqlError> {
            def.field(name).map(|f| (f.name, f.ftype)).ok_or_else(|| SoqlError {
                code: "INVALID_FIELD",
                message: format!(
                    "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.",
                    def.name
                ),
            })
        };
        let selected: Vec<&'static str> = match &q.select {
            Select::Count => Vec::new(),
            Select::Fields(fs) => fs
                .iter()
                .map(|f| field(f).map(|x| x.0))
                .collect::<Result<_, _>>()?,
        };
        let filter = q.filter.as_ref().map(|e| bind(e, &field)).transpose()?;
        let order: Vec<(&'static str, FieldType, bool, bool)> = q
            .order
            .iter()
            .map(|k| field(&k.field).map(|(n, t)| (n, t, k.desc, k.nulls_last)))
            .collect::<Result<_, _>>()?;
        let admits = |r: &&Record| {
            (include_deleted || !r.is_deleted) && filter.as_ref().is_none_or(|f| eval(f, r))
        };
        if use_index && index_order(&order) {
            let from = filter
                .as_ref()
                .and_then(lower_bound)
                .unwrap_or((i64::MIN, String::new()));
            let rows: Vec<&Record> = store
                .by_modstamp
                .range(from..)
                .filter_map(|(_, id)| store.records.get(id))
                .filter(admits)
                .take(q.limit.unwrap_or(usize::MAX))
                .collect();
            return Ok((rows.len(), rows, selected));
        }
        let mut rows: Vec<&Record> = store.records.values().filter(admits).collect();
        if !order.is_empty() {
            rows.sort_by(|a, b| {
                for (name, ft, desc, nulls_last) in &order {
                    let o = cmp_values(a, b, name, *ft, *nulls_last);
                    let o = if *desc { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            });
        }
        if let Some(l) = q.limit {
            rows.truncate(l);
        }
        Ok((rows.len(), rows, selected))
    }
}

/// Whether `ORDER BY` is the modstamp index's order: `SystemModstamp` ascending, then `Id`
/// ascending or nothing (the scan is in id order and the sort stable, so ties come by id either
/// way); keys after `Id` never decide, `(SystemModstamp, Id)` being unique.
fn index_order(order: &[(&'static str, FieldType, bool, bool)]) -> bool {
    matches!(
        order,
        [("SystemModstamp", _, false, _)]
            | [("SystemModstamp", _, false, _), ("Id", _, false, _), ..]
    )
}

/// A key below every record `b` admits: each has `(SystemModstamp, Id) >= ` it (`None`: no bound
/// known). Conservative — the filter is still evaluated on every record read from the bound on —
/// so it only needs the shapes a sync sends: `SystemModstamp >/>=/= T`, and within an `AND` that
/// pins `SystemModstamp = T`, `Id >/>=/= 'I'` (ties paged by id); `OR` takes the least bound.
fn lower_bound(b: &Bound) -> Option<(i64, String)> {
    match b {
        Bound::Cmp("SystemModstamp", _, op, Literal::DateTime(t)) => match op {
            Op::Gt => Some((t.saturating_add(1), String::new())),
            Op::Ge | Op::Eq => Some((*t, String::new())),
            _ => None,
        },
        Bound::Or(parts) => {
            let mut least: Option<(i64, String)> = None;
            for p in parts {
                let b = lower_bound(p)?;
                if least.as_ref().is_none_or(|l| b < *l) {
                    least = Some(b);
                }
            }
            least
        }
        Bound::And(parts) => {
            let pinned = parts.iter().find_map(|p| match p {
                Bound::Cmp("SystemModstamp", _, Op::Eq, Literal::DateTime(t)) => Some(*t),
                _ => None,
            });
            let by_id = pinned.and_then(|t| {
                parts.iter().find_map(|p| match p {
                    // The least string above `I` is `I` followed by NUL.
                    Bound::Cmp("Id", _, Op::Gt, Literal::Str(i)) => Some((t, format!("{i}\0"))),
                    Bound::Cmp("Id", _, Op::Ge | Op::Eq, Literal::Str(i)) => Some((t, i.clone())),
                    _ => None,
                })
            });
            parts.iter().filter_map(lower_bound).chain(by_id).max()
        }
        _ => None,
    }
}

/// Resolves a field name as written to its canonical name and type.
type FieldResolver<'a> = dyn Fn(&str) -> Result<(&'static str, FieldType), SoqlError> + 'a;

/// A condition with field names resolved.
#[derive(Debug)]
pub enum Bound {
    And(Vec<Bound>),
    Or(Vec<Bound>),
    Not(Box<Bound>),
    Cmp(&'static str, FieldType, Op, Literal),
    In(&'static str, FieldType, Vec<Literal>, bool),
}

fn check_literal(name: &str, ft: FieldType, l: &Literal) -> Result<Literal, SoqlError> {
    let bad = |want: &str| {
        SoqlError {
        code: "INVALID_FIELD",
        message: format!("value of filter criterion for field '{name}' must be of type {want} and should not be enclosed in quotes"),
    }
    };
    Ok(match (ft, l) {
        (_, Literal::Null) => Literal::Null,
        (FieldType::DateTime, Literal::DateTime(_)) => l.clone(),
        (FieldType::DateTime, _) => return Err(bad("dateTime")),
        (FieldType::Date, Literal::Date(_)) => l.clone(),
        (FieldType::Date, _) => return Err(bad("date")),
        (FieldType::Boolean, Literal::Bool(_)) => l.clone(),
        (FieldType::Boolean, _) => return Err(bad("boolean")),
        (FieldType::Double, Literal::Num(_)) => l.clone(),
        (FieldType::Double, _) => return Err(bad("double")),
        (t, Literal::Str(s)) if t.is_id() => {
            // Ids compare in their 18-character form; a malformed id literal is Salesforce's INVALID_QUERY_FILTER_OPERATOR,
            // but keeping it as text keeps range comparisons on partial ids working.
            Literal::Str(ids::to18(s).unwrap_or_else(|_| s.clone()))
        }
        (_, Literal::Str(_)) => l.clone(),
        _ => {
            return Err(SoqlError {
                code: "INVALID_FIELD",
                message: format!("value of filter criterion for field '{name}' must be of type string and should be enclosed in quotes"),
            })
        }
    })
}

fn bind(e: &Expr, field: &FieldResolver<'_>) -> Result<Bound, SoqlError> {
    Ok(match e {
        Expr::And(v) => Bound::And(v.iter().map(|x| bind(x, field)).collect::<Result<_, _>>()?),
        Expr::Or(v) => Bound::Or(v.iter().map(|x| bind(x, field)).collect::<Result<_, _>>()?),
        Expr::Not(x) => Bound::Not(Box::new(bind(x, field)?)),
        Expr::Cmp {
            field: f,
            op,
            value,
        } => {
            let (n, t) = field(f)?;
            Bound::Cmp(n, t, *op, check_literal(n, t, value)?)
        }
        Expr::In {
            field: f,
            values,
            negated,
        } => {
            let (n, t) = field(f)?;
            let vals = values
                .iter()
                .map(|v| check_literal(n, t, v))
                .collect::<Result<_, _>>()?;
            Bound::In(n, t, vals, *negated)
        }
    })
}

/// Compares a record's field with a literal; `None` when either is null.
fn compare(r: &Record, name: &str, ft: FieldType, lit: &Literal) -> Option<Ordering> {
    if name == "SystemModstamp" {
        if let Literal::DateTime(t) = lit {
            return Some(r.modstamp_ms.cmp(t));
        }
    }
    let v = r.fields.get(name)?;
    match (ft, v, lit) {
        (_, Value::Null, _) | (_, _, Literal::Null) => None,
        (FieldType::DateTime, Value::String(s), Literal::DateTime(t)) => {
            parse_datetime(s).map(|d| d.timestamp_millis().cmp(t))
        }
        (FieldType::Date, Value::String(s), Literal::Date(d)) => Some(s.as_str().cmp(d.as_str())),
        (FieldType::Boolean, Value::Bool(b), Literal::Bool(l)) => Some(b.cmp(l)),
        (FieldType::Double, Value::Number(n), Literal::Num(l)) => {
            n.as_f64().and_then(|x| x.partial_cmp(l))
        }
        (t, Value::String(s), Literal::Str(l)) if t.is_id() => Some(s.as_str().cmp(l.as_str())),
        (_, Value::String(s), Literal::Str(l)) => Some(s.to_lowercase().cmp(&l.to_lowercase())),
        _ => None,
    }
}

fn is_null(r: &Record, name: &str) -> bool {
    r.fields.get(name).is_none_or(Value::is_null)
}

fn eval(b: &Bound, r: &Record) -> bool {
    match b {
        Bound::And(v) => v.iter().all(|x| eval(x, r)),
        Bound::Or(v) => v.iter().any(|x| eval(x, r)),
        Bound::Not(x) => !eval(x, r),
        Bound::Cmp(n, _, Op::Eq, Literal::Null) => is_null(r, n),
        Bound::Cmp(n, _, Op::Ne, Literal::Null) => !is_null(r, n),
        Bound::Cmp(n, t, op, lit) => match compare(r, n, *t, lit) {
            None => false,
            Some(o) => match op {
                Op::Eq => o == Ordering::Equal,
                Op::Ne => o != Ordering::Equal,
                Op::Lt => o == Ordering::Less,
                Op::Le => o != Ordering::Greater,
                Op::Gt => o == Ordering::Greater,
                Op::Ge => o != Ordering::Less,
            },
        },
        Bound::In(n, t, vals, negated) => {
            let hit = vals.iter().any(|l| match l {
                Literal::Null => is_null(r, n),
                l => compare(r, n, *t, l) == Some(Ordering::Equal),
            });
            hit != *negated
        }
    }
}

fn cmp_values(a: &Record, b: &Record, name: &str, ft: FieldType, nulls_last: bool) -> Ordering {
    if name == "SystemModstamp" {
        return a.modstamp_ms.cmp(&b.modstamp_ms);
    }
    let (va, vb) = (a.fields.get(name), b.fields.get(name));
    let na = va.is_none_or(Value::is_null);
    let nb = vb.is_none_or(Value::is_null);
    match (na, nb) {
        (true, true) => return Ordering::Equal,
        (true, false) => {
            return if nulls_last {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (false, true) => {
            return if nulls_last {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        _ => {}
    }
    match (va, vb) {
        (Some(Value::String(x)), Some(Value::String(y))) => match ft {
            FieldType::DateTime => {
                let px = parse_datetime(x).map(|d| d.timestamp_millis());
                let py = parse_datetime(y).map(|d| d.timestamp_millis());
                px.cmp(&py)
            }
            t if t.is_id() => x.cmp(y),
            FieldType::Date => x.cmp(y),
            _ => x.to_lowercase().cmp(&y.to_lowercase()),
        },
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// The REST rendering of a record: `attributes` then the `fields` asked (all fields when `None`).
pub fn render(
    def: &ObjectDef,
    r: &Record,
    fields: Option<&[&'static str]>,
    api_version: &str,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "attributes".into(),
        serde_json::json!({
            "type": def.name,
            "url": format!("/services/data/v{api_version}/sobjects/{}/{}", def.name, r.id),
        }),
    );
    match fields {
        Some(fs) => {
            for f in fs {
                m.insert(
                    (*f).to_string(),
                    r.fields.get(*f).cloned().unwrap_or(Value::Null),
                );
            }
        }
        None => {
            for fd in &def.fields {
                m.insert(
                    fd.name.into(),
                    r.fields.get(fd.name).cloned().unwrap_or(Value::Null),
                );
            }
        }
    }
    m
}

/// A query's record as JSON text, the way Salesforce sends it: `attributes` first, then the fields in
/// the order selected (each once). Written straight to text: no map per record.
pub fn render_json(
    def: &ObjectDef,
    r: &Record,
    fields: &[&'static str],
    api_version: &str,
) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(96 + fields.len() * 32);
    out.extend_from_slice(b"{\"attributes\":{\"type\":");
    json_str(&mut out, &def.name);
    out.extend_from_slice(b",\"url\":");
    json_str(
        &mut out,
        &format!(
            "/services/data/v{api_version}/sobjects/{}/{}",
            def.name, r.id
        ),
    );
    out.push(b'}');
    for (i, f) in fields.iter().enumerate() {
        if fields[..i].contains(f) {
            continue;
        }
        out.push(b',');
        json_str(&mut out, f);
        out.push(b':');
        // Writing a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, r.fields.get(*f).unwrap_or(&Value::Null));
    }
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `s` as a JSON string.
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a `&str` into a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
}
