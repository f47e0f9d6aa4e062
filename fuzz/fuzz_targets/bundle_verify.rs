//! The offline bundle verifier, fed a genuine bundle (the seed contacts' ledger, a signed
//! checkpoint, a proof per entry) with changes made to it: to its structure (bytes of an
//! entry or of a proof, entries removed, swapped, repeated or taken from another contact,
//! the contact id, the signed note) or to the text of its JSON file.
//!
//! The property checked is soundness, not only the absence of panics: whatever the change,
//! a bundle that verifies holds exactly the genuine first k entries of the contact, with
//! their genuine proofs, against the genuine signed tree head.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use consent_ledger::audit::bundle::{verify_bundle, Bundle, BundleEntry, BundleSummary};
use consent_ledger::audit::checkpoint::{sign_checkpoint, SigningKey, TreeCheckpoint, VerifierKey};
use consent_ledger::audit::merkle::root_from_leaf_hashes;
use consent_ledger::audit::proof::inclusion_ranges;
use consent_ledger::cli::audit::verify_bundle_json;
use consent_ledger::cli::to_json;
use consent_ledger::ledger::entry::{entry_hash, EntryHeader};
use consent_ledger::ledger::Hash;
use consent_ledger::proto::v1 as pb;
use consent_ledger_fuzz::seed_history;
use libfuzzer_sys::fuzz_target;

const CONTACT: &str = "de-b2c-1";
const OTHER_CONTACT: &str = "us-b2c-1";

struct Genuine {
    key: VerifierKey,
    head: TreeCheckpoint,
    bundle: Bundle,
    /// Another contact's entries with their genuine proofs.
    foreign: Vec<BundleEntry>,
    json: String,
}

