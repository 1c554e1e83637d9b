//! Bullhorn's [`Lister`]: `GET query/{Entity}?where=id>{after} AND id<={through}&fields=id,
//! dateLastModified,isDeleted&orderBy=id&count=500` (a keyset listing: each page starts after the
//! last id of the one before, so records inserted or removed meanwhile never shift a page),
//! soft-deleted records included. The id span is learnt with one `orderBy=-id&count=1` request and
//! split into ranges the engine lists concurrently. Re-reads are `GET entity/{Entity}/{id,id,..}`
//! with the ingest's `fields` list, emitted exactly as the poller emits them. The client has its
//! own bucket inside `reconcile.api_share` of `bullhorn.requests_per_minute`
//! ([`crate::config::ReconcileConfig::per_minute_limit`]: rate plus burst within the share).

use crmflow_bullhorn::client::BullhornClient;
use futures::future::BoxFuture;
use serde_json::value::RawValue;

use super::diff::{IdOrder, Listed};
use super::paging::{self, IdRange};
use super::{Finding, Lister, ReconcileError, H_OP, H_REASON};
use crate::config::Config;
use crate::kafka::trace::TraceParent;
use crate::kafka::Delivery;
use crate::model::Op;
use crate::sources::bullhorn::record::RecordMeta;
use crate::sources::bullhorn::{client_config, fields_of};
use crate::sources::emit::{Emitter, Record};

/// The CRM name.
pub const CRM: &str = "bullhorn";

/// Fields of a listing page.
const LIST_FIELDS: &str = "id,dateLastModified,isDeleted";

/// Bullhorn's largest `count`.
const MAX_PAGE: u32 = 500;

/// Lists and re-reads Bullhorn entities.
pub struct BullhornLister {
    client: BullhornClient,
    cfg: crate::config::BullhornConfig,
    page_size: u32,
    reread_batch: usize,
}

impl BullhornLister {
    /// A client with reconciliation's share of the budget, logged in.
    pub async fn connect(cfg: &Config) -> Result<Self, ReconcileError> {
        let mut cc = client_config(&cfg.bullhorn)?;
        let (rate, burst) = cfg
            .reconcile
            .per_minute_limit(cfg.bullhorn.requests_per_minute);
        cc.requests_per_minute = rate;
        cc.burst = burst;
        // Every concurrent listing, plus a re-read or gone check beside each.
        cc.max_concurrent_requests = cc
            .max_concurrent_requests
            .max(2 * cfg.reconcile.concurrency());
        let client = BullhornClient::connect(cc)
            .await
            .map_err(crate::sources::SourceError::from)?;
        Ok(Self {
            client,
            cfg: cfg.bullhorn.clone(),
            page_size: cfg.reconcile.page(MAX_PAGE),
            reread_batch: cfg.reconcile.reread_batch.clamp(1, MAX_PAGE) as usize,
        })
    }

    async fn list_page(
        &self,
        entity: &str,
        after: Option<&str>,
        through: Option<&str>,
    ) -> Result<Vec<Listed>, ReconcileError> {
        let after = paging::numeric_after(CRM, entity, after)?.unwrap_or(0);
        let where_ = match paging::numeric_after(CRM, entity, through)? {
            Some(t) => format!("id>{after} AND id<={t}"),
            None => format!("id>{after}"),
        };
        self.query(entity, &where_, "id", self.page_size).await
    }

    async fn query(
        &self,
        entity: &str,
        where_: &str,
        order_by: &str,
        count: u32,
    ) -> Result<Vec<Listed>, ReconcileError> {
        let page = self
            .client
            .query::<Box<RawValue>>(entity, where_, LIST_FIELDS, Some(order_by), 0, count)
            .await
            .map_err(crate::sources::SourceError::from)?;
        page.data
            .iter()
            .map(|raw| {
                let meta = RecordMeta::parse(entity, raw)?;
                Ok(Listed {
                    id: meta.id.to_string(),
                    version: meta.date_last_modified.unwrap_or(0),
                    deleted: meta.deleted(),
                })
            })
            .collect()
    }

