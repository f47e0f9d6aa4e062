//! Inclusion and consistency proofs over the global Merkle tree, generated and verified
//! exactly as RFC 9162 sections 2.1.3 and 2.1.4 define them. Pure: generation reads
//! stored perfect-subtree hashes through a closure, verification needs only hashes.

use crate::audit::merkle::{largest_power_of_two_below, node_hash};
use crate::ledger::Hash;

/// Why a proof was not produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is outside a tree of {size} entries")]
    IndexOutOfRange {
        /// Zero-based leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The sizes do not describe a tree and one of its prefixes.
    #[error("a consistency proof needs 0 < first_size <= second_size; got {first} and {second}")]
    BadSizes {
        /// The older size.
        first: u64,
        /// The newer size.
        second: u64,
    },
    /// The proof has the wrong number of hashes for the sizes given.
    #[error("the proof has {actual} hashes where {expected} are needed")]
    WrongLength {
        /// Hashes the sizes call for.
        expected: usize,
        /// Hashes supplied.
        actual: usize,
    },
    /// The hashes do not lead to the expected root(s).
    #[error("{0}")]
    RootMismatch(&'static str),
}

/// The leaf ranges `[start, end)` whose subtree hashes form the inclusion proof of leaf
/// `index` in a tree of `size` leaves, in proof order (nearest sibling first).
pub fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // PATH(m, D[lo:hi]) from RFC 9162 2.1.3.1, unrolled from the top down and reversed.
    let mut ranges = Vec::new();
    let (mut lo, mut hi) = (0, size);
    while hi - lo > 1 {
        let k = largest_power_of_two_below(hi - lo);
        if index < lo + k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
        }
    }
    ranges.reverse();
    Ok(ranges)
}

/// The leaf ranges whose subtree hashes form the consistency proof between a tree of
/// `first` leaves and one of `second` leaves, in proof order.
pub fn consistency_ranges(first: u64, second: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::BadSizes { first, second });
    }
    // SUBPROOF(m, D[lo:hi], b) from RFC 9162 2.1.4.1, unrolled and reversed.
    let mut ranges = Vec::new();
    let (mut m, mut lo, mut hi, mut whole) = (first, 0, second, true);
    while m != hi - lo {
        let k = largest_power_of_two_below(hi - lo);
        if m <= k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            m -= k;
            lo += k;
            whole = false;
        }
    }
    if !whole {
        ranges.push((lo, hi));
    }
    ranges.reverse();
    Ok(ranges)
}

