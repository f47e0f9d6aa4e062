//! `Screen` decisions written straight to their protobuf encoding.
//!
//! A full screened decision carries about half a kilobyte: reasons, warnings and three or
//! so evidence entries, each with a hash and two times. Built as a `pb::Decision` it was a
//! dozen allocations (strings, hash buffers, evidence messages), measured at each level of
//! nesting as prost encodes, then freed on another thread: together a fifth of a full
//! `Screen`'s server CPU. Here each decision is written once, in the order and form prost
//! writes the message (fields in tag order, proto3 defaults left out), into the batch's
//! buffer; the tests check the bytes against prost's own.

use prost::encoding::{encoded_len_varint, key_len, WireType};

use prost_types::Timestamp;

use super::convert::record_timestamp;
use crate::policy::Evidence;

/// The fields of a `Decision` in a `Screen` batch (the frame's fields are left empty).
#[derive(Debug, Clone, Copy)]
pub(super) struct DecisionFields<'a> {
    pub contact_id: &'a str,
    pub allowed: bool,
    pub rule_id: &'a str,
    pub regime: i32,
    pub country: &'a str,
    pub audience: &'a str,
    pub reasons: &'a [String],
    /// The decision's warnings, then `note`.
    pub warnings: &'a [String],
    pub note: Option<&'a str>,
    pub evidence: &'a [Evidence],
}

/// `Decisions.decisions` records (field 1), one after another.
#[derive(Debug, Default)]
pub(super) struct DecisionsWriter {
    out: Vec<u8>,
    /// The decision being written, before its length is known.
    body: Vec<u8>,
}

impl DecisionsWriter {
    /// Room for `bytes` of records to start with.
    pub(super) fn with_capacity(bytes: usize) -> Self {
        Self {
            out: Vec::with_capacity(bytes),
            body: Vec::with_capacity(1024),
        }
    }

    /// Appends one decision.
    pub(super) fn push(&mut self, d: &DecisionFields<'_>) {
        let body = &mut self.body;
        body.clear();
        put_str(body, 1, d.contact_id);
        if d.allowed {
            put_key(body, 4, WireType::Varint);
            body.push(1);
        }
        put_str(body, 5, d.rule_id);
        if d.regime != 0 {
            put_key(body, 6, WireType::Varint);
            put_varint(body, i64::from(d.regime) as u64);
        }
        put_str(body, 7, d.country);
        put_str(body, 8, d.audience);
        for reason in d.reasons {
            put_repeated_str(body, 9, reason);
        }
        for warning in d.warnings.iter().map(String::as_str).chain(d.note) {
            put_repeated_str(body, 10, warning);
        }
        for e in d.evidence {
            let occurred = record_timestamp(e.entry.occurred_at);
            let recorded = record_timestamp(e.entry.recorded_at);
            let role = e.role.name();
            let len = str_len(1, role)
                + u64_len(2, e.entry.seq)
                + u64_len(3, e.entry.contact_seq)
                + str_len(4, &e.entry.hash[..])
                + timestamp_len(5, &occurred)
                + timestamp_len(6, &recorded);
            put_key(body, 11, WireType::LengthDelimited);
            put_varint(body, len as u64);
            put_str(body, 1, role);
            put_u64(body, 2, e.entry.seq);
            put_u64(body, 3, e.entry.contact_seq);
            put_str(body, 4, &e.entry.hash[..]);
            put_timestamp(body, 5, &occurred);
            put_timestamp(body, 6, &recorded);
        }
        put_key(&mut self.out, 1, WireType::LengthDelimited);
        put_varint(&mut self.out, self.body.len() as u64);
        self.out.extend_from_slice(&self.body);
    }

    /// The records written.
    pub(super) fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// A field's key: its number and wire type, as a varint.
#[inline]
fn put_key(buf: &mut Vec<u8>, tag: u32, wire_type: WireType) {
    put_varint(buf, u64::from(tag << 3 | wire_type as u32));
}

/// `value` as a base-128 varint. (Prost's `encode_varint`, generic over `BufMut` and not
/// inlined, was 5% of a full screen's server CPU; the buffer here has room already.)
#[inline]
fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push(value as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// A `string` or `bytes` field, left out when empty.
fn put_str(buf: &mut Vec<u8>, tag: u32, value: impl AsRef<[u8]>) {
    let value = value.as_ref();
    if !value.is_empty() {
        put_repeated_str(buf, tag, value);
    }
}

/// An element of a `repeated string` field: written even when empty.
fn put_repeated_str(buf: &mut Vec<u8>, tag: u32, value: impl AsRef<[u8]>) {
    let value = value.as_ref();
    put_key(buf, tag, WireType::LengthDelimited);
    put_varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

fn str_len(tag: u32, value: impl AsRef<[u8]>) -> usize {
    let len = value.as_ref().len();
    if len == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }
}

fn put_u64(buf: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        put_key(buf, tag, WireType::Varint);
        put_varint(buf, value);
    }
}

fn u64_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

/// A set `google.protobuf.Timestamp` field: written even when both parts are zero.
fn timestamp_len(tag: u32, at: &Timestamp) -> usize {
    let len = timestamp_body_len(at);
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn timestamp_body_len(at: &Timestamp) -> usize {
    u64_len(1, at.seconds as u64) + u64_len(2, i64::from(at.nanos) as u64)
}

fn put_timestamp(buf: &mut Vec<u8>, tag: u32, at: &Timestamp) {
    put_key(buf, tag, WireType::LengthDelimited);
    put_varint(buf, timestamp_body_len(at) as u64);
    put_u64(buf, 1, at.seconds as u64);
    put_u64(buf, 2, i64::from(at.nanos) as u64);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::put_varint;

    fn prost_varint(value: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        prost::encoding::encode_varint(value, &mut buf);
        buf
    }

    #[test]
    fn varints_at_every_length_boundary_are_prost_s() {
        for bits in 0..64 {
            for value in [(1u64 << bits) - 1, 1u64 << bits, (1u64 << bits) + 1] {
                let mut buf = vec![0xAA];
                put_varint(&mut buf, value);
                assert_eq!(buf[1..], prost_varint(value), "{value}");
            }
        }
        let mut buf = Vec::new();
        put_varint(&mut buf, u64::MAX);
        assert_eq!(buf, prost_varint(u64::MAX));
        assert_eq!(buf.len(), 10);
    }

    proptest! {
        #[test]
        fn varints_are_prost_s(value: u64) {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            prop_assert_eq!(buf, prost_varint(value));
        }
    }
}
