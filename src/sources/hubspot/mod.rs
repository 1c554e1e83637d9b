//! The HubSpot source over `crmflow_hubspot::client`: contacts, the jobs custom object and deals
//! into `crm.raw.hubspot.<entity>`.
//!
//! - [`record`]: object > `ChangeEvent` (version = modified time; archived objects are deletes),
//!   shared with the webhook ingress (`crate::ingress`), so a poll and a webhook that see the same
//!   version produce the same `event_id`.
//! - [`client`]: the client built from `[hubspot]` (private-app token, or OAuth client id, secret
//!   and refresh token).
//! - [`poller`]: per object, a snapshot by list, then keyset search by modified time, then the
//!   archived objects as tombstones. [`HubspotSource`] runs one poller per configured object in the
//!   configured mode (registered as [`KIND`]).

pub mod poller;
pub mod record;

use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::cursors::Phase;
use super::{Source, SourceError, SourceIo, SourceKind};
use crate::config::{Config, ConfigError, HubspotConfig, HubspotMode, IngressConfig};
use crmflow_hubspot::client::{Auth, ClientConfig, HubSpotClient};

/// The client configuration of `[hubspot]`: a private-app token when set, else OAuth (the client
/// secret falls back to `ingress.client_secret`, the same app's secret).
pub fn client_config(
    hs: &HubspotConfig,
    ingress: &IngressConfig,
) -> Result<ClientConfig, ConfigError> {
    let auth = match (&hs.access_token, &hs.client_id, &hs.refresh_token) {
        (Some(token), _, _) => Auth::PrivateApp {
            token: token.clone(),
        },
        (None, Some(client_id), Some(refresh)) => Auth::OAuth {
            client_id: client_id.clone(),
            client_secret: hs
                .client_secret
                .clone()
                .or_else(|| ingress.client_secret.clone())
                .ok_or(ConfigError::Missing {
                    key: "hubspot.client_secret",
                    env: "HUBSPOT_CLIENT_SECRET",
                })?,
            refresh_token: refresh.clone(),
        },
        (None, Some(_), None) => {
            return Err(ConfigError::Missing {
                key: "hubspot.refresh_token",
                env: "HUBSPOT_REFRESH_TOKEN",
            })
        }
        (None, None, _) => {
            return Err(ConfigError::Missing {
                key: "hubspot.access_token",
                env: "HUBSPOT_ACCESS_TOKEN",
            })
        }
    };
    let mut c = ClientConfig::new(hs.base_url.clone(), auth);
    c.search_page_max = hs.page_size.max(1);
    c.requests_per_10s = hs.requests_per_10s.max(1);
    c.search_requests_per_sec = hs.search_requests_per_sec.max(1);
    c.max_concurrent_requests = hs.max_concurrent_requests.max(1);
    Ok(c)
}

/// The client of `[hubspot]`.
pub fn client(hs: &HubspotConfig, ingress: &IngressConfig) -> Result<HubSpotClient, ConfigError> {
    HubSpotClient::new(client_config(hs, ingress)?)
        .map_err(|e| ConfigError::Invalid(format!("hubspot: {e}")))
}

/// `source` column of this source's cursors.
pub const SOURCE: &str = record::CRM;

/// The HubSpot entry of [`super::KINDS`]: on when `[hubspot]` is configured.
pub const KIND: SourceKind = SourceKind {
    name: SOURCE,
    configured: |cfg| cfg.hubspot.is_some(),
    how_to_configure: "add a [hubspot] section or set HUBSPOT_ACCESS_TOKEN",
    build,
};

fn build(cfg: &Config) -> Result<Box<dyn Source>, SourceError> {
    let hubspot = cfg.hubspot.clone().ok_or(ConfigError::Missing {
        key: "hubspot.access_token",
        env: "HUBSPOT_ACCESS_TOKEN",
    })?;
    Ok(Box::new(HubspotSource {
        hubspot,
        ingress: cfg.ingress.clone(),
    }))
}

/// The HubSpot source of one configuration.
pub struct HubspotSource {
    hubspot: HubspotConfig,
    ingress: IngressConfig,
}

impl Source for HubspotSource {
    fn crm(&self) -> &'static str {
        SOURCE
    }

    fn entities(&self) -> Vec<String> {
        self.hubspot
            .objects
            .iter()
            .map(|o| o.entity.clone())
            .collect()
    }

    fn run(&self, io: SourceIo) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(read(&self.hubspot, &self.ingress, io))
    }
}

/// Runs the source alone (no lease) until `shutdown`, or caught up in one-shot mode (tests and the
/// benchmark drive it this way; `crmflow run` goes through [`super::run`]).
pub async fn run_with(
    cfg: &Config,
    shutdown: CancellationToken,
    until_caught_up: bool,
) -> Result<(), SourceError> {
    let hubspot = cfg.hubspot.clone().ok_or(ConfigError::Missing {
        key: "hubspot.access_token",
        env: "HUBSPOT_ACCESS_TOKEN",
    })?;
    let io = SourceIo::unfenced(cfg, SOURCE, shutdown, until_caught_up)?;
    read(&hubspot, &cfg.ingress, io).await
}

/// Reads every configured object through `io`: one poller each. Poll mode snapshots (when no
/// cursor exists) and polls; webhook mode snapshots and then leaves the changes to the ingress
/// (phase `streaming`); both does the two. HubSpot's webhook subscription is part of the app and
/// always open, so the ingress (run beside) receives every change from before the snapshot starts.
async fn read(
    hs: &HubspotConfig,
    ingress: &IngressConfig,
    io: SourceIo,
) -> Result<(), SourceError> {
    let client = client(hs, ingress)?;
    let stop = io.shutdown.child_token();
    let pollers = hs.objects.iter().map(|o| {
        let settings = poller::Settings {
            entity: o.entity.clone(),
            object_type: o.object_type.clone(),
            properties: hs.properties_of(o),
            page_size: hs.page_size.max(1),
            overlap_ms: hs.overlap_ms as i64,
            poll_interval: Duration::from_secs(hs.poll_interval_secs.max(1)),
            incremental: hs.mode != HubspotMode::Webhook,
            after_snapshot: if hs.mode == HubspotMode::Poll {
                Phase::Polling
            } else {
                Phase::Streaming
            },
        };
        let p = poller::ObjectPoller::new(
            client.clone(),
            settings,
            io.emitter(&o.entity, "poll"),
            io.cursors().clone(),
        );
        tokio::spawn(p.run(stop.clone(), io.until_caught_up))
    });
    let mut first_error = None;
    for joined in futures::future::join_all(pollers).await {
        let r = joined
            .map_err(|e| SourceError::Stuck(format!("hubspot poller task failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = r {
            stop.cancel();
            first_error.get_or_insert(e);
        }
    }
    // In webhook mode the pollers return after the snapshot; the source stays active (holding its
    // lease) until shutdown, so a standby does not snapshot again.
    if first_error.is_none() && hs.mode == HubspotMode::Webhook && !io.until_caught_up {
        io.shutdown.cancelled().await;
    }
    io.flush();
    tracing::info!(requests = client.requests_sent(), "hubspot source stopped");
    first_error.map_or(Ok(()), Err)
}
