//! consent-ledger: an append-only, hash-chained, Merkle-logged ledger of why a company may
//! hold and use each contact's data, served over gRPC.
//!
//! Layout, each layer depending only on those below it:
//!
//! - [`server`]: assembly of the tonic server (health, reflection, limits, shutdown);
//! - [`service`]: one module per gRPC service, proto <-> domain conversion, error mapping;
//! - [`store`]: RocksDB column families, reads, and the single group-commit writer;
//! - [`policy`]: policy packs and the eligibility decision — pure;
//! - [`ledger`], [`audit`]: the entry format, hashes, the Merkle tree, chain checks,
//!   projections — pure, no I/O;
//! - [`rights`]: data-subject request deadlines and lifecycle — pure;
//! - [`crypto`]: per-contact data keys, sealing of personal data, identity digests — pure;
//! - [`model`]: domain types and their validation.
//!
//! [`cli`] holds the client-side commands the binary offers.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod audit;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod keyfile;
pub mod ledger;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod proto;
pub mod rights;
pub mod server;
pub mod service;
pub mod store;
mod threads;
