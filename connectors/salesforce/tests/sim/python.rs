//! simple-salesforce (PyPI) against the simulator: the Python script in tests/python, with the library
//! installed by scripts/pydeps-salesforce into a cached virtualenv.

use std::process::Command;

use crmflow_salesforce::sim::SimConfig;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_salesforce_works_against_the_simulator() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = Command::new(root.join("scripts/pydeps-salesforce"))
        .output()
        .expect("scripts/pydeps-salesforce runs");
    assert!(
        py.status.success(),
        "pydeps: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let python = String::from_utf8_lossy(&py.stdout).trim().to_string();
    let sim = start(SimConfig::for_tests()).await;
    let dir = std::env::temp_dir().join(format!("crmflow-sf-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    let token = sim.issue_session();
    let c = sim.config().clone();
    let base_url = sim.base_url();
    let script = root.join("connectors/salesforce/tests/python/simple_salesforce_check.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("SF_INSTANCE_URL", &base_url)
            .env("SF_SESSION_ID", &token)
            .env("SF_CA", &ca)
            // requests lets these override a session's `verify`; point them at the simulator's CA too.
            .env("REQUESTS_CA_BUNDLE", &ca)
            .env("CURL_CA_BUNDLE", &ca)
            .env("SF_USERNAME", &c.username)
            .env("SF_PASSWORD", &c.password)
            .env("SF_SECURITY_TOKEN", &c.security_token)
            .output()
    });
    let out = out.await.unwrap().expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "simple-salesforce script failed against {}:\n{stdout}\n{}",
        sim.base_url(),
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "query ok",
        "query_more ok",
        "query_all ok",
        "get ok",
        "updated ok",
        "deleted ok",
        "soap login ok",
    ] {
        assert!(stdout.contains(check), "missing '{check}' in:\n{stdout}");
    }
}
