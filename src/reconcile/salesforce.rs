//! Salesforce's [`Lister`]: `queryAll` of `SELECT Id, SystemModstamp, IsDeleted FROM {object}
//! WHERE Id > '{after}' ORDER BY Id LIMIT 2000` (a keyset listing on `Id`, byte order; records in
//! the recycle bin, deleted or merged away, are listed with `IsDeleted`). The version is
//! `SystemModstamp` in ms, as the Salesforce source emits it. An id absent from the listing (purged:
//! hard-deleted, or a merge loser after the bin was emptied) is `gone` once a `queryAll` by id
//! confirms it. Re-reads are `queryAll` of `SELECT {the source's fields} ... WHERE Id IN (...)`,
//! emitted by the source's own `emit_records` (so the version and op rules are the poller's).
//!
//! Budget: Salesforce limits a day's requests, not a minute's; the client's gate waits once the
//! org's usage reaches `salesforce.budget_share x reconcile.api_share` of the daily allowance, so
//! reconciliation only runs while the org is well inside its budget and ingest keeps the rest.

use std::sync::atomic::{AtomicU64, Ordering};

use crmflow_salesforce::client::SalesforceClient;
use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::diff::{IdOrder, Listed};
use super::paging;
use super::{Finding, Lister, ReconcileError, H_OP, H_REASON};
use crate::config::{Config, SalesforceConfig};
use crate::kafka::trace::TraceParent;
use crate::kafka::Delivery;
use crate::model::Op;
use crate::sources::emit::Emitter;
use crate::sources::salesforce::poller::{emit_records_tagged, meta};
use crate::sources::salesforce::{client_config, fields_of, SOURCE};
use crate::sources::SourceError;

/// The CRM name.
pub const CRM: &str = SOURCE;

/// Salesforce's largest query page.
const MAX_PAGE: u32 = 2_000;

/// Lists and re-reads Salesforce objects.
pub struct SalesforceLister {
    client: SalesforceClient,
    cfg: SalesforceConfig,
    page_size: u32,
    reread_batch: usize,
    requests: AtomicU64,
}

/// An id as a SOQL string literal (ids are alphanumeric; anything else is dropped).
fn literal(id: &str) -> String {
    let clean: String = id.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("'{clean}'")
}

