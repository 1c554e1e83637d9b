//! `crmflow mapping backfill --attribute <name>`: fills an attribute that was just added to the
//! mapping on the rows already stored, without replaying anything else.
//!
//! The raw topics cannot help: a source fetches only mapped fields, so records read before the
//! mapping changed never held the new field. The backfill therefore re-reads, for each CRM entity
//! that maps the attribute, only the records that have a value in its field, and only that field
//! plus id and version: Bullhorn `query/{entity}?where=<field> IS NOT NULL AND id > <last>`
//! (500 per request, by id), HubSpot `GET /crm/v3/objects/{object}?properties=<field>` (100 per
//! request; HubSpot cannot filter lists by presence, so every object is listed), Salesforce
//! `SELECT Id, SystemModstamp, <field> FROM <object> WHERE <field> != null` (2,000 per page).
//! Each value goes through the same mapping operator and rules as in the pipeline; a value that
//! breaks a rule is counted under its rule name and leaves the row alone (the record is
//! dead-lettered by the pipeline at its next change, as every new record would be).
//!
//! A row gets the attribute (`attributes || {name: value}`, one `UPDATE` per page) only when it is
//! live and its `source_version` is not newer than the version read, so a change normalized while
//! the backfill runs is never overwritten by an older read; such rows already carry the attribute.
//! Running it again is harmless. Afterwards, `crmflow embed backfill` re-embeds the rows whose
//! template text changed.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::config::mapping::{canonical_of, MappingConfig};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::operators::attributes::{self, EntityMapping, Mapping};

/// What the backfill did for one CRM entity.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct EntityReport {
    pub crm: String,
    pub entity: String,
    /// Records read from the CRM with a value in the field.
    pub read: u64,
    /// Rows that got the attribute.
    pub updated: u64,
    /// Records without a stored live row at or below the version read (not yet synced, deleted,
    /// or already newer).
    pub not_applied: u64,
    /// Values refused, by rule name.
    pub rejected: BTreeMap<String, u64>,
    /// Requests sent to the CRM.
    pub requests: u64,
}

/// `crmflow mapping backfill`'s answer (printed as JSON).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub attribute: String,
    pub entities: Vec<EntityReport>,
    pub duration_seconds: f64,
}

/// Runs the backfill of `attribute` for every CRM entity whose mapping names it.
pub async fn run(cfg: &Config, attribute: &str) -> Result<Report> {
    let started = Instant::now();
    crate::config::mapping::validate(&cfg.mapping).map_err(crate::config::ConfigError::Invalid)?;
    let mut targets = Vec::new();
    for (crm, entities) in &cfg.mapping {
        for (entity, attrs) in entities {
            if let Some(spec) = attrs.get(attribute) {
                let one: MappingConfig = [(
                    crm.clone(),
                    [(
                        entity.clone(),
                        [(attribute.to_owned(), spec.clone())].into(),
                    )]
                    .into(),
                )]
                .into();
                let m = Mapping::compile(&one).map_err(Error::Other)?;
                targets.push(m.entities.into_iter().next().expect("one entity"));
            }
        }
    }
    if targets.is_empty() {
        return Err(Error::Other(format!(
            "no [mapping.<crm>.<entity>] maps attribute `{attribute}`"
        )));
    }
    let pool = crate::store::pool(cfg)?;
    let mut report = Report {
        attribute: attribute.to_owned(),
        ..Default::default()
    };
    for m in &targets {
        let mut r = EntityReport {
            crm: m.crm.clone(),
            entity: m.entity.clone(),
            ..Default::default()
        };
        let table = match canonical_of(&m.crm, &m.entity) {
            Some("candidate") => "candidates",
            _ => "positions",
        };
        let mut apply = Applier {
            pool: &pool,
            table,
            m,
            report: &mut r,
        };
        match m.crm.as_str() {
            "bullhorn" => bullhorn(cfg, &mut apply).await?,
            "hubspot" => hubspot(cfg, &mut apply).await?,
            "salesforce" => salesforce(cfg, &mut apply).await?,
            other => {
                return Err(Error::Other(format!(
                    "no backfill reader for CRM `{other}`"
                )))
            }
        }
        tracing::info!(?r, "mapping backfill: entity done");
        report.entities.push(r);
    }
    report.duration_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Types, checks and writes one page of records.
struct Applier<'a> {
    pool: &'a deadpool_postgres::Pool,
    table: &'static str,
    m: &'a EntityMapping,
    report: &'a mut EntityReport,
}

