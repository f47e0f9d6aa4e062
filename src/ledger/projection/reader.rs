//! Reads a format 3 contact state record straight from its bytes.
//!
//! Every `Check`, every screened contact and every append reads a contact's state;
//! decoding states was about a quarter of a full `Screen`'s CPU. Through serde, a seventh
//! of a decode was copying nested values out through the visitors' `Result`s, and much
//! of the rest dispatching field by field. This reader builds the state from one
//! cursor: a state of twenty entries (`bench decide`) decodes in 0.60 µs rather than
//! 0.82. It reads exactly what postcard wrote
//! (field order, LEB128 varints, zigzag times, a byte for an `Option`'s tag, a length
//! before a sequence or a string), and leaves to serde the small leaves whose checks
//! live there: country codes, purpose and channel ids, enums, and the requests' dates.
//!
//! A record it does not take (truncated, or a value out of range) is read through serde
//! instead, which reports what is wrong with it; the test below checks that both read
//! the same states.

use serde::de::DeserializeOwned;

use super::{
    record_format, BasisState, ConsentState, ContactState, DoubleOptInState, Grant, Objection,
    Restriction, UtcNanos,
};
use crate::ledger::entry::Hash;
use crate::ledger::EvidenceRef;
use crate::model::{ObjectionScope, PurposeId};

/// The body of a format 3 record (after its format byte) as a [`ContactState`], or
/// `None` if this reader does not take it. Bytes after the state are ignored, as
/// `postcard::from_bytes` ignores them.
pub(super) fn contact_state(body: &[u8]) -> Option<ContactState> {
    let r = &mut Reader(body);
    // Fields in declaration order: a struct expression evaluates them as written.
    Some(ContactState {
        head_contact_seq: r.varint()?,
        head_hash: r.hash()?,
        registered: r.evidence()?,
        country: r.serde()?,
        region: r.serde()?,
        relationship: r.serde()?,
        country_evidence: r.evidence()?,
        relationship_evidence: r.evidence()?,
        bases: r.seq(|r| {
            Some(BasisState {
                purpose: r.serde()?,
                basis: r.serde()?,
                evidence: r.evidence()?,
            })
        })?,
        consents: r.seq(|r| {
            Some(ConsentState {
                purpose: r.serde()?,
                channel: r.serde()?,
                granted: r.option(|r| {
                    Some(Grant {
                        method: r.serde()?,
                        expires_at: r.option(Reader::time)?,
                        evidence: r.evidence()?,
                    })
                })?,
                withdrawn: r.option(Reader::evidence)?,
            })
        })?,
        double_opt_ins: r.seq(|r| {
            Some(DoubleOptInState {
                purpose: r.serde()?,
                channel: r.serde()?,
                pending: r.seq(|r| Some((r.serde()?, r.evidence()?)))?,
                confirmed: r.option(Reader::evidence)?,
            })
        })?,
        objections: r.seq(|r| {
            Some(Objection {
                scope: r.objection_scope()?,
                evidence: r.evidence()?,
            })
        })?,
        restrictions: r.seq(|r| {
            Some(Restriction {
                ground: r.serde()?,
                evidence: r.evidence()?,
            })
        })?,
        acquisitions: r.seq(Reader::evidence)?,
        personal_data: r.option(Reader::evidence)?,
        erased: r.option(Reader::evidence)?,
        requests: r.serde()?,
    })
}

/// What is left of the record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// An unsigned LEB128 varint of at most 64 bits.
    fn varint(&mut self) -> Option<u64> {
        let (value, rest) = record_format::varint(self.0)?;
        self.0 = rest;
        Some(value)
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(taken)
    }

    /// A length-prefixed byte string.
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len)
    }

    fn hash(&mut self) -> Option<Hash> {
        self.bytes()?.try_into().ok()
    }

    fn evidence(&mut self) -> Option<EvidenceRef> {
        record_format::evidence(self.bytes()?)
    }

    /// Nanoseconds since the epoch, zigzag-encoded.
    fn time(&mut self) -> Option<UtcNanos> {
        let n = self.varint()?;
        Some(UtcNanos((n >> 1) as i64 ^ -((n & 1) as i64)))
    }

    /// An `Option`: a tag byte, 0 or 1, then the value if 1.
    fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.take(1)? {
            [0] => Some(None),
            [1] => read(self).map(Some),
            _ => None,
        }
    }

    /// A sequence: its length, then each element.
    fn seq<T>(&mut self, mut read: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let len = usize::try_from(self.varint()?).ok()?;
        // Every element takes at least a byte: a longer length is damage, not a reason
        // to reserve memory for it.
        if len > self.0.len() {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            out.push(read(self)?);
        }
        Some(out)
    }

    /// An objection's scope as `(kind byte, purpose)` (see `scope_as_pair`).
    fn objection_scope(&mut self) -> Option<ObjectionScope> {
        let kind = *self.take(1)?.first()?;
        let purpose = self.option(Self::serde::<PurposeId>)?;
        match (kind, purpose) {
            (0, None) => Some(ObjectionScope::DirectMarketing),
            (1, None) => Some(ObjectionScope::Profiling),
            (2, Some(purpose)) => Some(ObjectionScope::Purpose(purpose)),
            _ => None,
        }
    }

    /// A value through its own `Deserialize`, for the leaves that check what they read.
    fn serde<T: DeserializeOwned>(&mut self) -> Option<T> {
        let (value, rest) = postcard::take_from_bytes(self.0).ok()?;
        self.0 = rest;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::arbitrary::state;
    use super::super::encode_state;
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// The reader reads every state as serde does.
        #[test]
        fn reads_every_state_as_written(state in state()) {
            let record = encode_state(&state);
            prop_assert_eq!(contact_state(&record[1..]), Some(state.clone()));
            prop_assert_eq!(super::super::decode_state::<ContactState>(&record), Ok(state));
        }

        /// On damaged records (each byte in turn set to values that mean something in a
        /// tag, a length or a varint, and the record cut short at each byte) the reader
        /// takes exactly what serde takes and reads it the same, so no record reads one
        /// way on one path and another way on the other.
        #[test]
        fn reads_damaged_records_as_serde_does(state in state(), other in any::<u8>()) {
            let body = encode_state(&state)[1..].to_vec();
            for at in 0..body.len() {
                prop_assert_eq!(
                    contact_state(&body[..at]),
                    postcard::from_bytes::<ContactState>(&body[..at]).ok()
                );
                let mut changed = body.clone();
                for byte in [0u8, 1, 2, 3, 0x7f, 0x80, 0xff, other] {
                    changed[at] = byte;
                    prop_assert_eq!(
                        contact_state(&changed),
                        postcard::from_bytes::<ContactState>(&changed).ok(),
                        "byte {} set to {}", at, byte
                    );
                }
            }
        }
    }
}