fn genuine() -> &'static Genuine {
    static GENUINE: OnceLock<Genuine> = OnceLock::new();
    GENUINE.get_or_init(|| {
        let stored = seed_history().stored();
        let leaves: Vec<Hash> = stored.iter().map(|bytes| entry_hash(bytes)).collect();
        let size = leaves.len() as u64;
        let head = TreeCheckpoint {
            size,
            root: root_from_leaf_hashes(&leaves),
        };
        let signing = SigningKey::from_seed("fuzz.example/ledger", [7; 32]).expect("a key");
        let note = sign_checkpoint(&signing, head).expect("a signed checkpoint");
        let entries_of = |contact: &str| -> Vec<BundleEntry> {
            stored
                .iter()
                .enumerate()
                .filter(|(_, bytes)| {
                    EntryHeader::decode(bytes)
                        .expect("seed entries decode")
                        .contact_id
                        == contact
                })
                .map(|(index, bytes)| BundleEntry {
                    stored_bytes: bytes.clone(),
                    inclusion_proof: inclusion_ranges(index as u64, size)
                        .expect("index within the tree")
                        .into_iter()
                        .map(|(start, end)| {
                            root_from_leaf_hashes(&leaves[start as usize..end as usize])
                        })
                        .collect(),
                })
                .collect()
        };
        let bundle = Bundle {
            contact_id: CONTACT.to_owned(),
            checkpoint_note: note.clone(),
            entries: entries_of(CONTACT),
        };
        let proto = pb::Bundle {
            format: 1,
            contact_id: CONTACT.to_owned(),
            checkpoint: Some(pb::Checkpoint {
                note,
                tree_size: size,
                root: head.root.to_vec(),
                issued_at: None,
            }),
            entries: bundle
                .entries
                .iter()
                .map(|entry| pb::BundleEntry {
                    stored_bytes: entry.stored_bytes.clone(),
                    inclusion_proof: entry.inclusion_proof.iter().map(|h| h.to_vec()).collect(),
                })
                .collect(),
        };
        let json = to_json("consentledger.v1.Bundle", &proto).expect("a bundle renders as JSON");
        let key = signing.verifier();
        let summary = verify_bundle(&bundle, &key).expect("the genuine bundle verifies");
        assert_eq!(summary.entries, bundle.entries.len() as u64);
        assert!(
            summary.entries >= 4,
            "the contact has a history worth changing"
        );
        verify_bundle_json(&json, &key).expect("the genuine bundle verifies from its JSON");
        Genuine {
            key,
            head,
            bundle,
            foreign: entries_of(OTHER_CONTACT),
            json,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Input {
    Structure(Vec<Change>),
    JsonText(Vec<TextEdit>),
}

#[derive(Arbitrary, Debug)]
enum Change {
    EntryByte {
        entry: u8,
        at: u16,
        xor: u8,
    },
    ProofByte {
        entry: u8,
        hash: u8,
        at: u8,
        xor: u8,
    },
    ProofHash {
        entry: u8,
        hash: u8,
        new: [u8; 32],
    },
    DropProofHash {
        entry: u8,
        hash: u8,
    },
    PushProofHash {
        entry: u8,
        new: [u8; 32],
    },
    RemoveEntry {
        entry: u8,
    },
    SwapEntries {
        a: u8,
        b: u8,
    },
    RepeatEntry {
        entry: u8,
    },
    InsertForeign {
        at: u8,
        foreign: u8,
    },
    ContactId(String),
    NoteByte {
        at: u16,
        byte: u8,
    },
    NoteInsert {
        at: u16,
        text: String,
    },
    NoteTruncate {
        len: u16,
    },
}

#[derive(Arbitrary, Debug)]
enum TextEdit {
    Set { at: u16, byte: u8 },
    Insert { at: u16, text: String },
    Remove { at: u16, len: u8 },
}

/// `n` reduced into `0..len`, or `None` for an empty list.
fn pick(n: impl Into<usize>, len: usize) -> Option<usize> {
    (len > 0).then(|| n.into() % len)
}

/// Applies `change`; `false` when it cannot apply (the note would not be UTF-8).
fn apply(bundle: &mut Bundle, change: Change, foreign: &[BundleEntry]) -> bool {
    let entries = &mut bundle.entries;
    match change {
        Change::EntryByte { entry, at, xor } => {
            if let Some(e) = pick(entry, entries.len()) {
                let bytes = &mut entries[e].stored_bytes;
                if let Some(i) = pick(at, bytes.len()) {
                    bytes[i] ^= xor;
                }
            }
        }
        Change::ProofByte {
            entry,
            hash,
            at,
            xor,
        } => {
            if let Some(e) = pick(entry, entries.len()) {
                let proof = &mut entries[e].inclusion_proof;
                if let Some(h) = pick(hash, proof.len()) {
                    proof[h][usize::from(at) % 32] ^= xor;
                }
            }
        }
        Change::ProofHash { entry, hash, new } => {
            if let Some(e) = pick(entry, entries.len()) {
                let proof = &mut entries[e].inclusion_proof;
                if let Some(h) = pick(hash, proof.len()) {
                    proof[h] = new;
                }
            }
        }
        Change::DropProofHash { entry, hash } => {
            if let Some(e) = pick(entry, entries.len()) {
                let proof = &mut entries[e].inclusion_proof;
                if let Some(h) = pick(hash, proof.len()) {
                    proof.remove(h);
                }
            }
        }
        Change::PushProofHash { entry, new } => {
            if let Some(e) = pick(entry, entries.len()) {
                entries[e].inclusion_proof.push(new);
            }
        }
        Change::RemoveEntry { entry } => {
            if let Some(e) = pick(entry, entries.len()) {
                entries.remove(e);
            }
        }
        Change::SwapEntries { a, b } => {
            if let (Some(a), Some(b)) = (pick(a, entries.len()), pick(b, entries.len())) {
                entries.swap(a, b);
            }
        }
        Change::RepeatEntry { entry } => {
            if let Some(e) = pick(entry, entries.len()) {
                let copy = entries[e].clone();
                entries.insert(e, copy);
            }
        }
        Change::InsertForeign { at, foreign: f } => {
            if let Some(f) = pick(f, foreign.len()) {
                let at = usize::from(at) % (entries.len() + 1);
                entries.insert(at, foreign[f].clone());
            }
        }
        Change::ContactId(id) => bundle.contact_id = id,
        Change::NoteByte { at, byte } => {
            let mut note = std::mem::take(&mut bundle.checkpoint_note).into_bytes();
            if let Some(i) = pick(at, note.len()) {
                note[i] = byte;
            }
            match String::from_utf8(note) {
                Ok(note) => bundle.checkpoint_note = note,
                Err(_) => return false,
            }
        }
        Change::NoteInsert { at, text } => {
            let note = &mut bundle.checkpoint_note;
            let at = usize::from(at) % (note.len() + 1);
            if !note.is_char_boundary(at) {
                return false;
            }
            note.insert_str(at, &text);
        }
        Change::NoteTruncate { len } => {
            let note = &mut bundle.checkpoint_note;
            let len = usize::from(len) % (note.len() + 1);
            if !note.is_char_boundary(len) {
                return false;
            }
            note.truncate(len);
        }
    }
    true
}

fn edit_text(text: &mut Vec<u8>, edit: TextEdit) {
    match edit {
        TextEdit::Set { at, byte } => {
            if let Some(i) = pick(at, text.len()) {
                text[i] = byte;
            }
        }
        TextEdit::Insert { at, text: new } => {
            let at = usize::from(at) % (text.len() + 1);
            text.splice(at..at, new.into_bytes());
        }
        TextEdit::Remove { at, len } => {
            if let Some(i) = pick(at, text.len()) {
                let end = (i + usize::from(len)).min(text.len());
                text.drain(i..end);
            }
        }
    }
}

/// A verified bundle proves the genuine head and a genuine prefix of the contact's chain.
fn assert_genuine_prefix(summary: &BundleSummary, genuine: &Genuine) {
    assert_eq!(
        summary.checkpoint, genuine.head,
        "a verified bundle states the signed head"
    );
    let n = usize::try_from(summary.entries).expect("a small count");
    assert!(
        n >= 1 && n <= genuine.bundle.entries.len(),
        "{n} entries verified"
    );
    assert_eq!(
        summary.head_hash,
        entry_hash(&genuine.bundle.entries[n - 1].stored_bytes),
        "a verified bundle ends at the genuine entry of its length"
    );
}

fuzz_target!(|input: Input| {
    let genuine = genuine();
    match input {
        Input::Structure(changes) => {
            let mut bundle = genuine.bundle.clone();
            for change in changes.into_iter().take(16) {
                if !apply(&mut bundle, change, &genuine.foreign) {
                    return;
                }
            }
            if let Ok(summary) = verify_bundle(&bundle, &genuine.key) {
                assert_genuine_prefix(&summary, genuine);
                let n = bundle.entries.len();
                assert_eq!(bundle.contact_id, genuine.bundle.contact_id);
                assert_eq!(bundle.entries[..], genuine.bundle.entries[..n]);
            }
        }
        Input::JsonText(edits) => {
            let mut text = genuine.json.clone().into_bytes();
            for edit in edits.into_iter().take(16) {
                edit_text(&mut text, edit);
            }
            let Ok(text) = String::from_utf8(text) else {
                return;
            };
            if let Ok(summary) = verify_bundle_json(&text, &genuine.key) {
                assert_genuine_prefix(&summary, genuine);
            }
        }
    }
});
