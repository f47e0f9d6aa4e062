//! Contact-state records as read back from disk (format 3, and format 2 written before it):
//! the decoder never panics, a record that reads as a state also reads as a chain head
//! with the same head, and a decoded state re-encodes to a record that decodes to the
//! same state.

#![no_main]

use consent_ledger::ledger::projection::{decode_state, encode_state, ChainHead};
use consent_ledger::ledger::ContactState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let head = decode_state::<ChainHead>(bytes);
    let Ok(state) = decode_state::<ContactState>(bytes) else {
        return;
    };
    let head = head.expect("a record that decodes as a state has a head");
    assert_eq!(head.head_contact_seq, state.head_contact_seq);
    assert_eq!(head.head_hash, state.head_hash);
    let encoded = encode_state(&state);
    let again = decode_state::<ContactState>(&encoded).expect("an encoded state decodes");
    assert_eq!(again, state, "decode(encode(state)) is the state");
    assert_eq!(encode_state(&again), encoded, "encoding is deterministic");
});
