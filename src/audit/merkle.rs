//! The global Merkle tree over all entries, as RFC 9162 section 2.1 defines it:
//! SHA-256, leaf hash `H(0x00 || leaf)`, node hash `H(0x01 || left || right)`.
//!
//! The tree is stored as the hashes of its complete (perfect) subtrees, addressed by
//! `(level, index)`: level 0 holds the leaf hashes, and node `(l, i)` covers leaves
//! `[i * 2^l, (i + 1) * 2^l)`. A tree of any size is the sequence of perfect subtrees named
//! by the set bits of its size, so the root of any size can be computed from stored nodes.
//! (How the store keeps them, leaves in tiles and only some levels, is its own business:
//! it answers for any `(level, index)`.)

use sha2::{Digest, Sha256};

use crate::ledger::Hash;

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`. The 65 bytes and their padding are laid out as the
/// two blocks SHA-256 compresses and compressed in one call: through the streaming
/// hasher's buffer, a node cost as much as two and a half blocks of a long message.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    use sha2::digest::generic_array::GenericArray;
    /// SHA-256's initial state (FIPS 180-4, 5.3.3).
    const INITIAL: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    let mut blocks = [GenericArray::default(), GenericArray::default()];
    blocks[0][0] = 0x01;
    blocks[0][1..33].copy_from_slice(left);
    blocks[0][33..].copy_from_slice(&right[..31]);
    blocks[1][0] = right[31];
    // Padding: a one bit, zeros, and the message length in bits (65 bytes).
    blocks[1][1] = 0x80;
    blocks[1][56..].copy_from_slice(&(65u64 * 8).to_be_bytes());
    let mut state = INITIAL;
    sha2::compress256(&mut state, &blocks);
    let mut hash = [0u8; 32];
    for (out, word) in hash.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    hash
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A stored node: the hash of the perfect subtree at `(level, index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Height above the leaves (0 = leaf).
    pub level: u8,
    /// Position among the nodes of that level.
    pub index: u64,
    /// The subtree hash.
    pub hash: Hash,
}

/// The right edge of the tree: one perfect subtree per set bit of the size. Enough to
/// append leaves and compute the root without reading anything else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `peaks[l]` is the perfect subtree of height `l` on the right edge, if bit `l` of
    /// `size` is set.
    peaks: Vec<Option<Hash>>,
}

impl Frontier {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the frontier of a tree of `size` leaves from its stored nodes;
    /// `node(level, index)` returns the stored hash, `None` if missing.
    pub fn load<E>(
        size: u64,
        mut node: impl FnMut(u8, u64) -> Result<Option<Hash>, E>,
        missing: impl Fn(u8, u64) -> E,
    ) -> Result<Self, E> {
        let mut peaks = Vec::new();
        for level in 0..64u8 {
            if size >> level == 0 {
                break;
            }
            if size >> level & 1 == 1 {
                let index = (size >> level) - 1;
                let hash = node(level, index)?.ok_or_else(|| missing(level, index))?;
                peaks.resize(usize::from(level) + 1, None);
                peaks[usize::from(level)] = Some(hash);
            }
        }
        Ok(Self { size, peaks })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash and hands `visit` each node that became complete, leaf first.
    pub fn push_each(&mut self, leaf: Hash, mut visit: impl FnMut(Node)) {
        visit(Node {
            level: 0,
            index: self.size,
            hash: leaf,
        });
        let mut hash = leaf;
        let mut level = 0usize;
        let mut index = self.size;
        while index & 1 == 1 {
            // A right child: its left sibling is the peak at this level.
            let left = self.peaks[level].take().unwrap_or_default();
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            visit(Node {
                level: level as u8,
                index,
                hash,
            });
        }
        if self.peaks.len() <= level {
            self.peaks.resize(level + 1, None);
        }
        self.peaks[level] = Some(hash);
        self.size += 1;
    }

    /// The RFC 9162 root of the current tree.
    pub fn root(&self) -> Hash {
        // Peaks from the smallest (rightmost) up: each larger one is a left sibling.
        let mut acc: Option<Hash> = None;
        for peak in self.peaks.iter().flatten() {
            acc = Some(match acc {
                None => *peak,
                Some(right) => node_hash(peak, &right),
            });
        }
        acc.unwrap_or_else(empty_root)
    }
}

/// The root of `leaves` computed straight from the RFC 9162 definition of MTH. Slow;
/// a reference for tests and for verifiers that hold all leaves.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n as u64) as usize;
            node_hash(
                &root_from_leaf_hashes(&leaves[..k]),
                &root_from_leaf_hashes(&leaves[k..]),
            )
        }
    }
}

/// The largest power of two strictly smaller than `n` (n >= 2).
pub(crate) fn largest_power_of_two_below(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> Hash {
        let mut out = [0; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// The 8 leaves and roots of the RFC 6962 test tree used by Certificate Transparency
    /// (`merkle_test.go` / transparency-dev `testonly`).
    const LEAVES: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn matches_published_test_vectors() {
        assert_eq!(
            empty_root(),
            hex32("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        let mut frontier = Frontier::new();
        let mut leaves = Vec::new();
        for (leaf, root) in LEAVES.iter().zip(ROOTS) {
            let hash = leaf_hash(leaf);
            leaves.push(hash);
            frontier.push_each(hash, |_| {});
            assert_eq!(frontier.root(), hex32(root), "size {}", leaves.len());
            assert_eq!(root_from_leaf_hashes(&leaves), hex32(root));
        }
    }

    #[test]
    fn node_hash_is_sha256_of_the_prefixed_pair() {
        let mut left = [0u8; 32];
        let mut right = [0xffu8; 32];
        for i in 0..64u8 {
            let expected: Hash = Sha256::new()
                .chain_update([0x01])
                .chain_update(left)
                .chain_update(right)
                .finalize()
                .into();
            assert_eq!(node_hash(&left, &right), expected);
            left = leaf_hash(&[i]);
            right = expected;
        }
    }

    #[test]
    fn frontier_reloads_from_stored_nodes() {
        let mut frontier = Frontier::new();
        let mut stored = std::collections::HashMap::new();
        for i in 0..300u32 {
            frontier.push_each(leaf_hash(&i.to_be_bytes()), |node| {
                stored.insert((node.level, node.index), node.hash);
            });
            let reloaded = Frontier::load(
                frontier.size(),
                |l, i| Ok::<_, ()>(stored.get(&(l, i)).copied()),
                |_, _| (),
            )
            .unwrap();
            assert_eq!(reloaded, frontier);
        }
    }
}
