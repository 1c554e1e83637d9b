//! The HubSpot source over `crmflow_hubspot::client`: contacts, the jobs custom object and deals
//! into `crm.raw.hubspot.<entity>`.
//!
//! - [`record`]: object > `ChangeEvent` (version = modified time; archived objects are deletes),
//!   shared with the webhook ingress (`crate::ingress`), so a poll and a webhook that see the same
//!   version produce the same `event_id`.
//! - [`client`]: the client built from `[hubspot]` (private-app token, or OAuth client id, secret
//!   and refresh token).

pub mod record;

use crate::config::{ConfigError, HubspotConfig, IngressConfig};
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
