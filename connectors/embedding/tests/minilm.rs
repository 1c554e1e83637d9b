//! all-MiniLM-L6-v2 in Rust against reference vectors, and `ml serve` over both protocols.
//!
//! The reference (tests/data/minilm_reference.json, 24 texts: short, long past 256 tokens, non-English, empty
//! template fields, emoji) was computed once by tests/data/minilm_reference.py, a float64 numpy re-implementation
//! of sentence-transformers' pipeline for this model; its docstring says why and how. The model files come from
//! `scripts/model` (which `scripts/test` runs): `CRMFLOW_MODEL_DIR`, else the path that script caches to. When
//! they are absent, each test prints why and passes without checking anything.

use std::path::PathBuf;

use crmflow_embedding::model::{serve, MiniLm, ServeArgs};
use crmflow_embedding::{ClientConfig, EmbeddingClient, Protocol};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    tokens: usize,
    vector: Vec<f32>,
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/minilm_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference file"))
        .expect("reference parses")
}

/// The model directory, or `None` (with the reason printed) when the files are not there.
fn model_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("CRMFLOW_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let cache = std::env::var_os("CRMFLOW_CACHE_DIR")
                .unwrap_or_else(|| "/var/cache/crmflow".into());
            PathBuf::from(cache).join("models/all-MiniLM-L6-v2-0.1.0")
        }
    };
    if MiniLm::present(&dir) {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no model files in {} (run scripts/model, or set CRMFLOW_MODEL_DIR)",
            dir.display()
        );
        None
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Every vector within cosine 0.999 of the reference, whatever the batching (so padding inside a batch does
/// not leak into the pooled vector).
fn assert_parity(cases: &[Case], vectors: &[Vec<f32>], what: &str) {
    assert_eq!(vectors.len(), cases.len());
    for (case, vector) in cases.iter().zip(vectors) {
        assert_eq!(vector.len(), 384, "{what}: dimension");
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "{what}: not normalised ({norm}) for {:?}",
            case.text
        );
        let cos = cosine(vector, &case.vector);
        assert!(
            cos >= 0.999,
            "{what}: cosine {cos} < 0.999 for {:?}",
            case.text
        );
    }
}

#[test]
fn minilm_matches_the_sentence_transformers_reference() {
    let Some(dir) = model_dir() else { return };
    let reference = reference();
    assert!(reference.cases.len() >= 20);
    let texts: Vec<String> = reference.cases.iter().map(|c| c.text.clone()).collect();
    // One batch holding everything (short texts padded to 256 tokens), then batches of 5, then one at a time.
    for batch_size in [32, 5, 1] {
        let model = MiniLm::load(&dir, batch_size).expect("model loads");
        let vectors = model.embed(&texts).expect("embeds");
        assert_parity(
            &reference.cases,
            &vectors,
            &format!("batch size {batch_size}"),
        );
    }
}

#[test]
fn minilm_truncates_at_256_tokens_like_the_reference() {
    let Some(dir) = model_dir() else { return };
    let reference = reference();
    let model = MiniLm::load(&dir, 32).expect("model loads");
    assert_eq!(model.max_seq_length(), 256);
    let texts: Vec<String> = reference.cases.iter().map(|c| c.text.clone()).collect();
    let ids = model.tokenize(&texts).expect("tokenizes");
    let counts: Vec<usize> = ids.iter().map(Vec::len).collect();
    let expected: Vec<usize> = reference.cases.iter().map(|c| c.tokens).collect();
    assert_eq!(counts, expected);
    assert!(
        counts.iter().filter(|&&n| n == 256).count() >= 2,
        "long texts are cut at 256"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml_serve_answers_tei_and_openai_with_model_vectors() {
    let Some(dir) = model_dir() else { return };
    let reference = reference();
    let args = ServeArgs::for_tests(dir);
    let model = serve::load(&args).await.expect("model loads");
    let server = serve::start(&args, model).await.expect("server starts");
    let texts: Vec<String> = reference.cases.iter().map(|c| c.text.clone()).collect();
    for protocol in [Protocol::Tei, Protocol::OpenAi] {
        let mut config = ClientConfig::new(server.base_url(), protocol, serve::DEFAULT_MODEL_NAME);
        config.expected_dim = Some(384);
        // The CPU is shared with the other tests of this binary (and whatever else runs).
        config.timeout = std::time::Duration::from_secs(600);
        let client = EmbeddingClient::new(config).expect("client builds");
        let vectors = client.embed(&texts).await.expect("server embeds");
        assert_parity(&reference.cases, &vectors, &format!("{protocol:?}"));
    }
    // Semantic, not lexical: a Rust job is nearer a Rust developer than a nurse or an accountant.
    let mut config = ClientConfig::new(server.base_url(), Protocol::Tei, "m");
    config.timeout = std::time::Duration::from_secs(600);
    let client = EmbeddingClient::new(config).unwrap();
    let probe: Vec<String> = [
        "Senior Rust Engineer",
        "Systems programmer: Rust, C++, Linux kernel, memory safety",
        "Registered nurse in an intensive care unit",
        "Accountant: month-end close, IFRS",
    ]
    .map(String::from)
    .to_vec();
    let v = client.embed(&probe).await.unwrap();
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.1);
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[3]) + 0.1);
    assert_eq!(
        server.stats().inputs_embedded as usize,
        2 * texts.len() + probe.len()
    );
    server.shutdown().await.expect("server stops");
}

#[test]
fn a_missing_model_dir_is_a_clear_error() {
    let dir = std::env::temp_dir().join("crmflow-no-model-here");
    assert!(!MiniLm::present(&dir));
    let err = MiniLm::load(&dir, 8).expect_err("no files");
    assert!(err.to_string().contains("scripts/model"), "{err}");
    assert!(!err.is_retriable());
}
