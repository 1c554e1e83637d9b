//! The sentence encoder: a BERT checkpoint in sentence-transformers layout (all-MiniLM-L6-v2) run on the CPU with
//! candle, its `tokenizer.json` run with Hugging Face `tokenizers`.
//!
//! It reproduces sentence-transformers' pipeline for this model (`modules.json`: Transformer, Pooling, Normalize):
//! truncation at `max_seq_length` tokens (`sentence_bert_config.json`, 256), each batch padded to its own longest
//! input, mean pooling over the attention mask, L2 normalisation. Texts are sorted by token count before they are
//! cut into batches (as sentence-transformers' `encode` does), so a batch pads little; vectors come back in input
//! order.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use parking_lot::Mutex;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// Files a model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// Truncation when the directory has no `sentence_bert_config.json` (the model card's value).
const DEFAULT_MAX_SEQ_LENGTH: usize = 256;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model file is missing or unreadable.
    #[error("cannot read {path}: {source} (fetch the model with scripts/model)")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `config.json` or `sentence_bert_config.json` does not parse.
    #[error("bad model config {path}: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The tokenizer failed to load or to encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The network failed to load or to run.
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    /// None of these heal by retrying: files, configs and tensors stay what they are.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// `sentence_bert_config.json`: the part we read.
#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

/// A loaded sentence encoder. `embed` may be called from many threads; the forward passes run one at a time,
/// each using every core candle is given (`RAYON_NUM_THREADS`, default: all).
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    dim: usize,
    max_seq_length: usize,
    batch_size: usize,
    /// Serialises forward passes: two at once would only fight over the same cores and double peak memory.
    gate: Mutex<()>,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm")
            .field("dim", &self.dim)
            .field("max_seq_length", &self.max_seq_length)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl MiniLm {
    /// True when `dir` holds every file [`MiniLm::load`] needs.
    pub fn present(dir: &Path) -> bool {
        MODEL_FILES.iter().all(|file| dir.join(file).is_file())
    }

    /// Loads `model.safetensors`, `config.json`, `tokenizer.json` (and `sentence_bert_config.json` when present)
    /// from `dir`. `batch_size` is the most texts one forward pass takes (at least 1).
    pub fn load(dir: &Path, batch_size: usize) -> Result<Self, ModelError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| ModelError::Io { path, source })
        };
        let config_path = dir.join("config.json");
        let config: BertConfig =
            serde_json::from_slice(&read("config.json")?).map_err(|source| ModelError::Config {
                path: config_path,
                source,
            })?;
        let st_path = dir.join("sentence_bert_config.json");
        let max_seq_length = if st_path.is_file() {
            let st: SentenceBertConfig =
                serde_json::from_slice(&read("sentence_bert_config.json")?).map_err(|source| {
                    ModelError::Config {
                        path: st_path,
                        source,
                    }
                })?;
            st.max_seq_length
        } else {
            DEFAULT_MAX_SEQ_LENGTH
        }
        .min(config.max_position_embeddings);

        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        // tokenizer.json ships fixed padding and truncation at 128; sentence-transformers overrides both.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;

        let weights = read("model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)?;
        let model = BertModel::load(vb, &config)?;
        Ok(Self {
            model,
            tokenizer,
            dim: config.hidden_size,
            max_seq_length,
            batch_size: batch_size.max(1),
            gate: Mutex::new(()),
        })
    }

    /// Dimension of the vectors (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Longest input in tokens; longer ones are cut.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Token ids of each text after truncation, special tokens included.
    pub fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>, ModelError> {
        texts
            .iter()
            .map(|text| {
                self.tokenizer
                    .encode(text.as_str(), true)
                    .map(|encoding| encoding.get_ids().to_vec())
                    .map_err(|e| ModelError::Tokenizer(e.to_string()))
            })
            .collect()
    }

    /// One unit-length vector per text, in input order.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let ids = self.tokenize(texts)?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut vectors = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            let embedded = self.forward(&batch)?;
            for (&i, vector) in chunk.iter().zip(embedded) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }

    /// Forward pass of one batch, padded to its longest input, then mean pooling and normalisation.
    fn forward(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        let len = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let mut input = Vec::with_capacity(batch.len() * len);
        let mut mask = Vec::with_capacity(batch.len() * len);
        for ids in batch {
            input.extend_from_slice(ids);
            input.extend(std::iter::repeat_n(0u32, len - ids.len()));
            mask.extend(std::iter::repeat_n(1u32, ids.len()));
            mask.extend(std::iter::repeat_n(0u32, len - ids.len()));
        }
        let device = &Device::Cpu;
        let input = Tensor::from_vec(input, (batch.len(), len), device)?;
        let mask = Tensor::from_vec(mask, (batch.len(), len), device)?;
        let token_types = input.zeros_like()?;
        let hidden = {
            let _one_at_a_time = self.gate.lock();
            self.model.forward(&input, &token_types, Some(&mask))?
        };
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}
