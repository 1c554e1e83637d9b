//! Generated data: same seed, same records; realistic and dirty values present; background changes.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{start, state};
use serde_json::Value;

#[tokio::test]
async fn same_seed_gives_the_same_data() {
    let a = start(|c| c.seed = 7).await;
    let b = start(|c| c.seed = 7).await;
    let c = start(|c| c.seed = 8).await;
    for entity in [
        "Candidate",
        "JobOrder",
        "ClientCorporation",
        "ClientContact",
    ] {
        let (sa, sb) = (state(&a, entity).await, state(&b, entity).await);
        assert!(!sa.is_empty());
        assert_eq!(sa, sb, "{entity}");
    }
    assert_ne!(state(&a, "Candidate").await, state(&c, "Candidate").await);
    for s in [a, b, c] {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn data_is_realistic_and_dirty() {
    let sim = start(|c| c.candidates = 2500).await;
    let cands = state(&sim, "Candidate").await;
    assert_eq!(cands.len(), 2500);
    let text = |r: &Value, k: &str| r[k].as_str().unwrap_or("").to_string();
    let names: Vec<String> = cands.iter().map(|r| text(r, "name")).collect();
    let has = |pred: &dyn Fn(char) -> bool| names.iter().any(|n| n.chars().any(pred));
    assert!(
        has(&|c| ('\u{4E00}'..='\u{9FFF}').contains(&c)),
        "CJK names"
    );
    assert!(
        has(&|c| ('\u{0400}'..='\u{04FF}').contains(&c)),
        "Cyrillic names"
    );
    assert!(
        has(&|c| ('\u{0600}'..='\u{06FF}').contains(&c)),
        "Arabic names"
    );
    assert!(
        cands
            .iter()
            .any(|r| text(r, "firstName").contains('\u{200B}')),
        "zero-width characters"
    );
    assert!(
        cands
            .iter()
            .any(|r| text(r, "lastName").contains('\u{200F}')),
        "right-to-left marks"
    );
    assert!(
        cands
            .iter()
            .any(|r| r["email"].is_null() || text(r, "email").is_empty()),
        "missing emails"
    );
    let mut seen = HashSet::new();
    let dup = cands
        .iter()
        .map(|r| text(r, "email").trim().to_lowercase())
        .filter(|e| !e.is_empty())
        .any(|e| !seen.insert(e));
    assert!(dup, "duplicate emails");
    assert!(
        cands
            .iter()
            .any(|r| r["salary"].as_f64().is_some_and(|s| s <= 0.0)),
        "salary 0 or negative"
    );
    assert!(
        cands
            .iter()
            .any(|r| text(r, "description").len() >= 100_000),
        "~100 KB resumes"
    );
    let typical = cands
        .iter()
        .filter(|r| text(r, "description").len() > 1000)
        .count();
    assert!(typical > 2000, "long resumes are the norm");
    assert!(
        cands.iter().any(|r| r["address"].is_null())
            && cands.iter().any(|r| r["address"]["zip"].is_null()),
        "partial addresses"
    );
    let jobs = state(&sim, "JobOrder").await;
    assert!(
        jobs.iter().all(|j| text(j, "description").contains("<li>")),
        "HTML job descriptions"
    );
    assert!(jobs
        .iter()
        .all(|j| j["clientCorporation"]["id"].is_i64() && j["clientContact"]["id"].is_i64()));
    sim.shutdown().await;
}

#[tokio::test]
async fn background_changes_write_continuously() {
    let sim = start(|c| c.changes_per_sec = 200.0).await;
    let max_dlm = |recs: &[Value]| {
        recs.iter()
            .filter_map(|r| r["dateLastModified"].as_i64())
            .max()
            .unwrap_or(0)
    };
    let before = max_dlm(&sim.records("Candidate").expect("records"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = sim.records("Candidate").expect("records");
    assert!(max_dlm(&after) > before, "changes moved dateLastModified");
    assert!(after.len() > 200, "some inserts happened");
    sim.shutdown().await;
}
