//! Generates the Pub/Sub API (`eventbus.v1`) client and server from `proto/pubsub_api.proto` with the protoc
//! binary shipped in `protoc-bin-vendored`, so a fresh machine builds without a system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build reads PROTOC from the environment; a build script is single-threaded.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/pubsub_api.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/pubsub_api.proto"], &["proto"])?;
    Ok(())
}
