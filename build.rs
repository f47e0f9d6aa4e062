//! Generates the gRPC code and the descriptor set from `proto/` with protox, so the build
//! needs no system `protoc`.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> anyhow::Result<()> {
    let protos = [
        "proto/consentledger/v1/events.proto",
        "proto/consentledger/v1/ledger.proto",
        "proto/consentledger/v1/audit.proto",
        "proto/consentledger/v1/eligibility.proto",
        "proto/consentledger/v1/rights.proto",
        "proto/consentledger/v1/admin.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("consentledger_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .codec_path("crate::proto::codec::Codec")
        // Written by hand, so a `Screen` batch can carry decisions already encoded.
        .extern_path(".consentledger.v1.Decisions", "crate::proto::Decisions")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
