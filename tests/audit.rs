//! The auditor's view through the real server: RFC 9162 proofs for every pair of sizes,
//! signed checkpoints that survive restarts, full verification that finds tampering with
//! the stored bytes (server stopped, RocksDB edited directly), and bundles verified with
//! no server at all.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use consent_ledger::audit::checkpoint::{open_checkpoint, SigningKey, VerifierKey};
use consent_ledger::audit::merkle::root_from_leaf_hashes;
use consent_ledger::audit::proof::{verify_consistency, verify_inclusion};
use consent_ledger::cli::audit::{
    check_consistency, local_verifier_key, receipt_proof, verify_bundle_file,
};
use consent_ledger::cli::{from_json, to_json, BearerToken};
use consent_ledger::config::ServeConfig;
use consent_ledger::ledger::Hash;
use consent_ledger::proto::v1 as pb;
use consent_ledger::proto::v1::audit_service_client::AuditServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

type Audit = AuditServiceClient<InterceptedService<Channel, BearerToken>>;

async fn audit_client(server: &TestServer) -> Audit {
    AuditServiceClient::with_interceptor(server.channel().await, BearerToken::new(None).unwrap())
}

fn h(bytes: &[u8]) -> Hash {
    bytes.try_into().unwrap()
}

/// Appends `contacts` contacts named `<prefix>-<n>` with a few entries each, in one batch per contact;
/// returns the number of entries.
/// Appends the contacts' events and returns the tree size after them (every ledger starts
/// with its policy activation at seq 1).
async fn populate(server: &TestServer, prefix: &str, contacts: usize) -> u64 {
    let mut client = server.client().await;
    for c in 0..contacts {
        let contact = format!("{prefix}-{c}");
        let mut events = vec![
            registered(&contact, ["US", "DE", "FR"][c % 3]),
            basis(&contact, "storage"),
            consent_granted(&contact, "email_marketing"),
        ];
        if c % 2 == 0 {
            events.push(consent_withdrawn(&contact, "email_marketing"));
        }
        let results = client
            .append_batch(pb::AppendBatchRequest { events })
            .await
            .unwrap()
            .into_inner()
            .results;
        assert!(results
            .iter()
            .all(|r| matches!(r.outcome, Some(pb::append_result::Outcome::Receipt(_)))));
    }
    client
        .get_tree_head(pb::GetTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner()
        .tree_size
}

async fn leaves(server: &TestServer, total: u64) -> Vec<Hash> {
    let mut client = server.client().await;
    let mut leaves = Vec::new();
    for seq in 1..=total {
        let entry = client
            .get_entry(pb::GetEntryRequest { seq })
            .await
            .unwrap()
            .into_inner()
            .entry
            .unwrap();
        leaves.push(h(&entry.entry_hash));
    }
    leaves
}

async fn verifier(audit: &mut Audit) -> VerifierKey {
    let text = audit
        .get_verifier_key(pb::GetVerifierKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .verifier_key;
    VerifierKey::parse(&text).unwrap()
}

async fn fresh_checkpoint(audit: &mut Audit) -> pb::Checkpoint {
    audit
        .get_checkpoint(pb::GetCheckpointRequest {
            tree_size: 0,
            fresh: true,
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap()
}

/// Fetches the inclusion proof of entry `seq` in the tree of `size` entries and checks it,
/// and the root and entry hash sent with it, against `leaves` and `root`.
async fn check_inclusion(audit: &mut Audit, seq: u64, size: u64, leaves: &[Hash], root: &Hash) {
    let response = audit
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            seq,
            tree_size: size,
        })
        .await
        .unwrap()
        .into_inner();
    let leaf = &leaves[seq as usize - 1];
    assert_eq!(h(&response.root), *root);
    assert_eq!(h(&response.entry_hash), *leaf);
    let proof = response.proof.unwrap();
    let hashes: Vec<Hash> = proof.hashes.iter().map(|x| h(x)).collect();
    verify_inclusion(seq - 1, size, leaf, &hashes, root)
        .unwrap_or_else(|e| panic!("inclusion of {seq} in {size}: {e}"));
}

#[tokio::test]
async fn every_inclusion_and_consistency_proof_verifies_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let total = populate(&server, "audit", 20).await;
    assert_eq!(total, 71);
    let leaves = leaves(&server, total).await;
    let roots: Vec<Hash> = (0..=total as usize)
        .map(|n| root_from_leaf_hashes(&leaves[..n]))
        .collect();
    let mut audit = audit_client(&server).await;

    for size in 1..=total {
        for seq in 1..=size {
            check_inclusion(&mut audit, seq, size, &leaves, &roots[size as usize]).await;
        }
        for first in 1..=size {
            let response = audit
                .get_consistency_proof(pb::GetConsistencyProofRequest {
                    first_size: first,
                    second_size: size,
                })
                .await
                .unwrap()
                .into_inner();
            let hashes: Vec<Hash> = response.hashes.iter().map(|x| h(x)).collect();
            verify_consistency(
                first,
                size,
                &roots[first as usize],
                &roots[size as usize],
                &hashes,
            )
            .unwrap_or_else(|e| panic!("consistency {first} -> {size}: {e}"));
        }
    }

    // Bad requests name the field or the limit.
    let status = audit
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            seq: 0,
            tree_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("seq"), "{}", status.message());
    let status = audit
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            seq: 1,
            tree_size: total + 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange);
    let status = audit
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            seq: 9,
            tree_size: 8,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = audit
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            first_size: 0,
            second_size: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("first_size"));
    server.stop().await;
}

