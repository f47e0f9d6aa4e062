//! The stored entry: its byte format and its hash.
//!
//! Format version 1, all integers big-endian:
//!
//! ```text
//! u8      format version (1)
//! u64     global sequence number (1-based)
//! u64     contact sequence number (1-based)
//! [u8;32] hash of the contact's previous entry (zeros for the first)
//! u8      contact id length L (1..=128)
//! [u8;L]  contact id (visible ASCII)
//! ...     body: UTF-8 JSON of `EntryBody` (the rest of the bytes)
//! ```
//!
//! The header holds everything a verifier needs to check the chain without parsing JSON;
//! the body stays readable by anyone with `jq`. The entry hash is the RFC 9162 leaf hash
//! of the stored bytes, `SHA-256(0x00 || bytes)`, and is also the per-contact chain link.
//! Bytes are hashed as stored and never re-encoded to verify.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use crate::audit::merkle::leaf_hash;
use crate::model::{ContactId, Event, EventKind, IdempotencyKey, MAX_ID_LEN};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The previous-hash of a contact's first entry.
pub const ZERO_HASH: Hash = [0; 32];

const FORMAT_VERSION: u8 = 1;
const HEADER_FIXED_LEN: usize = 1 + 8 + 8 + 32 + 1;

/// Stored bytes that are not a well-formed entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Shorter than the fixed header.
    #[error("entry is {0} bytes, shorter than its header")]
    Truncated(usize),
    /// An unknown format version.
    #[error("unknown entry format version {0}")]
    UnknownVersion(u8),
    /// The contact id is empty, too long, or not a valid id.
    #[error("malformed contact id in entry header")]
    BadContactId,
    /// The body is not valid JSON of an entry body.
    #[error("malformed entry body: {0}")]
    BadBody(String),
}

/// What the body of an entry records, besides the chain fields in the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryBody {
    /// When the ledger recorded the entry (monotonic over the ledger).
    #[serde(serialize_with = "crate::model::rfc3339::serialize")]
    pub recorded_at: DateTime<Utc>,
    /// When the fact happened in the world.
    #[serde(serialize_with = "crate::model::rfc3339::serialize")]
    pub occurred_at: DateTime<Utc>,
    /// The authenticated caller that appended it.
    pub actor: String,
    /// The client's idempotency key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<IdempotencyKey>,
    /// Lowercase hex SHA-256 of the personal-data record kept beside the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_data_sha256: Option<String>,
    /// What happened.
    pub event: EventKind,
}

/// A decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Global sequence number.
    pub seq: u64,
    /// Position in the contact's chain.
    pub contact_seq: u64,
    /// Hash of the contact's previous entry.
    pub prev_hash: Hash,
    /// The contact.
    pub contact_id: ContactId,
    /// The rest.
    pub body: EntryBody,
}

/// The header fields of an entry, read without parsing the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader<'a> {
    /// Global sequence number.
    pub seq: u64,
    /// Position in the contact's chain.
    pub contact_seq: u64,
    /// Hash of the contact's previous entry.
    pub prev_hash: Hash,
    /// The contact id as stored.
    pub contact_id: &'a str,
}

impl Entry {
    /// The entry that records `event` as entry `seq` of the ledger and `contact_seq` of its
    /// contact, after the contact's entry `prev_hash`: accepted from `actor` at
    /// `recorded_at` (an event that names no time of its own happened then), with the
    /// digest of the personal-data record kept beside it, if any.
    pub fn recording(
        (seq, contact_seq, prev_hash): (u64, u64, Hash),
        event: &Event,
        actor: &str,
        recorded_at: DateTime<Utc>,
        personal_record: Option<&[u8]>,
    ) -> Self {
        Self {
            seq,
            contact_seq,
            prev_hash,
            contact_id: event.contact_id.clone(),
            body: EntryBody {
                recorded_at,
                occurred_at: event.occurred_at.unwrap_or(recorded_at),
                actor: actor.to_owned(),
                idempotency_key: event.idempotency_key.clone(),
                personal_data_sha256: personal_record
                    .map(|record| hex::encode(Sha256::digest(record))),
                event: event.kind.clone(),
            },
        }
    }

    /// Encodes the entry into the bytes that are stored and hashed.
    pub fn encode(&self) -> Vec<u8> {
        let id = self.contact_id.as_str().as_bytes();
        let body = serde_json::to_vec(&self.body)
            .expect("entry bodies always serialize: they have no maps with non-string keys");
        let mut out = Vec::with_capacity(HEADER_FIXED_LEN + id.len() + body.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.contact_seq.to_be_bytes());
        out.extend_from_slice(&self.prev_hash);
        // ContactId guarantees 1..=128 bytes, so the length fits in a u8.
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&body);
        out
    }

    /// Decodes stored bytes, header and body.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        let (header, body) = split(bytes)?;
        let contact_id = ContactId::parse("contact_id", header.contact_id)
            .map_err(|_| EntryError::BadContactId)?;
        let body: EntryBody =
            serde_json::from_slice(body).map_err(|e| EntryError::BadBody(e.to_string()))?;
        Ok(Self {
            seq: header.seq,
            contact_seq: header.contact_seq,
            prev_hash: header.prev_hash,
            contact_id,
            body,
        })
    }
}

