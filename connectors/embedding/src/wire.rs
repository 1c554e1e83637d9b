//! Wire types of the two embedding protocols, shared by the client and the simulator so that both sides of
//! the connection agree by construction.
//!
//! Only the fields crmflow reads or writes are modelled; unknown fields are ignored on both sides because real
//! servers add options (`normalize`, `prompt_name`, `encoding_format`, ...) that we neither send nor need.

use serde::{Deserialize, Serialize};

/// `POST /embed` request body (text-embeddings-inference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeiRequest {
    /// The texts to embed; TEI also accepts a single string, which the simulator honours.
    pub inputs: Inputs,
    /// Ask TEI to cut inputs longer than the model's token limit instead of rejecting them.
    #[serde(default)]
    pub truncate: bool,
}

/// `POST /embed` success body: one vector per input, in input order.
pub type TeiResponse = Vec<Vec<f32>>;

/// Error body of text-embeddings-inference: `{"error": "...", "error_type": "Validation"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeiError {
    /// Human-readable reason.
    pub error: String,
    /// TEI's class: `Validation`, `Overloaded`, `Backend`, `Unhealthy`, `Tokenizer`, `Empty`.
    pub error_type: String,
}

/// `GET /info` body, the subset of TEI's that clients look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeiInfo {
    /// Model served.
    pub model_id: String,
    /// Largest number of inputs accepted in one request.
    pub max_client_batch_size: usize,
    /// Longest accepted input (the simulator counts characters, TEI counts tokens).
    pub max_input_length: usize,
    /// Server version string.
    pub version: String,
}

/// `POST /v1/embeddings` request body (OpenAI-compatible).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiRequest {
    /// Model name; the simulator accepts any.
    pub model: String,
    /// The texts to embed.
    pub input: Inputs,
}

/// `POST /v1/embeddings` success body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiResponse {
    /// One item per input; the `index` field, not the position in this list, says which input it belongs to.
    pub data: Vec<OpenAiEmbedding>,
    /// Model that produced the vectors.
    pub model: String,
    /// Token accounting (the simulator counts words).
    #[serde(default)]
    pub usage: OpenAiUsage,
}

/// One vector of an [`OpenAiResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiEmbedding {
    /// Position of the input this vector belongs to.
    pub index: usize,
    /// The vector.
    pub embedding: Vec<f32>,
}

/// Token usage of an [`OpenAiResponse`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenAiUsage {
    /// Tokens in the inputs.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens billed in total.
    #[serde(default)]
    pub total_tokens: u64,
}

/// OpenAI error envelope: `{"error": {"message": ..., "type": ...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiErrorBody {
    /// The error itself.
    pub error: OpenAiError,
}

/// Inside an [`OpenAiErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiError {
    /// Human-readable reason.
    pub message: String,
    /// Class: `invalid_request_error`, `rate_limit_exceeded`, `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Both protocols accept either one string or a list of strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Inputs {
    /// A single text; answered as a batch of one.
    One(String),
    /// A batch of texts.
    Many(Vec<String>),
}

impl Inputs {
    /// The texts as a slice, whichever form was sent.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Inputs::One(text) => std::slice::from_ref(text),
            Inputs::Many(texts) => texts,
        }
    }
}
