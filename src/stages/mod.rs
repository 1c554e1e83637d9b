//! The stream stages: normalize (raw -> canonical), sink (canonical -> Postgres), embed
//! (canonical -> vectors) and match, plus `replay`.
//!
//! A stage is: get a batch > apply operators > send rejects to the DLQ > write > commit the
//! checkpoint; never a checkpoint before the write it covers is durable. Each stage runs as one
//! task over a [`crate::runtime::RunCtx`]; [`crate::run`] starts them.

pub mod embed;
pub mod matching;
pub mod normalize;
pub mod replay;
mod rows;
pub mod sink;
