//! HubSpot's [`Lister`]: `GET /crm/v3/objects/{type}?limit=100&after={last id + 1}&properties=<modified>`
//! (the list endpoint pages in id order and its `after` is the next id, so it is a keyset listing);
//! re-reads and gone checks are `POST .../batch/read` (100 ids per request). The listing asks for live
//! objects only: an archived, GDPR-deleted or merged-away object is absent from it, and a live row
//! for it in Postgres is exactly the drift to repair (`gone`: the batch read confirms it, then a
//! tombstone). The client has its own budget inside `reconcile.api_share` of `hubspot.requests_per_10s`
//! (its bucket's burst included: [`crate::config::ReconcileConfig::tenth_burst_limit`]). The list
//! endpoint has no upper bound nor a cheap way to learn the id span, so HubSpot is listed as one
//! range.

use crmflow_hubspot::client::{HubSpotClient, ListParams};
use crmflow_hubspot::wire::{modified_property, CrmObject};
use futures::future::BoxFuture;
use serde_json::value::RawValue;

use super::diff::{IdOrder, Listed};
use super::paging;
use super::{Finding, Lister, ReconcileError, H_OP, H_REASON};
use crate::config::{Config, HubspotConfig, HubspotObject};
use crate::kafka::trace::TraceParent;
use crate::kafka::Delivery;
use crate::model::Op;
use crate::sources::emit::{Emitter, Record};
use crate::sources::hubspot::poller::client_error;
use crate::sources::hubspot::record;
use crate::sources::SourceError;

/// The CRM name.
pub const CRM: &str = record::CRM;

/// Lists and re-reads HubSpot objects.
pub struct HubspotLister {
    client: HubSpotClient,
    cfg: HubspotConfig,
    page_size: u32,
}

impl HubspotLister {
    /// A client with reconciliation's share of the budget (no request yet).
    pub fn new(cfg: &Config, hs: &HubspotConfig) -> Result<Self, ReconcileError> {
        let mut cc =
            crate::sources::hubspot::client_config(hs, &cfg.ingress).map_err(SourceError::from)?;
        cc.requests_per_10s = cfg.reconcile.tenth_burst_limit(hs.requests_per_10s);
        let page_size = cfg.reconcile.page(cc.list_page_max);
        let client = HubSpotClient::new(cc).map_err(client_error)?;
        Ok(Self {
            client,
            cfg: hs.clone(),
            page_size,
        })
    }

    fn object(&self, entity: &str) -> Result<&HubspotObject, ReconcileError> {
        self.cfg
            .objects
            .iter()
            .find(|o| o.entity == entity)
            .ok_or_else(|| {
                ReconcileError::Config(format!("hubspot: no object for entity {entity}"))
            })
    }

    async fn list_page(
        &self,
        entity: &str,
        after: Option<&str>,
    ) -> Result<Vec<Listed>, ReconcileError> {
        let o = self.object(entity)?;
        let next = paging::numeric_after(CRM, entity, after)?.map(|n| (n + 1).to_string());
        let modified = modified_property(&o.object_type);
        let page = self
            .client
            .get_page::<CrmObject>(
                &o.object_type,
                &ListParams {
                    limit: Some(self.page_size),
                    after: next,
                    properties: vec![modified.to_owned()],
                    archived: false,
                },
            )
            .await
            .map_err(client_error)?;
        Ok(page
            .results
            .iter()
            .map(|obj| Listed {
                id: obj.id.clone(),
                version: record::version(obj, modified).unwrap_or(0),
                deleted: obj.archived,
            })
            .collect())
    }

    async fn read(
        &self,
        entity: &str,
        ids: &[String],
        properties: &[String],
    ) -> Result<Vec<CrmObject>, ReconcileError> {
        let o = self.object(entity)?;
        self.client
            .batch_read::<CrmObject>(&o.object_type, ids, properties, false)
            .await
            .map_err(|e| ReconcileError::Source(client_error(e)))
    }

    async fn reread_and_emit(
        &self,
        emitter: &Emitter,
        findings: &[Finding],
    ) -> Result<Vec<Delivery>, ReconcileError> {
        let entity = emitter.entity();
        let o = self.object(entity)?;
        let modified = modified_property(&o.object_type);
        let rereads = paging::Rereads::new(findings);
        let objs = self
            .read(entity, &rereads.ids, &self.cfg.properties_of(o))
            .await?;
        let tp = TraceParent::current_or_new();
        let mut deliveries = Vec::with_capacity(objs.len());
        // A merged-away id answers with its survivor: only the ids asked for are emitted here.
        for obj in objs.iter().filter(|o| rereads.wanted(&o.id)) {
            let Some(version) = record::version(obj, modified) else {
                continue;
            };
            let json = serde_json::to_string(obj).unwrap_or_default();
            let raw = RawValue::from_string(json)
                .map_err(|e| ReconcileError::Config(format!("hubspot {}: {e}", obj.id)))?;
            let reason = rereads.reason(&obj.id);
            let sent = emitter
                .emit_tagged(
                    Record {
                        id: &obj.id,
                        version,
                        op: Op::Upsert,
                        raw: &raw,
                    },
                    Vec::new(),
                    &tp,
                    &[(H_OP, "upsert"), (H_REASON, reason)],
                )
                .await?;
            deliveries.extend(sent);
        }
        Ok(deliveries)
    }
}

impl Lister for HubspotLister {
    fn crm(&self) -> &'static str {
        CRM
    }

    fn entities(&self) -> Vec<String> {
        self.cfg.objects.iter().map(|o| o.entity.clone()).collect()
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
        _through: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Listed>, ReconcileError>> {
        Box::pin(self.list_page(entity, after))
    }

    fn still_present<'a>(
        &'a self,
        entity: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<String>, ReconcileError>> {
        Box::pin(async move {
            let o = self.object(entity)?;
            let modified = modified_property(&o.object_type).to_owned();
            let found = self.read(entity, ids, &[modified]).await?;
            Ok(paging::present(ids, found.iter().map(|o| o.id.as_str())))
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
        record::bare_record(id)
    }
}