    async fn get(
        &self,
        entity: &str,
        ids: &[String],
        fields: &str,
    ) -> Result<Vec<Box<RawValue>>, ReconcileError> {
        let ids: Vec<i64> = ids.iter().filter_map(|i| i.parse().ok()).collect();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(self.reread_batch) {
            let got = self
                .client
                .get_entities::<Box<RawValue>>(entity, chunk, fields)
                .await
                .map_err(crate::sources::SourceError::from)?;
            out.extend(got);
        }
        Ok(out)
    }

    async fn reread_and_emit(
        &self,
        emitter: &Emitter,
        findings: &[Finding],
    ) -> Result<Vec<Delivery>, ReconcileError> {
        let entity = emitter.entity();
        let rereads = paging::Rereads::new(findings);
        let records = self
            .get(entity, &rereads.ids, &fields_of(&self.cfg, entity))
            .await?;
        let tp = TraceParent::current_or_new();
        let mut deliveries = Vec::with_capacity(records.len());
        for raw in &records {
            let meta = RecordMeta::parse(entity, raw)?;
            let Some(version) = meta.date_last_modified else {
                continue;
            };
            let op = if meta.deleted() {
                Op::Delete
            } else {
                Op::Upsert
            };
            let id = meta.id.to_string();
            let op_name = if op == Op::Delete { "delete" } else { "upsert" };
            let sent = emitter
                .emit_tagged(
                    Record {
                        id: &id,
                        version,
                        op,
                        raw,
                    },
                    Vec::new(),
                    &tp,
                    &[(H_OP, op_name), (H_REASON, rereads.reason(&id))],
                )
                .await?;
            deliveries.extend(sent);
        }
        Ok(deliveries)
    }
}

impl Lister for BullhornLister {
    fn crm(&self) -> &'static str {
        CRM
    }

    fn entities(&self) -> Vec<String> {
        self.cfg.entities.clone()
    }

    fn order(&self) -> IdOrder {
        IdOrder::Numeric
    }

    fn requests(&self) -> u64 {
        self.client.requests_sent()
    }

    fn list<'a>(
        &'a self,
        entity: &'a str,
        after: Option<&'a str>,
        through: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Listed>, ReconcileError>> {
        Box::pin(self.list_page(entity, after, through))
    }

    fn split<'a>(
        &'a self,
        entity: &'a str,
        n: usize,
    ) -> BoxFuture<'a, Result<Vec<IdRange>, ReconcileError>> {
        Box::pin(async move {
            if n <= 1 {
                return Ok(vec![IdRange::all()]);
            }
            let last = self.query(entity, "id>0", "-id", 1).await?;
            let max = last.first().and_then(|l| l.id.parse().ok()).unwrap_or(0);
            Ok(paging::numeric_ranges(max, n))
        })
    }

    fn still_present<'a>(
        &'a self,
        entity: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<String>, ReconcileError>> {
        Box::pin(async move {
            let found = self.get(entity, ids, "id").await?;
            let found = found
                .iter()
                .map(|raw| Ok(RecordMeta::parse(entity, raw)?.id.to_string()))
                .collect::<Result<Vec<String>, ReconcileError>>()?;
            Ok(paging::present(ids, found.iter().map(String::as_str)))
        })
    }

    fn reread<'a>(
        &'a self,
        emitter: &'a Emitter,
        findings: &'a [Finding],
    ) -> BoxFuture<'a, Result<Vec<Delivery>, ReconcileError>> {
        Box::pin(self.reread_and_emit(emitter, findings))
    }

    fn tombstone_raw(&self, id: &str) -> String {
        match id.parse::<i64>() {
            Ok(n) => format!("{{\"id\":{n}}}"),
            Err(_) => serde_json::json!({ "id": id }).to_string(),
        }
    }
}
