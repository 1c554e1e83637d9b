//! The Salesforce source ([`SalesforceSource`], registered as [`KIND`]), poll mode: one poller per object
//! ([`poller`]) reads `queryAll` by `(SystemModstamp, Id)` — ties paged through with the id — so soft deletes
//! (`IsDeleted`) and merges arrive as versions too. Before each poll it asks the deleted-records window
//! whether it still covers the cursor; when it does not (the delete log was purged past it), deletions may
//! have been lost: it says so and resyncs that object from the beginning. Cursors live in `source_cursors`
//! under source `salesforce`, keyed by object name. The client is `crmflow_salesforce::client`.

pub mod cdc;
pub mod poller;

use std::time::Duration;

use crmflow_salesforce::client::{AuthConfig, ClientConfig, ClientError, SalesforceClient};
use futures::future::BoxFuture;
use secrecy::SecretString;
use tracing::info;

use super::cursors::{Phase, PhaseState};
use super::{Source, SourceError, SourceIo, SourceKind};
use crate::config::{Config, ConfigError, SalesforceAuth, SalesforceConfig, SalesforceMode};
use crmflow_salesforce::pubsub::{Credentials, PubSubClient, PubSubConfig, DEFAULT_ENDPOINT};

/// `source` column of this source's cursors, and the `crm` of its events.
pub const SOURCE: &str = "salesforce";

impl From<ClientError> for SourceError {
    fn from(e: ClientError) -> Self {
        let retriable = e.is_retriable();
        SourceError::client(SOURCE, retriable, e)
    }
}

fn missing(key: &'static str, env: &'static str) -> SourceError {
    SourceError::Config(ConfigError::Missing { key, env })
}

fn bad(message: String) -> SourceError {
    SourceError::client(SOURCE, false, ClientError::Config(message))
}

/// The client settings of a Salesforce configuration.
pub fn client_config(cfg: &SalesforceConfig) -> Result<ClientConfig, SourceError> {
    let url =
        |s: &str, key: &str| url::Url::parse(s).map_err(|e| bad(format!("salesforce.{key}: {e}")));
    let login_url = url(&cfg.login_url, "login_url")?;
    let auth = match cfg.auth {
        SalesforceAuth::ClientCredentials => AuthConfig::ClientCredentials {
            client_id: cfg
                .client_id
                .clone()
                .ok_or_else(|| missing("salesforce.client_id", "CRMFLOW_SALESFORCE__CLIENT_ID"))?,
            client_secret: cfg.client_secret.clone().ok_or_else(|| {
                missing(
                    "salesforce.client_secret",
                    "CRMFLOW_SALESFORCE__CLIENT_SECRET",
                )
            })?,
        },
        SalesforceAuth::JwtBearer => {
            let path = cfg.private_key_file.clone().ok_or_else(|| {
                missing(
                    "salesforce.private_key_file",
                    "CRMFLOW_SALESFORCE__PRIVATE_KEY_FILE",
                )
            })?;
            let pem = std::fs::read_to_string(&path).map_err(|e| {
                bad(format!(
                    "salesforce.private_key_file {}: {e}",
                    path.display()
                ))
            })?;
            AuthConfig::JwtBearer {
                client_id: cfg.client_id.clone().ok_or_else(|| {
                    missing("salesforce.client_id", "CRMFLOW_SALESFORCE__CLIENT_ID")
                })?,
                username: cfg.username.clone().ok_or_else(|| {
                    missing("salesforce.username", "CRMFLOW_SALESFORCE__USERNAME")
                })?,
                private_key_pem: SecretString::from(pem),
                audience: cfg.jwt_audience.clone(),
            }
        }
        SalesforceAuth::AccessToken => AuthConfig::AccessToken {
            token: cfg.access_token.clone().ok_or_else(|| {
                missing(
                    "salesforce.access_token",
                    "CRMFLOW_SALESFORCE__ACCESS_TOKEN",
                )
            })?,
        },
    };
    let mut cc = ClientConfig::new(login_url, auth);
    cc.instance_url = cfg
        .instance_url
        .as_deref()
        .map(|s| url(s, "instance_url"))
        .transpose()?;
    cc.api_version = cfg.api_version.clone();
    cc.query_batch_size = Some(cfg.page_size.clamp(200, 2000));
    cc.budget_share = cfg.budget_share;
    cc.request_timeout = Duration::from_secs(cfg.request_timeout_secs.max(1));
    cc.budget_recheck = Duration::from_secs(cfg.budget_recheck_secs.max(1));
    if let Some(ca) = &cfg.ca_file {
        cc = cc
            .with_ca_file(ca)
            .map_err(|e| bad(format!("salesforce.ca_file: {e}")))?;
    }
    Ok(cc)
}

