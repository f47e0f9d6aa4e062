//! Generated protobuf and gRPC code for `consentledger.v1`, and its descriptor set (served
//! by reflection and used for the JSON mapping of the command-line client).

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// `consentledger.v1`.
pub mod v1 {
    tonic::include_proto!("consentledger.v1");
}

/// The encoded `FileDescriptorSet` of every proto file the service uses.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/consentledger_descriptor.bin"));