impl Applier<'_> {
    /// `records`: `(crm id, version read, record JSON)`.
    async fn page(&mut self, records: Vec<(String, i64, String)>) -> Result<()> {
        let name = &self.m.attrs[0].name;
        let (mut ids, mut versions, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for (id, version, json) in records {
            self.report.read += 1;
            match attributes::extract(&json, &self.m.crm, self.m) {
                Ok(attrs) => {
                    let Some(v) = attrs.get(name) else { continue };
                    let mut obj = serde_json::Map::new();
                    obj.insert(name.clone(), v.to_json());
                    ids.push(id);
                    versions.push(version);
                    values.push(Value::Object(obj));
                }
                Err(r) => *self.report.rejected.entry(r.rule.to_owned()).or_default() += 1,
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        let c = self.pool.get().await?;
        let n = c
            .execute(
                &format!(
                    "UPDATE {t} AS t SET attributes = t.attributes || v.a, written_at = now()
                     FROM unnest($2::text[], $3::int8[], $4::jsonb[]) AS v(crm_id, version, a)
                     WHERE t.crm = $1 AND t.crm_id = v.crm_id AND t.deleted_at IS NULL
                       AND t.source_version <= v.version",
                    t = self.table
                ),
                &[&self.m.crm, &ids, &versions, &values],
            )
            .await?;
        self.report.updated += n;
        self.report.not_applied += ids.len() as u64 - n;
        Ok(())
    }
}

fn other<E: std::fmt::Display>(e: E) -> Error {
    Error::Other(e.to_string())
}

async fn bullhorn(cfg: &Config, a: &mut Applier<'_>) -> Result<()> {
    let field = a.m.attrs[0].field.clone();
    let entity = cfg
        .bullhorn
        .entities
        .iter()
        .find(|e| e.eq_ignore_ascii_case(&a.m.entity))
        .cloned()
        .unwrap_or_else(|| {
            if a.m.entity == "joborder" {
                "JobOrder".into()
            } else {
                "Candidate".into()
            }
        });
    let cc = crate::sources::bullhorn::client_config(&cfg.bullhorn).map_err(other)?;
    let client = crmflow_bullhorn::client::BullhornClient::connect(cc)
        .await
        .map_err(other)?;
    let mut last: i64 = 0;
    loop {
        let page = client
            .query::<Box<RawValue>>(
                &entity,
                &format!("{field} IS NOT NULL AND isDeleted = false AND id > {last}"),
                &format!("id,dateLastModified,{field}"),
                Some("id"),
                0,
                crmflow_bullhorn::wire::MAX_PAGE_COUNT as u32,
            )
            .await
            .map_err(other)?;
        a.report.requests += 1;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Key {
            id: i64,
            #[serde(default)]
            date_last_modified: i64,
        }
        let mut records = Vec::with_capacity(page.data.len());
        for raw in &page.data {
            let k: Key = serde_json::from_str(raw.get()).map_err(other)?;
            last = last.max(k.id);
            records.push((k.id.to_string(), k.date_last_modified, raw.get().to_owned()));
        }
        let n = records.len();
        a.page(records).await?;
        if n < crmflow_bullhorn::wire::MAX_PAGE_COUNT {
            return Ok(());
        }
    }
}

async fn hubspot(cfg: &Config, a: &mut Applier<'_>) -> Result<()> {
    let field = a.m.attrs[0].field.clone();
    let hs = cfg
        .hubspot
        .as_ref()
        .ok_or_else(|| Error::Other("no [hubspot] section".into()))?;
    let object = hs
        .objects
        .iter()
        .find(|o| o.entity.eq_ignore_ascii_case(&a.m.entity))
        .map(|o| o.object_type.clone())
        .ok_or_else(|| Error::Other(format!("[hubspot] reads no `{}` object", a.m.entity)))?;
    let client = crate::sources::hubspot::client(hs, &cfg.ingress)?;
    let mut after: Option<String> = None;
    loop {
        let params = crmflow_hubspot::client::ListParams {
            limit: Some(100),
            after: after.clone(),
            properties: vec![field.clone()],
            archived: false,
        };
        let page = client
            .get_page::<Box<RawValue>>(&object, &params)
            .await
            .map_err(other)?;
        a.report.requests += 1;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Key {
            id: String,
            #[serde(default)]
            updated_at: String,
        }
        let mut records = Vec::with_capacity(page.results.len());
        for raw in &page.results {
            let k: Key = serde_json::from_str(raw.get()).map_err(other)?;
            let version = crate::operators::hubspot::parse_date(&k.updated_at).unwrap_or(i64::MAX);
            records.push((k.id, version, raw.get().to_owned()));
        }
        a.page(records).await?;
        match page.next_after() {
            Some(next) => after = Some(next.to_owned()),
            None => return Ok(()),
        }
    }
}

async fn salesforce(cfg: &Config, a: &mut Applier<'_>) -> Result<()> {
    let field = a.m.attrs[0].field.clone();
    let object = cfg
        .salesforce
        .objects
        .iter()
        .find(|o| o.eq_ignore_ascii_case(&a.m.entity))
        .cloned()
        .unwrap_or_else(|| a.m.entity.clone());
    let cc = crate::sources::salesforce::client_config(&cfg.salesforce).map_err(other)?;
    let client = crmflow_salesforce::client::SalesforceClient::new(cc).map_err(other)?;
    let soql = format!("SELECT Id, SystemModstamp, {field} FROM {object} WHERE {field} != null");
    let mut page = client.query(&soql).await.map_err(other)?;
    loop {
        a.report.requests += 1;
        let records = page
            .records
            .iter()
            .map(|r| {
                let id = r.get("Id").and_then(Value::as_str).unwrap_or_default();
                let version = r
                    .get("SystemModstamp")
                    .and_then(Value::as_str)
                    .and_then(|t| {
                        chrono::DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z").ok()
                    })
                    .map_or(i64::MAX, |t| t.timestamp_millis());
                (id.to_owned(), version, Value::Object(r.clone()).to_string())
            })
            .collect();
        a.page(records).await?;
        match (page.done, page.next_records_url.take()) {
            (false, Some(next)) => page = client.query_more(&next).await.map_err(other)?,
            _ => return Ok(()),
        }
    }
}
