//! HubSpot connector: the wire protocol of HubSpot's CRM v3 API and webhooks, both sides of it. It knows
//! nothing of the pipeline.
//!
//! Entry points:
//! - [`wire`]: serde types both sides exchange — [`wire::CrmObject`], [`wire::CollectionPage`],
//!   [`wire::SearchPage`], [`wire::SearchRequest`] (filters, sorts, `after`), [`wire::BatchReadRequest`] /
//!   [`wire::BatchResponse`], [`wire::PropertyDef`], [`wire::ErrorBody`], [`wire::TokenResponse`],
//!   [`wire::WebhookEvent`]; and [`wire::modified_property`] (`lastmodifieddate` for contacts,
//!   `hs_lastmodifieddate` otherwise).
//! - [`client`]: [`client::HubSpotClient`] built from a [`client::ClientConfig`] with [`client::Auth`]
//!   (private-app token or OAuth refresh token). Calls: `get_page` (list, `archived=true` for deleted
//!   objects), `get_object`, `search`, `search_modified` (incremental by modified time, ascending),
//!   `batch_read` (chunks of 100), `properties`; `rate_limits()` shows the last `X-HubSpot-RateLimit-*`
//!   headers. [`client::api::modified_search_request`] builds the incremental search body;
//!   [`client::api::SEARCH_RESULT_CAP`] (10,000) and [`client::api::BATCH_READ_MAX`] (100) are HubSpot's caps.
//!   Errors are [`client::ClientError`] with `is_retriable()` / `is_daily_limit()` / `status()`.
//! - [`signature`]: webhook signature v3 — [`signature::sign_v3`], [`signature::verify_v3`] (constant time,
//!   5-minute timestamp window), the header names.
//! - `sim` (feature `sim`): an in-memory HubSpot simulator served by axum on a real socket
//!   (`sim::Simulator::start(sim::SimConfig::for_tests())` → `sim::SimHandle`: `base_url()`,
//!   `private_app_token()`, writes `create`/`import`/`update`/`archive`/`restore`/`merge`, ground truth
//!   `records`/`get`/`count`, `set_faults`, `expire_access_tokens`, `set_webhook_target`, `stats`), run as
//!   `crmflow sim hubspot`; it also delivers signed webhooks.

pub mod client;
#[cfg(test)]
mod proptests;
pub mod signature;
pub mod wire;

#[cfg(feature = "sim")]
pub mod sim;