/// The field list of an object: the configured one plus `Id`, `SystemModstamp` and `IsDeleted`.
pub fn fields_of(cfg: &SalesforceConfig, object: &str) -> Vec<String> {
    let mut out: Vec<String> = cfg
        .fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(object))
        .map(|(_, v)| {
            v.split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for required in ["Id", "SystemModstamp", "IsDeleted"] {
        if !out.iter().any(|f| f.eq_ignore_ascii_case(required)) {
            out.push(required.to_string());
        }
    }
    out
}

/// The Salesforce entry of [`super::KINDS`]: on when `salesforce.enabled = true`.
pub const KIND: SourceKind = SourceKind {
    name: SOURCE,
    configured: |cfg: &Config| cfg.salesforce.enabled,
    how_to_configure:
        "set salesforce.enabled = true, salesforce.login_url and the credentials of salesforce.auth",
    build,
};

fn build(cfg: &Config) -> Result<Box<dyn Source>, SourceError> {
    Ok(Box::new(SalesforceSource {
        cfg: cfg.salesforce.clone(),
    }))
}

/// The Salesforce source of one configuration.
pub struct SalesforceSource {
    cfg: SalesforceConfig,
}

impl Source for SalesforceSource {
    fn crm(&self) -> &'static str {
        SOURCE
    }

    fn entities(&self) -> Vec<String> {
        self.cfg.objects.clone()
    }

    fn run(&self, io: SourceIo) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(read(&self.cfg, io))
    }
}

/// Runs the source alone (no lease) until `shutdown`, or caught up in one-shot mode (tests).
pub async fn run_with(
    cfg: &Config,
    shutdown: tokio_util::sync::CancellationToken,
    until_caught_up: bool,
) -> Result<(), SourceError> {
    let io = SourceIo::unfenced(cfg, SOURCE, shutdown, until_caught_up)?;
    read(&cfg.salesforce, io).await
}

/// The Pub/Sub client of a configuration, authenticated with `client`'s session.
pub async fn pubsub_client(
    cfg: &SalesforceConfig,
    client: &SalesforceClient,
) -> Result<PubSubClient, SourceError> {
    let endpoint = cfg.pubsub_endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
    let url =
        url::Url::parse(endpoint).map_err(|e| bad(format!("salesforce.pubsub_endpoint: {e}")))?;
    let mut pc = PubSubConfig::new(url);
    pc.batch_size = cfg.pubsub_batch_size.clamp(1, 100);
    if let Some(ca) = &cfg.ca_file {
        pc.ca_pem = Some(std::fs::read(ca).map_err(|e| bad(format!("salesforce.ca_file: {e}")))?);
    }
    let session = client.session().await?;
    let creds =
        Credentials::from_session(&session).map_err(|e| SourceError::client(SOURCE, false, e))?;
    PubSubClient::connect(&pc, creds).await.map_err(|e| {
        let retriable = e.is_retriable();
        SourceError::client(SOURCE, retriable, e)
    })
}

async fn read(cfg: &SalesforceConfig, io: SourceIo) -> Result<(), SourceError> {
    if cfg.mode == SalesforceMode::Cdc {
        return read_cdc(cfg, io).await;
    }
    let client = std::sync::Arc::new(SalesforceClient::new(client_config(cfg)?)?);
    for object in &cfg.objects {
        io.cursors()
            .set_phase(
                object,
                PhaseState {
                    phase: Phase::Polling,
                    read: 0,
                    total: None,
                },
            )
            .await?;
    }
    let stop = io.shutdown.child_token();
    let tasks = cfg.objects.iter().map(|object| {
        let p = poller::ObjectPoller::new(
            client.clone(),
            poller::PollSettings::new(cfg, object),
            io.emitter(object, "poll"),
            io.cursors().clone(),
            io.clone(),
        );
        tokio::spawn(p.run(stop.clone(), io.until_caught_up))
    });
    let mut first_error = None;
    for joined in futures::future::join_all(tasks).await {
        let r = joined
            .map_err(|e| SourceError::Stuck(format!("salesforce poller task failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = r {
            stop.cancel();
            first_error.get_or_insert(e);
        }
    }
    io.flush();
    info!(budget = ?client.budget(), "salesforce source stopped");
    first_error.map_or(Ok(()), Err)
}

/// CDC mode: one [`cdc::CdcReader`] per object over one Pub/Sub channel.
async fn read_cdc(cfg: &SalesforceConfig, io: SourceIo) -> Result<(), SourceError> {
    let client = std::sync::Arc::new(SalesforceClient::new(client_config(cfg)?)?);
    let pubsub = pubsub_client(cfg, &client).await?;
    let stop = io.shutdown.child_token();
    let tasks = cfg.objects.iter().map(|object| {
        let poller = poller::ObjectPoller::new(
            client.clone(),
            poller::PollSettings::new(cfg, object),
            io.emitter(object, "poll"),
            io.cursors().clone(),
            io.clone(),
        );
        let settings = cdc::CdcSettings {
            object: object.clone(),
            channel: cfg.channel_of(object),
            fields: fields_of(cfg, object),
            batch_events: cfg.cdc_batch_events.max(1),
            batch_wait: Duration::from_millis(cfg.cdc_batch_wait_ms),
        };
        let reader =
            cdc::CdcReader::new(client.clone(), pubsub.clone(), poller, settings, io.clone());
        tokio::spawn(reader.run(stop.clone(), io.until_caught_up))
    });
    let mut first_error = None;
    for joined in futures::future::join_all(tasks).await {
        let r = joined
            .map_err(|e| SourceError::Stuck(format!("salesforce CDC task failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = r {
            stop.cancel();
            first_error.get_or_insert(e);
        }
    }
    io.flush();
    info!(budget = ?client.budget(), "salesforce source (CDC) stopped");
    first_error.map_or(Ok(()), Err)
}