impl<'a> EntryHeader<'a> {
    /// Reads the header of stored bytes without touching the body.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, EntryError> {
        split(bytes).map(|(header, _)| header)
    }

    /// Reads the header and returns the body bytes (JSON) undecoded.
    pub fn decode_with_body(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), EntryError> {
        split(bytes)
    }
}

/// Whether `record` is the personal-data record whose SHA-256 the entry `body` (its JSON
/// bytes) names. Reads only that field of the body.
pub fn personal_data_matches(body: &[u8], record: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct DigestOnly<'a> {
        // Lowercase hex is never escaped, so it borrows from the body.
        #[serde(borrow)]
        personal_data_sha256: Option<std::borrow::Cow<'a, str>>,
    }
    let Ok(DigestOnly {
        personal_data_sha256: Some(recorded),
    }) = serde_json::from_slice(body)
    else {
        return false;
    };
    let mut actual = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(record), &mut actual)
        .is_ok_and(|()| recorded.as_bytes() == actual)
}

fn split(bytes: &[u8]) -> Result<(EntryHeader<'_>, &[u8]), EntryError> {
    if bytes.len() < HEADER_FIXED_LEN {
        return Err(EntryError::Truncated(bytes.len()));
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(EntryError::UnknownVersion(bytes[0]));
    }
    let u64_at = |at: usize| {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(&bytes[at..at + 8]);
        u64::from_be_bytes(buf)
    };
    let mut prev_hash = ZERO_HASH;
    prev_hash.copy_from_slice(&bytes[17..49]);
    let id_len = usize::from(bytes[49]);
    if id_len == 0 || id_len > MAX_ID_LEN || bytes.len() < HEADER_FIXED_LEN + id_len {
        return Err(EntryError::BadContactId);
    }
    let contact_id = std::str::from_utf8(&bytes[HEADER_FIXED_LEN..HEADER_FIXED_LEN + id_len])
        .map_err(|_| EntryError::BadContactId)?;
    let header = EntryHeader {
        seq: u64_at(1),
        contact_seq: u64_at(9),
        prev_hash,
        contact_id,
    };
    Ok((header, &bytes[HEADER_FIXED_LEN + id_len..]))
}

/// The hash of stored entry bytes: the RFC 9162 leaf hash, also the chain link.
pub fn entry_hash(bytes: &[u8]) -> Hash {
    leaf_hash(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Audience, Country, Lifecycle, Relationship};

    pub(crate) fn sample() -> Entry {
        Entry {
            seq: 42,
            contact_seq: 3,
            prev_hash: [7; 32],
            contact_id: ContactId::parse("c", "crm-1").unwrap(),
            body: EntryBody {
                recorded_at: DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap(),
                occurred_at: DateTime::from_timestamp(1_699_000_000, 0).unwrap(),
                actor: "crm-sync".into(),
                idempotency_key: Some(IdempotencyKey::parse("k", "req-1").unwrap()),
                personal_data_sha256: Some("ab".repeat(32)),
                event: EventKind::ContactRegistered {
                    suppression_override: None,
                    country: Country::parse("c", "DE").unwrap(),
                    region: None,
                    relationship: Relationship {
                        audience: Audience::B2c,
                        lifecycle: Lifecycle::Prospect,
                    },
                },
            },
        }
    }

    #[test]
    fn round_trips_and_hash_covers_every_byte() {
        let entry = sample();
        let bytes = entry.encode();
        assert_eq!(Entry::decode(&bytes), Ok(entry.clone()));
        let header = EntryHeader::decode(&bytes).unwrap();
        assert_eq!(
            (header.seq, header.contact_seq, header.contact_id),
            (42, 3, "crm-1")
        );
        let hash = entry_hash(&bytes);
        for i in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 0x01;
            assert_ne!(entry_hash(&changed), hash, "byte {i}");
        }
    }

    #[test]
    fn rejects_malformed_bytes() {
        let bytes = sample().encode();
        assert_eq!(Entry::decode(&bytes[..10]), Err(EntryError::Truncated(10)));
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert_eq!(
            Entry::decode(&wrong_version),
            Err(EntryError::UnknownVersion(9))
        );
        let mut long_id = bytes.clone();
        long_id[49] = 200;
        assert_eq!(Entry::decode(&long_id), Err(EntryError::BadContactId));
        let mut bad_body = bytes;
        let last = bad_body.len() - 1;
        bad_body[last] = b'!';
        assert!(matches!(
            Entry::decode(&bad_body),
            Err(EntryError::BadBody(_))
        ));
    }
}
