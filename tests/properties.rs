//! Properties of the ledger over a real RocksDB: append-then-verify always holds, the
//! Merkle root equals a recomputation from the definition, any single changed byte of
//! any stored entry is reported at exactly that entry, and verifying in chunks reports
//! whatever damage there is exactly as one pass does.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use chrono::Utc;
use common::*;
use consent_ledger::audit::merkle::root_from_leaf_hashes;
use consent_ledger::model::{ContactId, Registry};
use consent_ledger::proto::v1 as pb;
use consent_ledger::service::convert::submission_from_proto;
use consent_ledger::store::{DamageKind, Store, StoreError};
use proptest::prelude::*;

const CONTACTS: usize = 4;

/// One step of a random history: which contact, what happens, and whether the step ends
/// a batch.
#[derive(Debug, Clone)]
struct Step {
    contact: usize,
    op: u8,
    end_batch: bool,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0..CONTACTS, 0u8..7, any::<bool>()).prop_map(|(contact, op, end_batch)| Step {
            contact,
            op,
            end_batch,
        }),
        1..60,
    )
}

fn step_event(contact: &str, op: u8, n: usize) -> Vec<pb::Event> {
    use pb::event::Kind;
    match op {
        0 => vec![consent_granted(contact, "email_marketing")],
        1 => vec![consent_withdrawn(contact, "email_marketing")],
        2 => vec![basis(contact, "profiling")],
        3 => vec![event(
            contact,
            Kind::ObjectionRecorded(pb::ObjectionRecorded {
                scope: pb::ObjectionScope::Profiling as i32,
                purpose: String::new(),
            }),
        )],
        4 => vec![event(
            contact,
            Kind::ProfileUpdated(pb::ProfileUpdated {
                country: ["US", "DE", "FR", "CA"][n % 4].into(),
                ..Default::default()
            }),
        )],
        5 => {
            let token = format!("{:064x}", n);
            let doi = |confirm: bool| {
                let purpose = "email_marketing".to_owned();
                let channel = "email".to_owned();
                event(
                    contact,
                    if confirm {
                        Kind::DoubleOptInConfirmed(pb::DoubleOptInConfirmed {
                            purpose,
                            channel,
                            token_sha256: token.clone(),
                            evidence: None,
                        })
                    } else {
                        Kind::DoubleOptInRequested(pb::DoubleOptInRequested {
                            purpose,
                            channel,
                            token_sha256: token.clone(),
                            evidence: None,
                        })
                    },
                )
            };
            vec![doi(false), doi(true)]
        }
        _ => vec![event(
            contact,
            Kind::RestrictionApplied(pb::RestrictionApplied {
                ground: pb::RestrictionGround::LegalClaims as i32,
                reference: format!("case-{n}"),
            }),
        )],
    }
}

/// Appends the steps (registering each contact on first use) in the batches they name.
/// Returns the contact ids used and the number of entries.
fn build(dir: &Path, steps: &[Step]) -> (Vec<String>, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = Store::open(dir).unwrap();
    let keyring = consent_ledger::crypto::Keyring::new(
        &consent_ledger::crypto::MasterKey::from_bytes([7; 32]),
    );
    let (writer, thread) = store.start_writer(std::sync::Arc::new(keyring)).unwrap();
    let registry = Registry::default();
    let mut registered_yet = [false; CONTACTS];
    let mut batch = Vec::new();
    let mut total = 0u64;
    let mut flush = |batch: &mut Vec<pb::Event>| {
        if batch.is_empty() {
            return;
        }
        let submissions = batch
            .drain(..)
            .map(|e| submission_from_proto(e, &registry, Utc::now()).unwrap())
            .collect();
        let results = runtime
            .block_on(writer.append("prop", submissions))
            .unwrap();
        for result in results {
            result.unwrap();
            total += 1;
        }
    };
    for (n, step) in steps.iter().enumerate() {
        let contact = format!("prop-{}", step.contact);
        if !registered_yet[step.contact] {
            registered_yet[step.contact] = true;
            batch.push(registered(&contact, "US"));
        }
        batch.extend(step_event(&contact, step.op, n));
        if step.end_batch {
            flush(&mut batch);
        }
    }
    flush(&mut batch);
    drop(writer);
    thread.join();
    let used = (0..CONTACTS)
        .filter(|c| registered_yet[*c])
        .map(|c| format!("prop-{c}"))
        .collect();
    (used, total)
}