#[tokio::test]
async fn checkpoints_are_signed_kept_listed_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig {
        data_dir: dir.path().to_path_buf(),
        checkpoint_interval: Duration::from_millis(20),
        log_origin: Some("ledger.test/consent".into()),
        ..ServeConfig::default()
    };
    let server = TestServer::start_config(config.clone()).await;
    let mut audit = audit_client(&server).await;
    let key = verifier(&mut audit).await;
    assert_eq!(key.name(), "ledger.test/consent");
    // The operator's copy of the key (read from the data directory) is the same.
    assert_eq!(
        local_verifier_key(dir.path(), None).unwrap(),
        key.to_string()
    );

    let first = populate(&server, "audit", 3).await;
    let checkpoint = fresh_checkpoint(&mut audit).await;
    let head = open_checkpoint(&checkpoint.note, &key).unwrap();
    assert_eq!(head.size, first);
    assert_eq!(checkpoint.tree_size, first);
    assert!(checkpoint
        .note
        .starts_with(&format!("ledger.test/consent\n{first}\n")));

    // The cadence signs the grown tree without being asked.
    let total = populate(&server, "later", 2).await;
    let mut latest = 0;
    for _ in 0..500 {
        latest = audit
            .get_checkpoint(pb::GetCheckpointRequest::default())
            .await
            .unwrap()
            .into_inner()
            .checkpoint
            .unwrap()
            .tree_size;
        if latest == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(latest, total, "the cadence did not sign the grown tree");

    // A receipt proof is checked on the client side against the signed checkpoint.
    let mut cli_audit = audit_client(&server).await;
    let receipt = receipt_proof(&mut cli_audit, 2, &key).await.unwrap();
    assert!(receipt.checkpoint.unwrap().tree_size >= 2);

    let listed = audit
        .list_checkpoints(pb::ListCheckpointsRequest {
            from_size: 0,
            page_size: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoints;
    assert!(listed.len() >= 2);
    assert!(listed.windows(2).all(|w| w[0].tree_size < w[1].tree_size));
    for cp in &listed {
        assert_eq!(open_checkpoint(&cp.note, &key).unwrap().size, cp.tree_size);
    }
    let page = audit
        .list_checkpoints(pb::ListCheckpointsRequest {
            from_size: 0,
            page_size: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.checkpoints.len(), 1);
    assert_eq!(page.next_from_size, listed[1].tree_size);
    server.stop().await;

    // Same key after a restart; every checkpoint is still there and still verifies.
    let server = TestServer::start_config(config).await;
    let mut audit = audit_client(&server).await;
    assert_eq!(verifier(&mut audit).await, key);
    let again = audit
        .get_checkpoint(pb::GetCheckpointRequest {
            tree_size: first,
            fresh: false,
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    assert_eq!(again.note, checkpoint.note);
    let now = open_checkpoint(&fresh_checkpoint(&mut audit).await.note, &key).unwrap();
    let outcome = check_consistency(&mut audit, head, now).await.unwrap();
    assert_eq!((outcome.old_size, outcome.new_size), (first, total));
    // A checkpoint claiming another history at the old size is not consistent.
    let mut forged = head;
    forged.root[0] ^= 1;
    assert!(check_consistency(&mut audit, forged, now).await.is_err());
    server.stop().await;
}

async fn verify_ledger(server: &TestServer, trusted: &str) -> pb::VerifyResult {
    common::verify_ledger(server.channel().await, trusted).await
}

/// Builds a ledger of 40 entries, saves a checkpoint, stops the server, lets `tamper`
/// edit RocksDB directly, restarts, and runs VerifyLedger against the saved checkpoint.
async fn tampered(tamper: impl FnOnce(&rocksdb::DB)) -> pb::VerifyResult {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let total = populate(&server, "audit", 11).await;
    assert_eq!(total, 40);
    append(
        &mut server.client().await,
        consent_granted("audit-1", "email_marketing"),
    )
    .await;
    let saved = fresh_checkpoint(&mut audit_client(&server).await)
        .await
        .note;
    let healthy = verify_ledger(&server, &saved).await;
    assert!(healthy.ok, "{healthy:?}");
    assert_eq!(healthy.entries_verified, 41);
    server.stop().await;
    edit_rocksdb(dir.path(), tamper);
    let server = TestServer::start(dir.path()).await;
    let result = verify_ledger(&server, &saved).await;
    server.stop().await;
    assert!(!result.ok);
    result
}

fn edit_rocksdb(path: &Path, edit: impl FnOnce(&rocksdb::DB)) {
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, names).unwrap();
    edit(&db);
    db.flush_wal(true).unwrap();
}

fn first_finding(result: &pb::VerifyResult) -> (u64, pb::DamageKind) {
    let d = &result.damage[0];
    (d.seq, pb::DamageKind::try_from(d.kind).unwrap())
}

fn merkle_key(level: u8, index: u64) -> Vec<u8> {
    let mut key = vec![level];
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The row of leaves `16 * tile` to `16 * tile + 15`.
fn leaf_tile_key(tile: u64) -> Vec<u8> {
    merkle_key(0xf0, tile)
}

#[tokio::test]
async fn a_changed_byte_in_an_entry_is_found_at_that_entry() {
    let result = tampered(|db| {
        let cf = db.cf_handle("entries").unwrap();
        let mut bytes = db.get_cf(cf, 17u64.to_be_bytes()).unwrap().unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x01;
        db.put_cf(cf, 17u64.to_be_bytes(), bytes).unwrap();
    })
    .await;
    assert_eq!(
        first_finding(&result),
        (17, pb::DamageKind::Changed),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_deleted_entry_is_found() {
    let result = tampered(|db| {
        let cf = db.cf_handle("entries").unwrap();
        db.delete_cf(cf, 17u64.to_be_bytes()).unwrap();
    })
    .await;
    assert_eq!(
        first_finding(&result),
        (17, pb::DamageKind::Missing),
        "{result:?}"
    );
}

#[tokio::test]
async fn swapped_entries_are_found_at_both_positions() {
    let result = tampered(|db| {
        let cf = db.cf_handle("entries").unwrap();
        let a = db.get_cf(cf, 10u64.to_be_bytes()).unwrap().unwrap();
        let b = db.get_cf(cf, 20u64.to_be_bytes()).unwrap().unwrap();
        db.put_cf(cf, 10u64.to_be_bytes(), b).unwrap();
        db.put_cf(cf, 20u64.to_be_bytes(), a).unwrap();
    })
    .await;
    assert_eq!(
        first_finding(&result),
        (10, pb::DamageKind::Reordered),
        "{result:?}"
    );
    assert!(result
        .damage
        .iter()
        .any(|d| d.seq == 20 && d.kind == pb::DamageKind::Reordered as i32));
}

#[tokio::test]
async fn a_changed_merkle_node_is_found_over_its_entries() {
    // Node (4, 1) covers entries 17 to 32 (levels 1 to 3 are not stored).
    let result = tampered(|db| {
        let cf = db.cf_handle("merkle").unwrap();
        db.put_cf(cf, merkle_key(4, 1), [7u8; 32]).unwrap();
    })
    .await;
    assert_eq!(
        first_finding(&result),
        (17, pb::DamageKind::TreeMismatch),
        "{result:?}"
    );
    // A changed leaf record (entry 17 intact, the first leaf of the second tile) is told
    // apart from a changed entry.
    let result = tampered(|db| {
        let cf = db.cf_handle("merkle").unwrap();
        let mut tile = db.get_cf(cf, leaf_tile_key(1)).unwrap().unwrap();
        tile[..32].copy_from_slice(&[9u8; 32]);
        db.put_cf(cf, leaf_tile_key(1), tile).unwrap();
    })
    .await;
    assert_eq!(
        first_finding(&result),
        (17, pb::DamageKind::TreeMismatch),
        "{result:?}"
    );
}

/// Ledgers written before leaf tiles hold a row per leaf and rows for Merkle levels 1 to
/// 3. Opening one converts the leaves into tiles and deletes the rest, which is never
/// read: here those rows are wrong on purpose, and the ledger still verifies against the
/// checkpoint saved before, and its proofs still check.
#[tokio::test]
async fn a_ledger_with_a_row_per_leaf_is_converted_at_open() {
    converted_at_open(0).await;
}

/// A converted ledger that an older build then appended to holds tiles for the first
/// leaves and a row for each leaf after them: both end up in the tiles.
#[tokio::test]
async fn leaf_rows_added_after_a_conversion_are_merged_into_the_tiles() {
    converted_at_open(2).await;
}

/// Turns every leaf tile but the first `kept` back into a row per leaf, adds wrong rows
/// for levels 1 to 3, and checks what the next start makes of it.
async fn converted_at_open(kept: u64) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let total = populate(&server, "audit", 11).await;
    let saved = fresh_checkpoint(&mut audit_client(&server).await)
        .await
        .note;
    server.stop().await;
    let rows = |db: &rocksdb::DB| -> Vec<Vec<u8>> {
        let cf = db.cf_handle("merkle").unwrap();
        db.iterator_cf(cf, rocksdb::IteratorMode::Start)
            .map(|row| row.unwrap().0.to_vec())
            .collect()
    };
    let tiles = total.div_ceil(16);
    assert!(tiles > kept);
    // Back to the layout before tiles, from tile `kept` on.
    edit_rocksdb(dir.path(), |db| {
        let cf = db.cf_handle("merkle").unwrap();
        for tile in kept..tiles {
            let row = db.get_cf(cf, leaf_tile_key(tile)).unwrap().unwrap();
            for (at, leaf) in row.chunks(32).enumerate() {
                db.put_cf(cf, merkle_key(0, tile * 16 + at as u64), leaf)
                    .unwrap();
            }
            db.delete_cf(cf, leaf_tile_key(tile)).unwrap();
        }
        for level in 1..4u8 {
            for index in 0..total >> level {
                db.put_cf(cf, merkle_key(level, index), [3u8; 32]).unwrap();
            }
        }
        let tile_rows = rows(db).iter().filter(|key| key[0] == 0xf0).count();
        assert_eq!(tile_rows as u64, kept);
    });

    let server = TestServer::start(dir.path()).await;
    let result = verify_ledger(&server, &saved).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(result.entries_verified, total);
    let leaves = leaves(&server, total).await;
    let root = root_from_leaf_hashes(&leaves);
    let mut audit = audit_client(&server).await;
    for seq in [1, 8, 9, 16, 17, total] {
        check_inclusion(&mut audit, seq, total, &leaves, &root).await;
    }
    server.stop().await;
    edit_rocksdb(dir.path(), |db| {
        let rows = rows(db);
        assert!(rows.iter().all(|key| key[0] >= 4), "{rows:?}");
        let tile_rows = rows.iter().filter(|key| key[0] == 0xf0).count();
        assert_eq!(tile_rows as u64, tiles);
    });
}

/// A byte changed inside a table file, beneath RocksDB: the verification does not stop at
/// the damaged block but names the entry whose bytes changed. (Entry 150 is in a later
/// block than the policy activation, entry 1, which the server reads at start.)
#[tokio::test]
async fn a_damaged_table_block_is_reported_as_the_entries_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let total = populate(&server, "audit", 60).await;
    assert!(total > 160);
    let saved = fresh_checkpoint(&mut audit_client(&server).await)
        .await
        .note;
    server.stop().await; // flushes: the entries are in table files now

    // Entry blocks are compressed, so an entry cannot be found in the file's bytes:
    // damage one byte 40% into the entries' table file, past the block that holds the
    // policy activation the server reads at start, and ask RocksDB which entries no
    // longer read.
    let (mut table, mut stored) = (None, Vec::new());
    edit_rocksdb(dir.path(), |db| {
        let cf = db.cf_handle("entries").unwrap();
        stored = db.get_cf(cf, 150u64.to_be_bytes()).unwrap().unwrap();
        let files = db.live_files().unwrap();
        let entries: Vec<_> = files
            .iter()
            .filter(|f| f.column_family_name == "entries")
            .collect();
        assert_eq!(entries.len(), 1, "the entries are in one table file");
        table = Some(dir.path().join(entries[0].name.trim_start_matches('/')));
    });
    let table = table.unwrap();
    let mut bytes = std::fs::read(&table).unwrap();
    assert!(
        !bytes.windows(stored.len()).any(|w| w == stored.as_slice()),
        "entry 150 is stored in plain bytes: the entries are not compressed"
    );
    let at = bytes.len() * 2 / 5;
    bytes[at] ^= 0x01;
    std::fs::write(&table, &bytes).unwrap();
    let mut unreadable = Vec::new();
    edit_rocksdb(dir.path(), |db| {
        let cf = db.cf_handle("entries").unwrap();
        for seq in 1..=total {
            if let Err(e) = db.get_cf(cf, seq.to_be_bytes()) {
                assert_eq!(e.kind(), rocksdb::ErrorKind::Corruption, "{e}");
                unreadable.push(seq);
            }
        }
    });
    let (first, last) = (unreadable[0], *unreadable.last().unwrap());
    assert!(first > 1 && last < total, "{unreadable:?}");
    assert_eq!(unreadable, (first..=last).collect::<Vec<_>>());

    let server = TestServer::start(dir.path()).await;
    let result = verify_ledger(&server, &saved).await;
    server.stop().await;
    // Exactly those entries, reported once, and the rest of the ledger verified around
    // them. What follows from their loss is reported as such: later entries of their
    // contacts do not link, and their contacts' heads and index rows do not match.
    assert_eq!(
        first_finding(&result),
        (first, pb::DamageKind::Undecodable),
        "{result:?}"
    );
    let detail = &result.damage[0].detail;
    assert!(
        detail.starts_with(&format!("entries {first} to {last} cannot be read")),
        "{detail}"
    );
    for d in &result.damage[1..] {
        let kind = pb::DamageKind::try_from(d.kind).unwrap();
        let follows = match kind {
            pb::DamageKind::ChainBreak => d.seq > last,
            pb::DamageKind::HeadMismatch | pb::DamageKind::IndexMismatch => d.seq == 0,
            _ => false,
        };
        assert!(follows, "{d:?}");
    }
    assert_eq!(result.entries_verified, total - unreadable.len() as u64);
}

#[tokio::test]
async fn recorded_contact_heads_are_compared_with_the_chains() {
    let result = tampered(|db| {
        let cf = db.cf_handle("state").unwrap();
        let state = |contact: &str| db.get_cf(cf, contact).unwrap().unwrap();
        // audit-6 has four entries, audit-7 three.
        db.put_cf(cf, "audit-7", state("audit-6")).unwrap();
        db.put_cf(cf, "ghost", state("audit-4")).unwrap();
        db.put_cf(cf, "audit-5", [0xffu8, 1, 2, 3]).unwrap();
        db.delete_cf(cf, "audit-3").unwrap();
    })
    .await;
    let mut found: Vec<(pb::DamageKind, &str)> = result
        .damage
        .iter()
        .map(|d| (pb::DamageKind::try_from(d.kind).unwrap(), d.detail.as_str()))
        .collect();
    found.sort();
    let head = pb::DamageKind::HeadMismatch;
    assert_eq!(
        found,
        [
            (head, "2 contacts have entries but no recorded state"),
            (
                head,
                "contact audit-7's recorded head is contact seq 4 but its stored chain ends at 3"
            ),
            (head, "contact ghost has a recorded state but no entries"),
            (
                head,
                "the recorded state of contact audit-5 does not decode"
            ),
        ],
        "{result:?}"
    );
    assert!(result.damage.iter().all(|d| d.seq == 0), "{result:?}");
}

#[tokio::test]
async fn changed_personal_data_is_found_by_its_digest() {
    let result = tampered(|db| {
        let cf = db.cf_handle("pii").unwrap();
        // Seq 1 is the policy activation; seq 2 registers the first contact.
        let mut record = db.get_cf(cf, 2u64.to_be_bytes()).unwrap().unwrap();
        record[3] ^= 0x20;
        db.put_cf(cf, 2u64.to_be_bytes(), record).unwrap();
    })
    .await;
    assert_eq!(
        first_finding(&result),
        (2, pb::DamageKind::DigestMismatch),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_rollback_is_found_against_the_saved_checkpoint() {
    // Remove the last 5 entries and everything that would betray them: nodes, tree head,
    // contact state rows aside, and every checkpoint covering them. The stored tree is
    // then self-consistent; only the auditor's saved checkpoint shows the rollback.
    let result = tampered(|db| {
        let entries = db.cf_handle("entries").unwrap();
        for seq in 37..=41u64 {
            db.delete_cf(entries, seq.to_be_bytes()).unwrap();
        }
        let merkle = db.cf_handle("merkle").unwrap();
        for level in 4..6u8 {
            for index in 0..4u64 {
                if ((index + 1) << level) > 36 {
                    db.delete_cf(merkle, merkle_key(level, index)).unwrap();
                }
            }
        }
        // The third tile (leaves 32 to 47) keeps the leaves of entries 33 to 36.
        let tile = db.get_cf(merkle, leaf_tile_key(2)).unwrap().unwrap();
        db.put_cf(merkle, leaf_tile_key(2), &tile[..4 * 32])
            .unwrap();
        let checkpoints = db.cf_handle("checkpoints").unwrap();
        for size in 37..=41u64 {
            db.delete_cf(checkpoints, size.to_be_bytes()).unwrap();
        }
        let leaves: Vec<Hash> = (1..=36u64)
            .map(|seq| {
                let bytes = db.get_cf(entries, seq.to_be_bytes()).unwrap().unwrap();
                consent_ledger::ledger::entry::entry_hash(&bytes)
            })
            .collect();
        let meta = db.cf_handle("meta").unwrap();
        db.put_cf(meta, b"tree_size", 36u64.to_be_bytes()).unwrap();
        db.put_cf(meta, b"tree_root", root_from_leaf_hashes(&leaves))
            .unwrap();
    })
    .await;
    assert!(
        result
            .damage
            .iter()
            .any(|d| d.seq == 37 && d.kind == pb::DamageKind::Rollback as i32),
        "{result:?}"
    );
    assert_eq!(result.tree_size, 36);
}

// Multi-threaded: the test blocks on the CLI while the server answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_verifies_offline_and_any_change_to_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    populate(&server, "audit", 6).await;
    let mut client = server.client().await;
    append(&mut client, consent_granted("audit-3", "email_tracking")).await;
    append(&mut client, consent_withdrawn("audit-3", "email_tracking")).await;
    let bundle_path = work.path().join("audit-3.bundle.json");
    let key_path = work.path().join("ledger.vkey");
    let binary = env!("CARGO_BIN_EXE_consent-ledger");
    let output = std::process::Command::new(binary)
        .args(["audit", "bundle", "audit-3", "-o"])
        .arg(&bundle_path)
        .args(["--server", &server.url()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = std::process::Command::new(binary)
        .args(["public-key", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    std::fs::write(&key_path, &output.stdout).unwrap();
    server.stop().await;
    // No server and no data directory from here on.
    drop(dir);

    let verify = |path: &Path| {
        std::process::Command::new(binary)
            .args(["audit", "verify"])
            .arg(path)
            .arg("--key")
            .arg(&key_path)
            .output()
            .unwrap()
    };
    let ok = verify(&bundle_path);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("OK: 5 entries"));

    let original: pb::Bundle = from_json(
        "consentledger.v1.Bundle",
        &std::fs::read_to_string(&bundle_path).unwrap(),
    )
    .unwrap();
    let key = VerifierKey::parse(std::fs::read_to_string(&key_path).unwrap().trim()).unwrap();
    let check = |bundle: &pb::Bundle| {
        let path = work.path().join("mutated.json");
        std::fs::write(&path, to_json("consentledger.v1.Bundle", bundle).unwrap()).unwrap();
        verify_bundle_file(&path, &key).map_err(|e| format!("{e:#}"))
    };
    assert!(check(&original).is_ok());

    let mut changed = original.clone();
    let bytes = &mut changed.entries[2].stored_bytes;
    let at = bytes.len() - 3;
    bytes[at] ^= 0x04;
    let err = check(&changed).unwrap_err();
    assert!(
        err.contains("entry #3") && err.contains("not proven included"),
        "{err}"
    );

    let mut removed = original.clone();
    removed.entries.remove(1);
    let err = check(&removed).unwrap_err();
    assert!(err.contains("gap"), "{err}");

    let mut forged = original.clone();
    let checkpoint = forged.checkpoint.as_mut().unwrap();
    let text_end = checkpoint.note.find("\n\n").unwrap() + 1;
    let impostor = SigningKey::from_seed(key.name(), [42; 32]).unwrap();
    checkpoint.note = impostor.sign_note(&checkpoint.note[..text_end]).unwrap();
    let err = check(&forged).unwrap_err();
    assert!(
        err.contains("checkpoint") && err.contains("no signature"),
        "{err}"
    );

    let failed = {
        let path = work.path().join("mutated.json");
        std::fs::write(&path, to_json("consentledger.v1.Bundle", &changed).unwrap()).unwrap();
        verify(&path)
    };
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("FAILED"));
}
