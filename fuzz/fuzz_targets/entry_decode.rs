//! Stored bytes as read back from disk: the header and the full decoder never panic, agree
//! with each other, and a decoded entry re-encodes to bytes that decode to the same entry.

#![no_main]

use consent_ledger::ledger::entry::{entry_hash, personal_data_matches, EntryHeader};
use consent_ledger::ledger::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let header = EntryHeader::decode_with_body(bytes);
    if let Ok((_, body)) = &header {
        // The verifier checks record digests from the body without parsing it all.
        let _ = personal_data_matches(body, bytes);
    }
    let Ok(entry) = Entry::decode(bytes) else {
        return;
    };
    let (header, _) = header.expect("bytes that decode as an entry have a header");
    assert_eq!(header.seq, entry.seq);
    assert_eq!(header.contact_seq, entry.contact_seq);
    assert_eq!(header.prev_hash, entry.prev_hash);
    assert_eq!(header.contact_id, entry.contact_id.as_str());
    let encoded = entry.encode();
    let again = Entry::decode(&encoded).expect("an encoded entry decodes");
    assert_eq!(again, entry, "decode(encode(entry)) is the entry");
    assert_eq!(again.encode(), encoded, "encoding is deterministic");
    let _ = entry_hash(bytes);
});