/// Damage done to a stopped ledger's stored data; the numbers pick what is damaged.
#[derive(Debug, Clone)]
enum Tamper {
    FlipByte {
        pick: u64,
        offset: usize,
        mask: u8,
    },
    DeleteEntries {
        pick: u64,
        len: u64,
    },
    DeleteLastEntries {
        len: u64,
    },
    SwapEntries {
        a: u64,
        b: u64,
    },
    DeleteNode {
        level: u8,
        pick: u64,
    },
    ChangePersonalData {
        pick: usize,
    },
    DeleteIndexRow {
        pick: usize,
    },
    /// A row naming an existing entry under a contact seq the contact does not have.
    AddIndexRow {
        pick: usize,
    },
}

fn tampers() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<u64>(), any::<usize>(), 1u8..).prop_map(|(pick, offset, mask)| Tamper::FlipByte {
            pick,
            offset,
            mask
        }),
        (any::<u64>(), 1u64..12).prop_map(|(pick, len)| Tamper::DeleteEntries { pick, len }),
        (1u64..6).prop_map(|len| Tamper::DeleteLastEntries { len }),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Tamper::SwapEntries { a, b }),
        // Leaves, and the stored levels above them (levels 1 to 3 are not stored).
        (prop_oneof![Just(0u8), 4u8..7], any::<u64>())
            .prop_map(|(level, pick)| Tamper::DeleteNode { level, pick }),
        any::<usize>().prop_map(|pick| Tamper::ChangePersonalData { pick }),
        any::<usize>().prop_map(|pick| Tamper::DeleteIndexRow { pick }),
        any::<usize>().prop_map(|pick| Tamper::AddIndexRow { pick }),
    ]
}

/// A stored key and value.
type Row = (Box<[u8]>, Box<[u8]>);

/// Applies `tamper` to the ledger of `total` entries in `dir` through RocksDB directly.
/// Returns whether anything was changed (a swap of an entry with itself changes nothing).
fn apply(dir: &Path, total: u64, tamper: &Tamper) -> bool {
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, names).unwrap();
    let family = |name: &str| db.cf_handle(name).unwrap();
    let entries = family("entries");
    let key = |seq: u64| seq.to_be_bytes();
    let rows = |name: &str| -> Vec<Row> {
        db.iterator_cf(family(name), rocksdb::IteratorMode::Start)
            .map(|item| item.unwrap())
            .collect()
    };
    match *tamper {
        Tamper::FlipByte { pick, offset, mask } => {
            let seq = pick % total + 1;
            let mut bytes = db.get_cf(entries, key(seq)).unwrap().unwrap();
            let at = offset % bytes.len();
            bytes[at] ^= mask;
            db.put_cf(entries, key(seq), bytes).unwrap();
            true
        }
        Tamper::DeleteEntries { pick, len } => {
            let first = pick % total + 1;
            for seq in first..=(first + len - 1).min(total) {
                db.delete_cf(entries, key(seq)).unwrap();
            }
            true
        }
        Tamper::DeleteLastEntries { len } => {
            for seq in total.saturating_sub(len) + 1..=total {
                db.delete_cf(entries, key(seq)).unwrap();
            }
            true
        }
        Tamper::SwapEntries { a, b } => {
            let (a, b) = (a % total + 1, b % total + 1);
            let bytes_a = db.get_cf(entries, key(a)).unwrap().unwrap();
            let bytes_b = db.get_cf(entries, key(b)).unwrap().unwrap();
            db.put_cf(entries, key(a), bytes_b).unwrap();
            db.put_cf(entries, key(b), bytes_a).unwrap();
            a != b
        }
        Tamper::DeleteNode { level, pick } => {
            // Level 0: the tile holding the leaf picked (leaves are stored 16 to a row).
            let (prefix, rows) = match level {
                0 => (0xf0, total.div_ceil(16)),
                _ => (level, total >> level),
            };
            if rows > 0 {
                let mut row = vec![prefix];
                row.extend_from_slice(&(pick % rows).to_be_bytes());
                db.delete_cf(family("merkle"), row).unwrap();
            }
            rows > 0
        }
        Tamper::ChangePersonalData { pick } => {
            let records = rows("pii");
            if let Some((record_key, value)) = records.get(pick % records.len().max(1)) {
                let mut value = value.to_vec();
                let last = value.len() - 1;
                value[last] ^= 1;
                db.put_cf(family("pii"), record_key, value).unwrap();
            }
            !records.is_empty()
        }
        Tamper::DeleteIndexRow { pick } => {
            let index = rows("contact_index");
            let (row, _) = &index[pick % index.len()];
            db.delete_cf(family("contact_index"), row).unwrap();
            true
        }
        Tamper::AddIndexRow { pick } => {
            let index = rows("contact_index");
            let (row, seq) = &index[pick % index.len()];
            // The same contact, a contact seq far past its last, the same entry.
            let mut forged = row[..row.len() - 8].to_vec();
            forged.extend_from_slice(&1_000_000u64.to_be_bytes());
            db.put_cf(family("contact_index"), forged, seq).unwrap();
            true
        }
    }
}

