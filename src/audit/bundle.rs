//! Offline verification of a contact's bundle: the contact's entries as stored, each with
//! its inclusion proof against one signed checkpoint. Needs no server and no data
//! directory, only the ledger's verifier key. Pure.

use crate::audit::checkpoint::{open_checkpoint, NoteError, TreeCheckpoint, VerifierKey};
use crate::audit::proof::{verify_inclusion, ProofError};
use crate::ledger::entry::{entry_hash, EntryHeader};
use crate::ledger::{Hash, ZERO_HASH};

/// One entry of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEntry {
    /// The entry bytes exactly as stored.
    pub stored_bytes: Vec<u8>,
    /// Its inclusion proof against the bundle's checkpoint.
    pub inclusion_proof: Vec<Hash>,
}

/// A bundle as read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The contact the bundle is about.
    pub contact_id: String,
    /// The signed checkpoint every proof is against.
    pub checkpoint_note: String,
    /// The contact's entries in contact-sequence order.
    pub entries: Vec<BundleEntry>,
}

/// What a verified bundle proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSummary {
    /// The checkpoint's tree head.
    pub checkpoint: TreeCheckpoint,
    /// Entries verified (contact seqs 1 to this, without a gap).
    pub entries: u64,
    /// Hash of the contact's last entry in the bundle.
    pub head_hash: Hash,
}

/// Why a bundle does not verify. Each names the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The checkpoint is malformed, not signed by the key, or forged.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] NoteError),
    /// The bundle holds no entries.
    #[error("the bundle holds no entries")]
    Empty,
    /// An entry's bytes are not an entry.
    #[error("entry #{position} of the bundle does not decode: {detail}")]
    Undecodable {
        /// Position in the bundle (1-based).
        position: usize,
        /// The decoding error.
        detail: String,
    },
    /// An entry belongs to another contact.
    #[error("entry #{position} (seq {seq}) belongs to another contact")]
    WrongContact {
        /// Position in the bundle (1-based).
        position: usize,
        /// Its global sequence number.
        seq: u64,
    },
    /// Contact sequence numbers skip or repeat: an entry was removed or added.
    #[error("entry #{position} (seq {seq}) is contact seq {found} where {expected} was expected: the contact's history has a gap")]
    Gap {
        /// Position in the bundle (1-based).
        position: usize,
        /// Its global sequence number.
        seq: u64,
        /// The contact seq that should come next.
        expected: u64,
        /// The contact seq found.
        found: u64,
    },
    /// An entry does not name the hash of the contact's previous entry.
    #[error("entry #{position} (seq {seq}) does not link to the contact's previous entry")]
    ChainBreak {
        /// Position in the bundle (1-based).
        position: usize,
        /// Its global sequence number.
        seq: u64,
    },
    /// An entry's inclusion proof fails against the checkpoint: the bytes were changed,
    /// or the entry is not in the signed tree.
    #[error("entry #{position} (seq {seq}) is not proven included in the checkpoint: {source}")]
    NotIncluded {
        /// Position in the bundle (1-based).
        position: usize,
        /// Its global sequence number.
        seq: u64,
        /// The failed proof check.
        source: ProofError,
    },
}

/// Verifies a bundle with the ledger's verifier key: the checkpoint signature, every
/// inclusion proof, every chain link, and that contact seqs run 1, 2, 3… with no gap.
pub fn verify_bundle(bundle: &Bundle, key: &VerifierKey) -> Result<BundleSummary, BundleError> {
    let checkpoint = open_checkpoint(&bundle.checkpoint_note, key)?;
    if bundle.entries.is_empty() {
        return Err(BundleError::Empty);
    }
    let mut prev = ZERO_HASH;
    for (at, entry) in bundle.entries.iter().enumerate() {
        let position = at + 1;
        let header =
            EntryHeader::decode(&entry.stored_bytes).map_err(|e| BundleError::Undecodable {
                position,
                detail: e.to_string(),
            })?;
        let seq = header.seq;
        if header.contact_id != bundle.contact_id {
            return Err(BundleError::WrongContact { position, seq });
        }
        let expected = position as u64;
        if header.contact_seq != expected {
            return Err(BundleError::Gap {
                position,
                seq,
                expected,
                found: header.contact_seq,
            });
        }
        let hash = entry_hash(&entry.stored_bytes);
        if header.prev_hash != prev {
            return Err(BundleError::ChainBreak { position, seq });
        }
        let index = seq.checked_sub(1).ok_or(BundleError::Undecodable {
            position,
            detail: "sequence number 0".into(),
        })?;
        verify_inclusion(
            index,
            checkpoint.size,
            &hash,
            &entry.inclusion_proof,
            &checkpoint.root,
        )
        .map_err(|source| BundleError::NotIncluded {
            position,
            seq,
            source,
        })?;
        prev = hash;
    }
    Ok(BundleSummary {
        checkpoint,
        entries: bundle.entries.len() as u64,
        head_hash: prev,
    })
}
