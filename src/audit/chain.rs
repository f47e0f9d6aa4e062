//! Checks one contact's hash chain link by link, from stored bytes. Pure: the caller reads
//! the bytes and feeds them in order.

use crate::ledger::entry::{entry_hash, personal_data_matches, EntryHeader};
use crate::ledger::{Hash, ZERO_HASH};

/// What is wrong with a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainProblem {
    /// The stored bytes do not decode as an entry.
    Undecodable,
    /// The bytes hash to something other than the leaf in the Merkle tree.
    HashMismatch,
    /// The entry does not name its predecessor's hash.
    PrevHashMismatch,
    /// Its sequence numbers or contact id disagree with where it is stored.
    Misplaced,
    /// An entry is missing or the contact sequence has a gap.
    Missing,
    /// The personal-data record does not match the entry's digest.
    PersonalDataDigestMismatch,
    /// The recorded head is not the end of the chain.
    HeadMismatch,
}

/// The first broken link of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// Global sequence number of the entry at fault (0 if unknown).
    pub seq: u64,
    /// Contact sequence number at fault.
    pub contact_seq: u64,
    /// The kind of damage.
    pub problem: ChainProblem,
    /// Details for a person.
    pub detail: String,
}

/// One stored link as read from storage.
#[derive(Debug, Clone, Copy)]
pub struct StoredLink<'a> {
    /// The contact sequence number the index stores this link under.
    pub contact_seq: u64,
    /// The global sequence number the index points at.
    pub seq: u64,
    /// The entry bytes, if present.
    pub bytes: Option<&'a [u8]>,
    /// The Merkle leaf hash stored for `seq`, if present.
    pub leaf: Option<Hash>,
    /// The personal-data record stored beside the entry, if present.
    pub personal: Option<&'a [u8]>,
}

/// Walks a chain link by link.
#[derive(Debug)]
pub struct ChainVerifier<'c> {
    contact_id: &'c str,
    prev: Hash,
    checked: u64,
}

impl<'c> ChainVerifier<'c> {
    /// Starts at the beginning of `contact_id`'s chain.
    pub fn new(contact_id: &'c str) -> Self {
        Self {
            contact_id,
            prev: ZERO_HASH,
            checked: 0,
        }
    }

    /// Number of links checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// Hash of the last link checked.
    pub fn head(&self) -> Hash {
        self.prev
    }

    /// Checks the next link.
    pub fn check(&mut self, link: StoredLink<'_>) -> Result<(), ChainBreak> {
        let expected = self.checked + 1;
        let fail = |problem, detail: String| ChainBreak {
            seq: link.seq,
            contact_seq: expected,
            problem,
            detail,
        };
        if link.contact_seq != expected {
            return Err(fail(
                ChainProblem::Missing,
                format!(
                    "contact seq {expected} is missing (next indexed is {})",
                    link.contact_seq
                ),
            ));
        }
        let Some(bytes) = link.bytes else {
            return Err(fail(
                ChainProblem::Missing,
                format!("entry {} is missing", link.seq),
            ));
        };
        let (header, body) = EntryHeader::decode_with_body(bytes)
            .map_err(|e| fail(ChainProblem::Undecodable, e.to_string()))?;
        if header.seq != link.seq
            || header.contact_seq != expected
            || header.contact_id != self.contact_id
        {
            return Err(fail(
                ChainProblem::Misplaced,
                format!(
                    "entry stored as seq {} / contact seq {expected} claims seq {} / contact seq {} of another or the same contact",
                    link.seq, header.seq, header.contact_seq
                ),
            ));
        }
        let hash = entry_hash(bytes);
        if link.leaf != Some(hash) {
            return Err(fail(
                ChainProblem::HashMismatch,
                match link.leaf {
                    Some(_) => {
                        "entry bytes do not hash to the leaf recorded in the Merkle tree".into()
                    }
                    None => "the Merkle leaf of this entry is missing".into(),
                },
            ));
        }
        if header.prev_hash != self.prev {
            return Err(fail(
                ChainProblem::PrevHashMismatch,
                "entry does not name the hash of the contact's previous entry".into(),
            ));
        }
        if let Some(personal) = link.personal {
            if !personal_data_matches(body, personal) {
                return Err(fail(
                    ChainProblem::PersonalDataDigestMismatch,
                    "the personal-data record beside the entry does not match its digest".into(),
                ));
            }
        }
        self.prev = hash;
        self.checked = expected;
        Ok(())
    }

    /// Checks that the chain ends where the contact's recorded head says.
    pub fn finish(&self, head_contact_seq: u64, head_hash: Hash) -> Result<(), ChainBreak> {
        if head_contact_seq != self.checked || head_hash != self.prev {
            return Err(ChainBreak {
                seq: 0,
                contact_seq: head_contact_seq.max(self.checked),
                problem: ChainProblem::HeadMismatch,
                detail: format!(
                    "the contact's recorded head is contact seq {head_contact_seq} but the stored chain ends at {}",
                    self.checked
                ),
            });
        }
        Ok(())
    }
}