/// The listing query of the page after `after`, through `through`.
pub fn list_soql(object: &str, after: Option<&str>, through: Option<&str>, limit: u32) -> String {
    let mut conds = Vec::new();
    if let Some(a) = after {
        conds.push(format!("Id > {}", literal(a)));
    }
    if let Some(t) = through {
        conds.push(format!("Id <= {}", literal(t)));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    format!("SELECT Id, SystemModstamp, IsDeleted FROM {object}{filter} ORDER BY Id LIMIT {limit}")
}

/// The query reading `fields` of `ids`.
pub fn ids_soql(object: &str, fields: &[String], ids: &[String]) -> String {
    let ids: Vec<String> = ids.iter().map(|i| literal(i)).collect();
    format!(
        "SELECT {} FROM {object} WHERE Id IN ({})",
        fields.join(", "),
        ids.join(", ")
    )
}

impl SalesforceLister {
    /// A client whose budget gate holds reconciliation to its share (no request yet).
    pub fn new(cfg: &Config) -> Result<Self, ReconcileError> {
        let sf = &cfg.salesforce;
        let mut cc = client_config(sf)?;
        cc.budget_share = sf.budget_share * cfg.reconcile.share();
        let page_size = cfg.reconcile.page(MAX_PAGE);
        cc.query_batch_size = Some(page_size.clamp(200, MAX_PAGE));
        let client = SalesforceClient::new(cc).map_err(SourceError::from)?;
        Ok(Self {
            client,
            cfg: sf.clone(),
            page_size,
            reread_batch: cfg.reconcile.reread_batch.clamp(1, 200) as usize,
            requests: AtomicU64::new(0),
        })
    }

    /// Every row of a `queryAll`, following `nextRecordsUrl`; counts the requests.
    async fn query_all(&self, soql: &str) -> Result<Vec<Map<String, Value>>, ReconcileError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut page = self
            .client
            .query_all(soql)
            .await
            .map_err(SourceError::from)?;
        let mut out = std::mem::take(&mut page.records);
        while let (false, Some(next)) = (page.done, page.next_records_url.take()) {
            self.requests.fetch_add(1, Ordering::Relaxed);
            page = self
                .client
                .query_more(&next)
                .await
                .map_err(SourceError::from)?;
            out.append(&mut page.records);
        }
        Ok(out)
    }

    async fn list_page(
        &self,
        object: &str,
        after: Option<&str>,
        through: Option<&str>,
    ) -> Result<Vec<Listed>, ReconcileError> {
        let rows = self
            .query_all(&list_soql(object, after, through, self.page_size))
            .await?;
        rows.iter()
            .map(|r| {
                let (cursor, op) = meta(object, r)?;
                Ok(Listed {
                    id: cursor.id,
                    version: cursor.modstamp_ms,
                    deleted: op == Op::Delete,
                })
            })
            .collect()
    }

    /// The records of `ids` (recycle bin included), `reread_batch` ids per query.
    async fn read(
        &self,
        object: &str,
        ids: &[String],
        fields: &[String],
    ) -> Result<Vec<Map<String, Value>>, ReconcileError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(self.reread_batch) {
            out.extend(self.query_all(&ids_soql(object, fields, chunk)).await?);
        }
        Ok(out)
    }

    async fn reread_and_emit(
        &self,
        emitter: &Emitter,
        findings: &[Finding],
    ) -> Result<Vec<Delivery>, ReconcileError> {
        let object = emitter.entity().to_owned();
        let rereads = paging::Rereads::new(findings);
        let records = self
            .read(&object, &rereads.ids, &fields_of(&self.cfg, &object))
            .await?;
        let tp = TraceParent::current_or_new();
        let tags = |id: &str, op: Op| {
            let op = if op == Op::Delete { "delete" } else { "upsert" };
            vec![(H_OP, op), (H_REASON, rereads.reason(id))]
        };
        let (deliveries, _) = emit_records_tagged(emitter, &object, &records, &tp, &tags).await?;
        Ok(deliveries)
    }
}

impl Lister for SalesforceLister {
    fn crm(&self) -> &'static str {
        CRM
    }

    fn entities(&self) -> Vec<String> {
        self.cfg.objects.clone()
    }

    fn order(&self) -> IdOrder {
        IdOrder::Text
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn list<'a>(
        &'a self,
        entity: &'a str,
        after: Option<&'a str>,
        through: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Listed>, ReconcileError>> {
        Box::pin(self.list_page(entity, after, through))
    }

    fn still_present<'a>(
        &'a self,
        entity: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<String>, ReconcileError>> {
        Box::pin(async move {
            let found = self.read(entity, ids, &["Id".to_owned()]).await?;
            Ok(paging::present(
                ids,
                found
                    .iter()
                    .filter_map(|r| r.get("Id").and_then(Value::as_str)),
            ))
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
        serde_json::json!({ "Id": id, "IsDeleted": true }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(
            list_soql("Contact", None, None, 2000),
            "SELECT Id, SystemModstamp, IsDeleted FROM Contact ORDER BY Id LIMIT 2000"
        );
        assert_eq!(
            list_soql(
                "Contact",
                Some("003000000000001AAA"),
                Some("003000000000009AAA"),
                20
            ),
            "SELECT Id, SystemModstamp, IsDeleted FROM Contact WHERE Id > '003000000000001AAA' \
             AND Id <= '003000000000009AAA' ORDER BY Id LIMIT 20"
        );
        assert_eq!(
            ids_soql(
                "Contact",
                &["Id".into(), "Email".into()],
                &["003A".into(), "003B' OR Id != '".into()]
            ),
            "SELECT Id, Email FROM Contact WHERE Id IN ('003A', '003BORId')"
        );
    }
}
