//! Many clients appending to the same contact at once: the chain stays linear, no two
//! entries share a contact sequence number, and every client gets a receipt.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{append, consent_granted, consent_withdrawn, registered, TestServer};
use consent_ledger::proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_to_one_contact_form_one_linear_chain() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    append(&mut client, registered("crm-hot", "FR")).await;
    const CLIENTS: usize = 32;
    const EACH: usize = 20;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let url = server.url();
            tokio::spawn(async move {
                let mut client = pb::ledger_service_client::LedgerServiceClient::connect(url)
                    .await
                    .unwrap();
                let mut receipts = Vec::with_capacity(EACH);
                for i in 0..EACH {
                    let event = if (c + i) % 2 == 0 {
                        consent_granted("crm-hot", "email_marketing")
                    } else {
                        consent_withdrawn("crm-hot", "email_marketing")
                    };
                    receipts.push(append(&mut client, event).await);
                }
                receipts
            })
        })
        .collect();
    let mut contact_seqs = BTreeSet::new();
    let mut seqs = BTreeSet::new();
    for task in tasks {
        for receipt in task.await.unwrap() {
            assert!(
                contact_seqs.insert(receipt.contact_seq),
                "contact seq {} twice",
                receipt.contact_seq
            );
            assert!(seqs.insert(receipt.seq));
        }
    }
    let total = (CLIENTS * EACH) as u64;
    assert_eq!(contact_seqs.len() as u64, total);
    assert_eq!(contact_seqs.first(), Some(&2));
    assert_eq!(contact_seqs.last(), Some(&(total + 1)));
    let verified = client
        .verify_contact(pb::VerifyContactRequest {
            contact_id: "crm-hot".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.entries_checked, total + 1);
    let history = common::history(&mut client, "crm-hot").await;
    for pair in history.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].entry_hash);
        assert_eq!(pair[1].contact_seq, pair[0].contact_seq + 1);
    }
    drop(client);
    server.stop().await;
}
