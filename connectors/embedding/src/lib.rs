//! Embedding connector.