fn id(contact: &str) -> ContactId {
    ContactId::parse("contact_id", contact).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn append_then_verify_holds_and_root_matches_definition(steps in steps()) {
        let dir = tempfile::tempdir().unwrap();
        let (contacts, total) = build(dir.path(), &steps);
        let store = Store::open(dir.path()).unwrap();
        for contact in &contacts {
            let report = store.verify_contact(&id(contact)).unwrap().unwrap();
            prop_assert!(report.first_break.is_none(), "{contact}: {report:?}");
        }
        let head = store.tree_head().unwrap();
        prop_assert_eq!(head.size, total);
        let full = store.verify_ledger(None, None, &mut |_, _| true).unwrap();
        prop_assert!(full.is_ok(), "{:?}", full.damage);
        // A caller that goes away (progress answers false) stops it.
        prop_assert!(matches!(
            store.verify_ledger(None, None, &mut |_, _| false),
            Err(StoreError::Cancelled)
        ));
        prop_assert_eq!(full.entries, total);
        prop_assert_eq!(full.root, head.root);
        let leaves: Vec<_> = (1..=total).map(|seq| store.entry(seq).unwrap().unwrap().hash).collect();
        prop_assert_eq!(head.root, root_from_leaf_hashes(&leaves));
    }

    /// Any change to the stored entries, tree, personal data or contact index is found;
    /// and, the entries being verified in chunks over several threads, whatever the chunk
    /// size the report is the one a single pass over the entries gives, including damage
    /// that spans chunks (runs of deleted entries, chains, swaps).
    #[test]
    fn every_change_is_found_and_chunks_report_what_one_pass_does(
        steps in steps(),
        tamper in tampers(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (_, total) = build(dir.path(), &steps);
        let changed = apply(dir.path(), total, &tamper);
        let store = Store::open(dir.path()).unwrap();
        let verify = |chunk| store.verify_ledger_in_chunks(chunk, None, None, &mut |_, _| true).unwrap();
        let whole = verify(u64::MAX);
        prop_assert_eq!(whole.is_ok(), !changed, "{:?} found {:?}", tamper, whole.damage);
        if matches!(tamper, Tamper::DeleteIndexRow { .. } | Tamper::AddIndexRow { .. }) {
            prop_assert!(
                whole.damage.iter().any(|d| d.kind == DamageKind::IndexMismatch),
                "{:?}", whole.damage
            );
        }
        for chunk in [1, 2, 3, 5, 8] {
            let chunked = verify(chunk);
            prop_assert_eq!(&chunked, &whole, "chunks of {} after {:?}", chunk, tamper);
        }
    }

    #[test]
    fn any_changed_byte_is_reported_at_that_entry(
        steps in steps(),
        pick in any::<u64>(),
        offset in any::<usize>(),
        mask in 1u8..,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (contacts, total) = build(dir.path(), &steps);
        let seq = pick % total + 1;
        let contact = {
            let store = Store::open(dir.path()).unwrap();
            store.entry(seq).unwrap().unwrap().entry.contact_id.to_string()
        };
        {
            let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
            let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), names).unwrap();
            let entries = db.cf_handle("entries").unwrap();
            let mut bytes = db.get_cf(entries, seq.to_be_bytes()).unwrap().unwrap();
            let at = offset % bytes.len();
            bytes[at] ^= mask;
            db.put_cf(entries, seq.to_be_bytes(), bytes).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let full = store.verify_ledger(None, None, &mut |_, _| true).unwrap();
        prop_assert!(!full.is_ok(), "a changed byte must fail full verification");
        prop_assert_eq!(full.damage[0].seq, seq, "{:?}", full.damage);
        let report = store.verify_contact(&id(&contact)).unwrap().unwrap();
        let broken = report.first_break.expect("a changed byte must break the chain");
        prop_assert_eq!(broken.seq, seq, "{:?}", broken);
        for other in contacts.iter().filter(|c| **c != contact) {
            let report = store.verify_contact(&id(other)).unwrap().unwrap();
            prop_assert!(report.first_break.is_none(), "{other} should be untouched");
        }
    }
}
