//! What the soak starts before the chaos: the simulators (Bullhorn, HubSpot, Salesforce over TLS
//! with its CA in a file, ML), the stage instances and the configuration every instance reads.

use std::path::Path;

use super::options::SoakArgs;
use super::other;
use super::procs::Spec;
use super::storms::StormTargets;
use crate::config::{
    Config, HubspotConfig, HubspotMode, HubspotObject, MlProtocol, SalesforceAuth, SalesforceMode,
};
use crate::error::{Error, Result};

/// The simulators, which live in the soak's own process (their records are the ground truth).
pub struct Sims {
    pub bullhorn: crmflow_bullhorn::sim::SimHandle,
    pub hubspot: crmflow_hubspot::sim::SimHandle,
    pub salesforce: crmflow_salesforce::sim::SimHandle,
    pub ml: crmflow_embedding::sim::SimHandle,
}

impl Sims {
    /// Where storms and changes go.
    pub fn targets(&self) -> Result<StormTargets> {
        StormTargets::new(
            self.bullhorn.base_url(),
            self.hubspot.base_url(),
            self.salesforce.base_url(),
            &self.salesforce.ca_pem(),
            self.ml_url(),
        )
    }

    /// The ML simulator's URL without its trailing `/`.
    pub fn ml_url(&self) -> String {
        self.ml
            .base_url()
            .to_string()
            .trim_end_matches('/')
            .to_owned()
    }

    pub async fn shutdown(self) {
        self.bullhorn.shutdown().await;
        self.hubspot.shutdown().await;
        self.salesforce.shutdown().await;
        let _ = self.ml.shutdown().await;
    }
}

/// The stage instances: ingest per CRM (Salesforce in CDC mode), ingress, normalize, two sinks, two embeds, match.
pub fn specs() -> Vec<Spec> {
    let run = |name: &str, args: &[&str]| Spec {
        name: name.to_owned(),
        args: std::iter::once("run")
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect(),
    };
    vec![
        run(
            "ingest-bullhorn",
            &["--stages", "ingest", "--sources", "bullhorn"],
        ),
        run(
            "ingest-hubspot",
            &["--stages", "ingest", "--sources", "hubspot"],
        ),
        run(
            "ingest-salesforce",
            &["--stages", "ingest", "--sources", "salesforce"],
        ),
        run("ingress", &["--stages", "ingress"]),
        run("normalize", &["--stages", "normalize"]),
        run("sink-1", &["--stages", "sink"]),
        run("sink-2", &["--stages", "sink"]),
        run("embed-1", &["--stages", "embed"]),
        run("embed-2", &["--stages", "embed"]),
        run("match", &["--stages", "match"]),
    ]
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(other)?;
    Ok(l.local_addr().map_err(other)?.port())
}