/// The hash of leaves `[start, end)` built from perfect subtrees: `node(level, index)`
/// returns the stored hash of the subtree covering `[index * 2^level, (index+1) * 2^level)`.
/// Every range a proof names decomposes into O(log n) stored nodes.
pub fn subtree_hash<E>(
    start: u64,
    end: u64,
    node: &mut impl FnMut(u8, u64) -> Result<Hash, E>,
) -> Result<Hash, E> {
    let len = end - start;
    if len.is_power_of_two() && start % len == 0 {
        let level = len.trailing_zeros() as u8;
        return node(level, start >> level);
    }
    let k = largest_power_of_two_below(len);
    let left = subtree_hash(start, start + k, node)?;
    let right = subtree_hash(start + k, end, node)?;
    Ok(node_hash(&left, &right))
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` leaves with root `root`
/// (RFC 9162 2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_ranges(index, size)?.len();
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            actual: proof.len(),
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::RootMismatch(
                "the proof is longer than the path",
            ));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 || r != *root {
        return Err(ProofError::RootMismatch(
            "the inclusion proof does not lead to the tree's root",
        ));
    }
    Ok(())
}

/// Verifies that the tree of `first` leaves with root `first_root` is a prefix of the
/// tree of `second` leaves with root `second_root` (RFC 9162 2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let expected = consistency_ranges(first, second)?.len();
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            actual: proof.len(),
        });
    }
    if first == second {
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch(
                "two trees of the same size have different roots",
            ))
        };
    }
    let mut path = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::RootMismatch(
                "the proof is longer than the path",
            ));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::RootMismatch(
            "the proof is shorter than the path",
        ));
    }
    if fr != *first_root {
        return Err(ProofError::RootMismatch(
            "the consistency proof does not lead to the older root",
        ));
    }
    if sr != *second_root {
        return Err(ProofError::RootMismatch(
            "the consistency proof does not lead to the newer root",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::audit::merkle::{leaf_hash, root_from_leaf_hashes, Frontier};

    /// The RFC 6962 reference tree's leaves (transparency-dev/merkle `testonly`).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    /// Published inclusion vectors: (tree size, leaf index, proof).
    const INCLUSION: [(u64, u64, &[&str]); 7] = [
        (1, 0, &[]),
        (
            2,
            0,
            &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
        ),
        (
            2,
            1,
            &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
        ),
        (
            3,
            2,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            5,
            1,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            8,
            0,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            8,
            5,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    /// Published consistency vectors: (first size, second size, proof).
    const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn hex32(s: &str) -> Hash {
        let mut out = [0; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// A tree held in memory the way the store holds it: perfect-subtree nodes by
    /// (level, index), plus the leaves for reference roots.
    struct MemTree {
        leaves: Vec<Hash>,
        nodes: HashMap<(u8, u64), Hash>,
    }

    impl MemTree {
        fn new(leaves: Vec<Hash>) -> Self {
            let mut frontier = Frontier::new();
            let mut nodes = HashMap::new();
            for leaf in &leaves {
                frontier.push_each(*leaf, |node| {
                    nodes.insert((node.level, node.index), node.hash);
                });
            }
            Self { leaves, nodes }
        }

        fn of_size(n: u64) -> Self {
            Self::new((0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect())
        }

        fn hashes(&self, ranges: &[(u64, u64)], size: u64) -> Vec<Hash> {
            ranges
                .iter()
                .map(|&(s, e)| {
                    assert!(e <= size, "a proof for size {size} reads past it");
                    subtree_hash(s, e, &mut |l, i| self.nodes.get(&(l, i)).copied().ok_or(()))
                        .unwrap()
                })
                .collect()
        }

        fn inclusion(&self, index: u64, size: u64) -> Vec<Hash> {
            self.hashes(&inclusion_ranges(index, size).unwrap(), size)
        }

        fn consistency(&self, first: u64, second: u64) -> Vec<Hash> {
            self.hashes(&consistency_ranges(first, second).unwrap(), second)
        }

        fn root(&self, size: u64) -> Hash {
            root_from_leaf_hashes(&self.leaves[..size as usize])
        }
    }

    fn reference_tree() -> MemTree {
        MemTree::new(
            LEAVES
                .iter()
                .map(|l| leaf_hash(&hex::decode(l).unwrap()))
                .collect(),
        )
    }

    #[test]
    fn inclusion_proofs_match_published_vectors() {
        let tree = reference_tree();
        for (size, index, expected) in INCLUSION {
            let expected: Vec<Hash> = expected.iter().map(|h| hex32(h)).collect();
            assert_eq!(tree.inclusion(index, size), expected, "({index}, {size})");
            verify_inclusion(
                index,
                size,
                &tree.leaves[index as usize],
                &expected,
                &tree.root(size),
            )
            .unwrap();
        }
    }

    #[test]
    fn consistency_proofs_match_published_vectors() {
        let tree = reference_tree();
        for (first, second, expected) in CONSISTENCY {
            let expected: Vec<Hash> = expected.iter().map(|h| hex32(h)).collect();
            assert_eq!(
                tree.consistency(first, second),
                expected,
                "({first}, {second})"
            );
            verify_consistency(
                first,
                second,
                &tree.root(first),
                &tree.root(second),
                &expected,
            )
            .unwrap();
        }
    }

    #[test]
    fn every_proof_verifies_up_to_a_few_hundred_entries() {
        let tree = MemTree::of_size(260);
        let roots: Vec<Hash> = (0..=260).map(|n| tree.root(n)).collect();
        for size in 1..=260 {
            let root = roots[size as usize];
            for index in 0..size {
                let proof = tree.inclusion(index, size);
                verify_inclusion(index, size, &tree.leaves[index as usize], &proof, &root)
                    .unwrap_or_else(|e| panic!("inclusion ({index}, {size}): {e}"));
            }
            for first in 1..=size {
                let proof = tree.consistency(first, size);
                verify_consistency(first, size, &roots[first as usize], &root, &proof)
                    .unwrap_or_else(|e| panic!("consistency ({first}, {size}): {e}"));
            }
        }
    }

    #[test]
    fn wrong_leaf_size_root_or_hash_fails() {
        let tree = MemTree::of_size(37);
        let (index, size) = (11, 30);
        let proof = tree.inclusion(index, size);
        let root = tree.root(size);
        let leaf = tree.leaves[index as usize];
        assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_ok());
        assert!(verify_inclusion(index, size, &tree.leaves[12], &proof, &root).is_err());
        assert!(verify_inclusion(index + 1, size, &leaf, &proof, &root).is_err());
        assert!(verify_inclusion(index, size + 1, &leaf, &proof, &tree.root(size + 1)).is_err());
        assert!(verify_inclusion(index, size, &leaf, &proof, &tree.root(size - 1)).is_err());
        assert!(verify_inclusion(index, size, &leaf, &proof[1..], &root).is_err());
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i][7] ^= 1;
            assert!(verify_inclusion(index, size, &leaf, &bad, &root).is_err());
        }
        assert!(matches!(
            verify_inclusion(size, size, &leaf, &proof, &root),
            Err(ProofError::IndexOutOfRange { .. })
        ));

        let (first, second) = (13, 30);
        let proof = tree.consistency(first, second);
        let (r1, r2) = (tree.root(first), tree.root(second));
        assert!(verify_consistency(first, second, &r1, &r2, &proof).is_ok());
        assert!(verify_consistency(first, second, &r2, &r1, &proof).is_err());
        assert!(verify_consistency(first, second, &tree.root(12), &r2, &proof).is_err());
        assert!(verify_consistency(first + 1, second, &r1, &r2, &proof).is_err());
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i][0] ^= 0x80;
            assert!(verify_consistency(first, second, &r1, &r2, &bad).is_err());
        }
        assert!(matches!(
            consistency_ranges(0, 5),
            Err(ProofError::BadSizes { .. })
        ));
        assert!(matches!(
            consistency_ranges(6, 5),
            Err(ProofError::BadSizes { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random (index, size) and (first, second) pairs in a 100k-entry tree.
        #[test]
        fn random_proofs_verify_at_100k(a in 1u64..=100_000, b in 1u64..=100_000) {
            use std::sync::OnceLock;
            static TREE: OnceLock<MemTree> = OnceLock::new();
            let tree = TREE.get_or_init(|| MemTree::of_size(100_000));
            let (small, large) = (a.min(b), a.max(b));
            // Leaf roots at 100k are computed from the stored nodes, not the leaves.
            let root_of = |size: u64| subtree_hash(0, size, &mut |l, i| {
                tree.nodes.get(&(l, i)).copied().ok_or(())
            }).unwrap();
            let root = root_of(large);
            let index = small - 1;
            let proof = tree.inclusion(index, large);
            prop_assert!(verify_inclusion(index, large, &tree.leaves[index as usize], &proof, &root).is_ok());
            let proof = tree.consistency(small, large);
            prop_assert!(verify_consistency(small, large, &root_of(small), &root, &proof).is_ok());
        }
    }

    #[test]
    fn roots_from_stored_nodes_match_the_definition() {
        let tree = MemTree::of_size(300);
        for size in 1..=300 {
            let root = subtree_hash(0, size, &mut |l, i| {
                tree.nodes.get(&(l, i)).copied().ok_or(())
            })
            .unwrap();
            assert_eq!(root, tree.root(size));
        }
    }
}
