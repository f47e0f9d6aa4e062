//! The manifest kept with a backup, and its offline check: the backup's tree head is a
//! prefix of a signed checkpoint (by a consistency proof), so a restore can prove it holds
//! exactly the log the ledger had signed. Pure.

use serde::{Deserialize, Serialize};

use super::checkpoint::{open_checkpoint, NoteError, TreeCheckpoint, VerifierKey};
use super::proof::{verify_consistency, ProofError};
use crate::ledger::Hash;

/// File name of the manifest inside a backup directory.
pub const MANIFEST_FILE: &str = "consent-ledger-backup.json";
/// Format of the manifest.
pub const MANIFEST_FORMAT: &str = "consent-ledger/backup/v1";

/// What a backup holds and the evidence that ties it to the signed log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// When the backup was taken (RFC 3339).
    pub created_at: String,
    /// Entries in the backup.
    pub tree_size: u64,
    /// Merkle root over them (hex).
    #[serde(with = "hex::serde")]
    pub root: Hash,
    /// A checkpoint signed right after the backup was taken.
    pub checkpoint: String,
    /// Consistency proof from the backup's tree to the checkpoint's (hex).
    pub consistency_proof: Vec<HexHash>,
    /// The verifier key of the ledger that took the backup, as it said.
    pub verifier_key: String,
}

/// A hash written as hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HexHash(#[serde(with = "hex::serde")] pub Hash);

/// Why a backup's manifest does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    /// Not a manifest of this format.
    #[error("not a consent-ledger backup manifest: {0}")]
    Format(String),
    /// The checkpoint is not signed by the key, or malformed.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] NoteError),
    /// The checkpoint is older than the backup.
    #[error("the checkpoint covers {checkpoint} entries, fewer than the backup's {backup}")]
    CheckpointTooOld {
        /// Checkpoint size.
        checkpoint: u64,
        /// Backup size.
        backup: u64,
    },
    /// The backup's tree is not a prefix of the signed one.
    #[error("the backup's tree is not consistent with the signed checkpoint: {0}")]
    Inconsistent(#[from] ProofError),
}

impl BackupManifest {
    /// Checks that the backup's tree head is a prefix of the checkpoint signed by `key`;
    /// returns the signed tree head.
    pub fn verify(&self, key: &VerifierKey) -> Result<TreeCheckpoint, BackupError> {
        if self.format != MANIFEST_FORMAT {
            return Err(BackupError::Format(format!(
                "format {:?}, expected {MANIFEST_FORMAT:?}",
                self.format
            )));
        }
        let signed = open_checkpoint(&self.checkpoint, key)?;
        if signed.size < self.tree_size {
            return Err(BackupError::CheckpointTooOld {
                checkpoint: signed.size,
                backup: self.tree_size,
            });
        }
        let proof: Vec<Hash> = self.consistency_proof.iter().map(|h| h.0).collect();
        if self.tree_size == signed.size {
            if self.root != signed.root || !proof.is_empty() {
                return Err(ProofError::RootMismatch(
                    "the backup has the checkpoint's size but another root",
                )
                .into());
            }
        } else if self.tree_size > 0 {
            verify_consistency(
                self.tree_size,
                signed.size,
                &self.root,
                &signed.root,
                &proof,
            )?;
        }
        Ok(signed)
    }
}