/// The configuration every instance reads (secrets go to the environment, see [`secret_env`]).
pub fn soak_config(
    mut cfg: Config,
    args: &SoakArgs,
    sims: &Sims,
    ingress_port: u16,
    salesforce_ca: &Path,
) -> Config {
    let ns = format!(
        "soak_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    );
    cfg.kafka.bootstrap_servers = format!("127.0.0.1:{}", args.kafka_port);
    cfg.kafka.topic_prefix = format!("{ns}.");
    cfg.postgres.url = None;
    cfg.postgres.host = "127.0.0.1".into();
    cfg.postgres.port = args.db_port;
    cfg.postgres.dbname = "crmflow".into();
    cfg.postgres.user = "crmflow".into();
    cfg.postgres.password = "crmflow".to_owned().into();
    cfg.postgres.schema = ns;
    let creds = sims.bullhorn.credentials();
    cfg.bullhorn.enabled = true;
    cfg.bullhorn.rest_url = sims.bullhorn.rest_services_url();
    cfg.bullhorn.client_id = Some(creds.client_id);
    cfg.bullhorn.client_secret = Some(creds.client_secret.into());
    cfg.bullhorn.username = Some(creds.username);
    cfg.bullhorn.password = Some(creds.password.into());
    cfg.bullhorn.poll_interval_secs = 1;
    cfg.hubspot = Some(HubspotConfig {
        base_url: sims.hubspot.base_url(),
        // OAuth (access tokens refreshed ahead of expiry and on a 401), so the "expired
        // tokens" storm has something to expire.
        access_token: None,
        client_id: Some(sims.hubspot.config().client_id.clone()),
        client_secret: Some(sims.hubspot.config().client_secret.clone().into()),
        refresh_token: Some(sims.hubspot.config().refresh_token.clone().into()),
        objects: vec![
            HubspotObject {
                entity: "contact".into(),
                object_type: "contacts".into(),
                object_type_id: Some("0-1".into()),
                properties: vec![],
            },
            HubspotObject {
                entity: "job".into(),
                object_type: "jobs".into(),
                object_type_id: Some(sims.hubspot.jobs_object_type_id()),
                properties: vec![],
            },
        ],
        mode: HubspotMode::Both,
        poll_interval_secs: 2,
        overlap_ms: 5_000,
        ..Default::default()
    });
    // Salesforce in CDC mode (the harder path: Pub/Sub stream, replay ids, re-reads by REST),
    // through the OAuth client-credentials flow, so expired sessions are renewed.
    let sf = &mut cfg.salesforce;
    let sf_sim = sims.salesforce.config();
    sf.enabled = true;
    sf.mode = SalesforceMode::Cdc;
    sf.login_url = sims.salesforce.base_url();
    sf.pubsub_endpoint = Some(sims.salesforce.base_url());
    sf.auth = SalesforceAuth::ClientCredentials;
    sf.client_id = Some(sf_sim.client_id.clone());
    sf.client_secret = Some(sf_sim.client_secret.clone().into());
    sf.ca_file = Some(salesforce_ca.to_path_buf());
    sf.objects = vec![
        sims.salesforce.object_name(0),
        sims.salesforce.object_name(1),
    ];
    // The default fields, and the contact's status and skills, so their rules are exercised.
    let contact = sims.salesforce.object_name(0);
    let fields = sf.fields.entry(contact).or_default();
    if !fields.is_empty() {
        fields.push(',');
    }
    fields.push_str("Candidate_Status__c,Skills__c");
    sf.page_size = 500;
    sf.poll_interval_secs = 2;
    // Shorter than the "hangs" storm, so a hung request is abandoned and retried.
    sf.request_timeout_secs = 10;
    sf.budget_recheck_secs = 2;
    sf.cdc_batch_wait_ms = 50;
    cfg.ingress.listen = format!("127.0.0.1:{ingress_port}");
    cfg.ingress.client_secret = Some(sims.hubspot.config().webhook_key().to_owned().into());
    cfg.ml.url = sims.ml_url();
    cfg.ml.protocol = MlProtocol::Tei;
    cfg.ml.api_key = None;
    // Ten processes on one host: no /metrics listeners to collide, no OTLP exporter.
    cfg.metrics.listen = String::new();
    cfg.telemetry.otlp_endpoint = None;
    cfg
}

/// The secrets of `cfg`, as the environment variables the instances read them from.
pub fn secret_env(cfg: &Config) -> Vec<(String, String)> {
    use secrecy::ExposeSecret;
    let mut env = vec![(
        "DB_PASSWORD".to_owned(),
        cfg.postgres.password.expose_secret().to_owned(),
    )];
    let mut add = |k: &str, v: &Option<secrecy::SecretString>| {
        if let Some(v) = v {
            env.push((k.to_owned(), v.expose_secret().to_owned()));
        }
    };
    add("BULLHORN_CLIENT_SECRET", &cfg.bullhorn.client_secret);
    add("BULLHORN_PASSWORD", &cfg.bullhorn.password);
    add("HUBSPOT_CLIENT_SECRET", &cfg.ingress.client_secret);
    add("SALESFORCE_CLIENT_SECRET", &cfg.salesforce.client_secret);
    if let Some(h) = &cfg.hubspot {
        add("HUBSPOT_ACCESS_TOKEN", &h.access_token);
        add("HUBSPOT_OAUTH_CLIENT_SECRET", &h.client_secret);
        add("HUBSPOT_REFRESH_TOKEN", &h.refresh_token);
    }
    env
}

/// Starts the simulators; the Salesforce simulator's CA goes to `salesforce_ca`.
pub async fn start_sims(args: &SoakArgs, ingress_port: u16, salesforce_ca: &Path) -> Result<Sims> {
    let bullhorn = crmflow_bullhorn::sim::Simulator::start(crmflow_bullhorn::sim::SimConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        candidates: args.candidates,
        job_orders: args.job_orders,
        // The soak makes the changes itself, so it can stop them.
        changes_per_sec: 0.0,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Other(format!("bullhorn simulator: {e}")))?;
    let hubspot = crmflow_hubspot::sim::Simulator::start(crmflow_hubspot::sim::SimConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        contacts: args.candidates / 2,
        deals: 0,
        jobs: args.job_orders / 2,
        changes_per_sec: 0.0,
        webhook_url: Some(format!(
            "http://127.0.0.1:{ingress_port}{}",
            crate::ingress::DEFAULT_PATH
        )),
        // Long enough to outlive a killed ingress; polling is the safety net beyond it.
        webhook_retry_ms: vec![500, 1_000, 2_000, 4_000, 8_000, 16_000],
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Other(format!("hubspot simulator: {e}")))?;
    let salesforce =
        crmflow_salesforce::sim::Simulator::start(crmflow_salesforce::sim::SimConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            contacts: args.candidates / 2,
            positions: args.job_orders / 2,
            ca_out: Some(salesforce_ca.to_path_buf()),
            changes_per_sec: 0.0,
            // The limits storm sends REQUEST_LIMIT_EXCEEDED; the daily allowance itself is
            // not what this soak is about.
            daily_api_limit: 100_000_000,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Other(format!("salesforce simulator: {e}")))?;
    let ml = crmflow_embedding::sim::Simulator::start(crmflow_embedding::sim::SimArgs {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        latency_ms: 5,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Other(format!("ML simulator: {e}")))?;
    Ok(Sims {
        bullhorn,
        hubspot,
        salesforce,
        ml,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_runs_and_sinks_and_embeds_run_twice() {
        let s = specs();
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        for stage in [
            "ingest-bullhorn",
            "ingest-hubspot",
            "ingest-salesforce",
            "ingress",
            "normalize",
            "match",
            "sink-2",
            "embed-2",
        ] {
            assert!(names.contains(&stage), "{stage}");
        }
        assert!(s.iter().all(|s| s.args[0] == "run"));
        let sf = s.iter().find(|s| s.name == "ingest-salesforce").unwrap();
        assert_eq!(
            sf.args[1..],
            ["--stages", "ingest", "--sources", "salesforce"]
        );
    }
}
