//! The ledger's pure core: the stored entry format and its hashes, and the fold of a
//! contact's entries into its current state. No I/O, no tonic, no RocksDB.

pub mod entry;
pub mod projection;

pub use entry::{Entry, EntryBody, EntryError, Hash, ZERO_HASH};
pub use projection::{ApplyError, ContactState, EvidenceRef, UtcNanos};
