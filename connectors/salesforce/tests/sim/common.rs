//! Shared helpers: start a simulator, build clients that trust its CA.

use std::time::Duration;

use crmflow_salesforce::client::{AuthConfig, ClientConfig, SalesforceClient};
use crmflow_salesforce::sim::{SimConfig, SimHandle, Simulator};
use secrecy::SecretString;
use url::Url;

pub const JWT_PRIVATE_KEY: &str = include_str!("../fixtures/jwt_test_key.pem");
pub const JWT_PUBLIC_KEY: &str = include_str!("../fixtures/jwt_test_key.pub.pem");

pub async fn start(mut cfg: SimConfig) -> SimHandle {
    cfg.jwt_public_key_pem
        .get_or_insert_with(|| JWT_PUBLIC_KEY.to_string());
    Simulator::start(cfg).await.expect("simulator starts")
}

pub fn base(sim: &SimHandle) -> Url {
    Url::parse(&sim.base_url()).expect("base url")
}

/// Client credentials against the simulator, fast retries.
pub fn cc_config(sim: &SimHandle) -> ClientConfig {
    let c = sim.config();
    let mut cfg = ClientConfig::new(
        base(sim),
        AuthConfig::ClientCredentials {
            client_id: c.client_id.clone(),
            client_secret: SecretString::from(c.client_secret.clone()),
        },
    );
    cfg.ca_pem = Some(sim.ca_pem().into_bytes());
    cfg.backoff_base = Duration::from_millis(5);
    cfg.backoff_max = Duration::from_millis(50);
    cfg.request_timeout = Duration::from_secs(10);
    cfg
}

pub fn cc_client(sim: &SimHandle) -> SalesforceClient {
    SalesforceClient::new(cc_config(sim)).expect("client")
}
