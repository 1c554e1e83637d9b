//! The Pub/Sub API's protocol buffers (`proto/pubsub_api.proto`), generated at build time by tonic/prost.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("eventbus.v1");
