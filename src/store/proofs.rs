//! Merkle proofs and past roots read from the stored tree. Nodes are written once, when
//! their subtree completes, and a leaf tile is only ever extended, so a proof for any size
//! up to the current tree reads only hashes that can no longer change: no snapshot is
//! needed.

use super::{Store, StoreError};
use crate::audit::merkle::empty_root;
use crate::audit::proof::{consistency_ranges, inclusion_ranges, subtree_hash, ProofError};
use crate::ledger::Hash;

/// Why a proof could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProofRequestError {
    /// The indices or sizes do not describe a proof.
    #[error(transparent)]
    Invalid(#[from] ProofError),
    /// The tree has not reached the size asked for.
    #[error("tree size {requested} is beyond the ledger's current {current} entries")]
    BeyondTree {
        /// The size asked for.
        requested: u64,
        /// The current tree size.
        current: u64,
    },
    /// Storage failed or a node is missing.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    fn node_or_corrupt(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        self.merkle_node(level, index)?.ok_or_else(|| {
            StoreError::Corrupt(format!("Merkle node ({level}, {index}) is missing"))
        })
    }

    fn check_size(&self, size: u64) -> Result<(), ProofRequestError> {
        let current = self.tree_head()?.size;
        if size > current {
            return Err(ProofRequestError::BeyondTree {
                requested: size,
                current,
            });
        }
        Ok(())
    }

    fn hashes_of(&self, ranges: &[(u64, u64)]) -> Result<Vec<Hash>, StoreError> {
        ranges
            .iter()
            .map(|&(start, end)| {
                subtree_hash(start, end, &mut |level, index| {
                    self.node_or_corrupt(level, index)
                })
            })
            .collect()
    }

    /// The RFC 9162 root of the first `size` entries (any size up to the current tree).
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofRequestError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        Ok(subtree_hash(0, size, &mut |level, index| {
            self.node_or_corrupt(level, index)
        })?)
    }

    /// The inclusion proof of leaf `index` (the entry with seq `index + 1`) in the tree
    /// of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofRequestError> {
        let ranges = inclusion_ranges(index, size)?;
        self.check_size(size)?;
        Ok(self.hashes_of(&ranges)?)
    }

    /// The consistency proof between the trees of `first` and `second` entries.
    pub fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, ProofRequestError> {
        let ranges = consistency_ranges(first, second)?;
        self.check_size(second)?;
        Ok(self.hashes_of(&ranges)?)
    }
}
