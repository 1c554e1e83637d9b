//! HubSpot's official Python SDK (`hubspot-api-client`, pinned in tests/python/requirements.txt and installed
//! by `scripts/pydeps`) against the simulator, with only its host changed: list pages (live and archived),
//! search, batch read, the custom object through the generic objects API, and the v3 signature of a webhook
//! the simulator sent.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{start, Receiver};

/// The venv python: `$CRMFLOW_PYTHON` (set by scripts/test), else whatever `scripts/pydeps` prints.
fn python() -> String {
    if let Ok(p) = std::env::var("CRMFLOW_PYTHON") {
        if !p.is_empty() {
            return p;
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/pydeps"))
        .output()
        .expect("run scripts/pydeps");
    assert!(
        out.status.success(),
        "scripts/pydeps failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("pydeps prints the python path")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_works_unchanged_but_for_its_host() {
    let rx = Receiver::start().await;
    let sim = start(|c| {
        c.contacts = 340;
        c.jobs = 130;
        c.webhook_duplicate_rate = 0.0;
    })
    .await;
    sim.set_webhook_target(Some(&rx.url), None);
    // A merge (the merged-away id must vanish from lists and resolve in batch reads) and an update.
    let ids: Vec<u64> = sim
        .records("contacts")
        .expect("contacts")
        .iter()
        .filter(|r| !r.archived)
        .map(|r| r.id.parse().expect("numeric id"))
        .take(3)
        .collect();
    sim.merge("contacts", ids[0], ids[1]).expect("merge");
    sim.update("contacts", ids[2], &[("jobtitle", "Staff Engineer")])
        .expect("update");
    let batches = rx.wait_for(10, |a| !a.is_empty()).await;
    let hook = batches[0].clone();
    let body_file = std::env::temp_dir().join(format!("hubspot-webhook-{}.json", uuid_like()));
    std::fs::write(&body_file, &hook.body).expect("write body");

    // The signed URI is the full target URL, query included.
    assert!(
        rx.url.ends_with(&hook.path_and_query),
        "{} vs {}",
        rx.url,
        hook.path_and_query
    );
    let uri = rx.url.clone();
    let (live, archived) = sim.count("contacts").expect("count");
    let (live_jobs, _) = sim.count("jobs").expect("count jobs");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/sdk_check.py");
    let py = python();
    let base = sim.base_url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .env("HUBSPOT_HOST", base)
            .env("HUBSPOT_TOKEN", sim_token())
            .env("HUBSPOT_JOBS_TYPE", "2-12345678")
            .env("EXPECT_LIVE_CONTACTS", live.to_string())
            .env("EXPECT_ARCHIVED_CONTACTS", archived.to_string())
            .env("EXPECT_LIVE_JOBS", live_jobs.to_string())
            .env("MERGED_ID", ids[1].to_string())
            .env("MERGED_INTO", ids[0].to_string())
            .env("WEBHOOK_BODY_FILE", &body_file)
            .env("WEBHOOK_SIGNATURE", hook.header("x-hubspot-signature-v3"))
            .env(
                "WEBHOOK_TIMESTAMP",
                hook.header("x-hubspot-request-timestamp"),
            )
            .env("WEBHOOK_URI", &uri)
            .env(
                "WEBHOOK_SECRET",
                crmflow_hubspot::sim::DEFAULT_CLIENT_SECRET,
            )
            .output()
            .expect("run python")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python SDK check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("sdk checks passed"), "{stdout}");
    assert!(stdout.contains("Signature.is_valid v3"), "{stdout}");
    let stats = sim.stats();
    assert!(stats.route_total("search/contacts") >= 2, "{stats:?}");
    assert!(stats.route_total("batch/read/contacts") >= 1);
    assert!(stats.route_total("objects/2-12345678") >= 1);
    sim.shutdown().await;
}

fn sim_token() -> &'static str {
    crmflow_hubspot::sim::DEFAULT_PRIVATE_APP_TOKEN
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}
