//! Column families and key encodings. Integers are big-endian so RocksDB's byte order is
//! numeric order.

/// Entry bytes by global seq.
pub(crate) const ENTRIES: &str = "entries";
/// Global seq by (contact id, contact seq).
pub(crate) const CONTACT_INDEX: &str = "contact_index";
/// The Merkle tree: leaf hashes in tiles of 16 ([`leaf_tile_key`]) and perfect-subtree
/// hashes from level 4 up ([`merkle_key`]).
pub(crate) const MERKLE: &str = "merkle";
/// Contact projection by contact id.
pub(crate) const STATE: &str = "state";
/// Personal-data record by global seq.
pub(crate) const PII: &str = "pii";
/// Original receipt by idempotency key.
pub(crate) const IDEMPOTENCY: &str = "idempotency";
/// Ledger-wide values by name.
pub(crate) const META: &str = "meta";
/// Signed checkpoints by tree size: issued-at (i64 nanoseconds, BE) then the note text.
pub(crate) const CHECKPOINTS: &str = "checkpoints";

/// Policy pack texts by the SHA-256 of the text.
pub(crate) const POLICIES: &str = "policies";
/// Wrapped data key by contact id (deleted on erasure).
pub(crate) const KEYS: &str = "keys";
/// Global seq of the erasure entry by keyed identity digest (32 bytes).
pub(crate) const SUPPRESSION: &str = "suppression";

/// Contact id by data-subject request id.
pub(crate) const REQUESTS: &str = "requests";
/// Contact id by (due day, request id), for requests still open.
pub(crate) const REQUESTS_BY_DUE: &str = "requests_by_due";

/// Every column family the store opens.
pub(crate) const ALL: [&str; 13] = [
    ENTRIES,
    CONTACT_INDEX,
    MERKLE,
    STATE,
    PII,
    IDEMPOTENCY,
    META,
    CHECKPOINTS,
    POLICIES,
    KEYS,
    SUPPRESSION,
    REQUESTS,
    REQUESTS_BY_DUE,
];

/// Whether a family's table files are compressed: those of text and structured records.
pub(crate) fn compressed(family: &str) -> bool {
    matches!(
        family,
        ENTRIES | STATE | IDEMPOTENCY | CHECKPOINTS | POLICIES | REQUESTS | REQUESTS_BY_DUE
    )
}

/// `due day (days from the common era, BE u32) || request id`: open requests in due order.
pub(crate) fn due_key(due: chrono::NaiveDate, request_id: &str) -> Vec<u8> {
    let mut key = due_prefix(due).to_vec();
    key.extend_from_slice(request_id.as_bytes());
    key
}

/// The first `due_key` of a day.
pub(crate) fn due_prefix(due: chrono::NaiveDate) -> [u8; 4] {
    use chrono::Datelike as _;
    (due.num_days_from_ce().max(0) as u32).to_be_bytes()
}

/// Meta key: number of entries (u64).
pub(crate) const META_TREE_SIZE: &[u8] = b"tree_size";
/// Meta key: Merkle root at that size (32 bytes).
pub(crate) const META_TREE_ROOT: &[u8] = b"tree_root";
/// Meta key: recorded time of the last entry (i64 nanoseconds since the epoch).
pub(crate) const META_LAST_RECORDED_AT: &[u8] = b"last_recorded_at";
/// Meta key: a keyed digest that tells whether the configured master key is the one the
/// ledger's data keys are wrapped with.
pub(crate) const META_MASTER_KEY_CHECK: &[u8] = b"master_key_check";
/// Meta key prefix: `purge/<contact id>` marks an erasure whose deleted values RocksDB
/// must still be made to drop from its files; the value lists the seqs (BE u64 each).
pub(crate) const META_PURGE_PREFIX: &[u8] = b"purge/";

pub(crate) fn purge_key(contact_id: &str) -> Vec<u8> {
    let mut key = META_PURGE_PREFIX.to_vec();
    key.extend_from_slice(contact_id.as_bytes());
    key
}

pub(crate) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// `contact id || 0x00 || contact seq`. Contact ids are visible ASCII, so the 0x00
/// separator keeps one contact's keys contiguous and apart from ids it prefixes.
pub(crate) fn contact_index_key(contact_id: &str, contact_seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(contact_id.len() + 9);
    write_contact_index_key(&mut key, contact_id, contact_seq);
    key
}

/// [`contact_index_key`] into `key`, replacing what it held.
pub(crate) fn write_contact_index_key(key: &mut Vec<u8>, contact_id: &str, contact_seq: u64) {
    key.clear();
    key.extend_from_slice(contact_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&contact_seq.to_be_bytes());
}

pub(crate) fn contact_prefix(contact_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(contact_id.len() + 9);
    key.extend_from_slice(contact_id.as_bytes());
    key.push(0);
    key
}

/// Leaf hashes are stored 16 to a row, concatenated in order: the row of tile `t` holds
/// leaves `16t` to `16t + 15`, and the last tile holds as many as the tree has. A row per
/// leaf was a row per entry for every append to write and every verification to read.
pub(crate) const LEAVES_PER_TILE: u64 = 16;
/// The length of a full tile's row.
pub(crate) const TILE_BYTES: usize = LEAVES_PER_TILE as usize * 32;

/// The lowest Merkle level stored above the leaves. Levels 1 to 3 are not stored: a node
/// there is recomputed from the at most 8 leaves beneath it, all in one tile, when a proof
/// or a past root needs it.
pub(crate) const FIRST_STORED_NODE_LEVEL: u8 = 4;

// A tile is exactly the leaves under one node of the lowest stored level.
const _: () = assert!(LEAVES_PER_TILE == 1 << FIRST_STORED_NODE_LEVEL);

/// The first key byte of leaf tiles: above every level, so tiles sort after the nodes.
const LEAF_TILE_PREFIX: u8 = 0xf0;

/// `0xf0 || tile (BE u64)`: the row of leaves `16 * tile` to `16 * tile + 15`.
pub(crate) fn leaf_tile_key(tile: u64) -> [u8; 9] {
    merkle_key(LEAF_TILE_PREFIX, tile)
}

/// Leaf `leaf` (a global leaf index) from the row of its tile, if the row holds it.
pub(crate) fn leaf_in_tile(row: &[u8], leaf: u64) -> Option<crate::ledger::Hash> {
    let at = (leaf % LEAVES_PER_TILE) as usize * 32;
    row.get(at..at + 32)?.try_into().ok()
}

/// `level || index (BE u64)`: the stored node of a level from [`FIRST_STORED_NODE_LEVEL`]
/// up. (Ledgers written before leaf tiles held a row per leaf at level 0, and rows for
/// levels 1 to 3; opening one converts them.)
pub(crate) fn merkle_key(level: u8, index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = level;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_keys_sort_by_contact_then_seq() {
        let mut keys = vec![
            contact_index_key("ab", 2),
            contact_index_key("a", 300),
            contact_index_key("ab", 1),
            contact_index_key("a", 2),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                contact_index_key("a", 2),
                contact_index_key("a", 300),
                contact_index_key("ab", 1),
                contact_index_key("ab", 2),
            ]
        );
    }
}
