//! The ledger API end to end: a real server on a real socket over a temporary RocksDB.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use consent_ledger::config::Limits;
use consent_ledger::proto::v1 as pb;
use pb::event::Kind;
use tonic::Code;

fn every_kind(contact: &str) -> Vec<pb::Event> {
    vec![
        registered(contact, "US"),
        event(
            contact,
            Kind::ProfileUpdated(pb::ProfileUpdated {
                country: "DE".into(),
                region: "DE-BY".into(),
                relationship: Some(pb::Relationship {
                    audience: pb::Audience::B2c as i32,
                    lifecycle: pb::Lifecycle::Customer as i32,
                }),
                personal: None,
                suppression_override: None,
            }),
        ),
        basis(contact, "profiling"),
        event(
            contact,
            Kind::AcquisitionRecorded(pb::AcquisitionRecorded {
                source_kind: pb::SourceKind::DataVendorExport as i32,
                supplier: "Acme Data GmbH".into(),
                source_reference: "list-2026-11".into(),
                notice_sent_at: Some(prost_types::Timestamp {
                    seconds: 1_760_000_000,
                    nanos: 0,
                }),
            }),
        ),
        consent_granted(contact, "email_marketing"),
        event(
            contact,
            Kind::DoubleOptInRequested(pb::DoubleOptInRequested {
                purpose: "email_marketing".into(),
                channel: "email".into(),
                token_sha256: "a".repeat(64),
                evidence: Some(pb::CollectionEvidence {
                    form_url: "https://example.test/signup".into(),
                    ip_address: "2001:db8::1".into(),
                    user_agent: String::new(),
                }),
            }),
        ),
        event(
            contact,
            Kind::DoubleOptInConfirmed(pb::DoubleOptInConfirmed {
                purpose: "email_marketing".into(),
                channel: "email".into(),
                token_sha256: "a".repeat(64),
                evidence: None,
            }),
        ),
        consent_withdrawn(contact, "email_marketing"),
        event(
            contact,
            Kind::ObjectionRecorded(pb::ObjectionRecorded {
                scope: pb::ObjectionScope::DirectMarketing as i32,
                purpose: String::new(),
            }),
        ),
        event(
            contact,
            Kind::RestrictionApplied(pb::RestrictionApplied {
                ground: pb::RestrictionGround::AccuracyContested as i32,
                reference: "DSR-17".into(),
            }),
        ),
        event(
            contact,
            Kind::RestrictionLifted(pb::RestrictionLifted {
                restriction_contact_seq: 10,
                reason: "accuracy verified".into(),
            }),
        ),
    ]
}

/// The event as the ledger gives it back: personal data removed, times filled in.
fn without_personal(mut event: pb::Event) -> Kind {
    match event.kind.take() {
        Some(Kind::ContactRegistered(mut m)) => {
            m.personal = None;
            Kind::ContactRegistered(m)
        }
        Some(Kind::ConsentGranted(mut m)) => {
            if let Some(e) = &mut m.evidence {
                e.ip_address.clear();
                e.user_agent.clear();
            }
            Kind::ConsentGranted(m)
        }
        Some(Kind::DoubleOptInRequested(mut m)) => {
            if let Some(e) = &mut m.evidence {
                e.ip_address.clear();
                e.user_agent.clear();
            }
            Kind::DoubleOptInRequested(m)
        }
        Some(kind) => kind,
        None => unreachable!(),
    }
}

#[tokio::test]
async fn every_event_kind_is_recorded_and_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let events = every_kind("crm-1");
    let mut receipts = Vec::new();
    for event in events.clone() {
        receipts.push(append(&mut client, event).await);
    }
    for (i, receipt) in receipts.iter().enumerate() {
        // Seq 1 of every new ledger is its policy activation.
        assert_eq!(receipt.seq, i as u64 + 2);
        assert_eq!(receipt.contact_seq, i as u64 + 1);
        assert_eq!(receipt.tree_size, i as u64 + 2);
        assert_eq!(receipt.entry_hash.len(), 32);
        assert!(!receipt.replayed);
    }

    let history = history(&mut client, "crm-1").await;
    assert_eq!(history.len(), events.len());
    let mut prev = vec![0u8; 32];
    for ((entry, sent), receipt) in history.iter().zip(events).zip(&receipts) {
        assert_eq!(entry.entry_hash, receipt.entry_hash);
        assert_eq!(entry.prev_hash, prev, "chain link of seq {}", entry.seq);
        prev = entry.entry_hash.clone();
        assert_eq!(entry.actor, "local-unauthenticated");
        let recorded = entry.event.clone().unwrap();
        assert_eq!(recorded.kind, Some(without_personal(sent)));
        // Personal data never enters the hashed bytes.
        let stored = String::from_utf8_lossy(&entry.stored_bytes);
        for personal in [
            "crm-1@example.test",
            "Name of crm-1",
            "192.0.2.7",
            "2001:db8::1",
            "Mozilla",
        ] {
            assert!(
                !stored.contains(personal),
                "{personal} in entry {}",
                entry.seq
            );
        }
        let mut leaf = vec![0u8];
        leaf.extend_from_slice(&entry.stored_bytes);
        use sha2::Digest;
        assert_eq!(sha2::Sha256::digest(&leaf).to_vec(), entry.entry_hash);
    }
    // Registration and the consent and DOI request with IP evidence carry personal data.
    let with_personal: Vec<u64> = history
        .iter()
        .filter(|e| !e.personal_data_sha256.is_empty())
        .map(|e| e.contact_seq)
        .collect();
    assert_eq!(with_personal, vec![1, 5, 6]);

    let entry = client
        .get_entry(pb::GetEntryRequest { seq: 6 })
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(entry, history[4]);

    let verified = client
        .verify_contact(pb::VerifyContactRequest {
            contact_id: "crm-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.entries_checked, 11);
    assert_eq!(verified.head_hash, receipts[10].entry_hash);
    assert_eq!(
        tree_head(&mut client).await,
        (12, receipts[10].tree_root.clone())
    );
    server.stop().await;
}

#[tokio::test]
async fn history_is_paged_with_opaque_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    append(&mut client, registered("crm-2", "FR")).await;
    for _ in 0..24 {
        append(&mut client, consent_granted("crm-2", "email_marketing")).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .get_history(pb::GetHistoryRequest {
                contact_id: "crm-2".into(),
                page_size: 10,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        seen.extend(page.entries.iter().map(|e| e.contact_seq));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());

    let bad = client
        .get_history(pb::GetHistoryRequest {
            contact_id: "crm-2".into(),
            page_size: 10,
            page_token: "garbage".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("page_token"), "{}", bad.message());
    let unknown = client
        .get_history(pb::GetHistoryRequest {
            contact_id: "crm-nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let missing = client
        .get_entry(pb::GetEntryRequest { seq: 999 })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn idempotent_retry_returns_the_original_receipt_and_conflicts_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let mut first = registered("crm-3", "GB");
    first.idempotency_key = "import-row-1".into();
    let original = append(&mut client, first.clone()).await;
    append(&mut client, basis("crm-3", "storage")).await;

    let retried = append(&mut client, first.clone()).await;
    assert!(retried.replayed);
    assert_eq!(
        pb::Receipt {
            replayed: false,
            ..retried
        },
        original,
        "a retry returns the original receipt"
    );
    let head = tree_head(&mut client).await;
    assert_eq!(head.0, 3, "the retry wrote nothing");

    let mut different = first.clone();
    different.kind = registered("crm-3", "IE").kind;
    let conflict = client
        .append(pb::AppendRequest {
            event: Some(different),
        })
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    assert!(
        conflict.message().contains("idempotency_key"),
        "{}",
        conflict.message()
    );
    assert_eq!(
        tree_head(&mut client).await,
        head,
        "the conflict wrote nothing"
    );

    // The same key twice within one batch: the second is a replay of the first.
    let mut keyed = consent_granted("crm-3", "email_marketing");
    keyed.idempotency_key = "form-submit-9".into();
    let batch = client
        .append_batch(pb::AppendBatchRequest {
            events: vec![keyed.clone(), keyed],
        })
        .await
        .unwrap()
        .into_inner();
    let receipts: Vec<pb::Receipt> = batch
        .results
        .into_iter()
        .map(|r| match r.outcome {
            Some(pb::append_result::Outcome::Receipt(receipt)) => receipt,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(receipts[0].seq, 4);
    assert_eq!(receipts[1].seq, 4);
    assert!(!receipts[0].replayed && receipts[1].replayed);
    assert_eq!(tree_head(&mut client).await.0, 4);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_event_in_a_batch_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let mut unknown_purpose = consent_granted("crm-4", "telepathy");
    unknown_purpose.idempotency_key = "k-bad".into();
    let batch = client
        .append_batch(pb::AppendBatchRequest {
            events: vec![
                registered("crm-4", "DE"),
                unknown_purpose,
                consent_granted("crm-4", "email_marketing"),
                consent_granted("crm-unregistered", "email_marketing"),
                registered("crm-4", "DE"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let outcomes: Vec<_> = batch
        .results
        .iter()
        .map(|r| (r.index, r.outcome.clone()))
        .collect();
    assert!(
        matches!(outcomes[0], (0, Some(pb::append_result::Outcome::Receipt(ref r))) if r.seq == 2)
    );
    match &outcomes[1] {
        (1, Some(pb::append_result::Outcome::Error(e))) => {
            assert_eq!(e.code, Code::InvalidArgument as i32);
            assert_eq!(e.field, "consent_granted.purpose");
            assert!(e.message.contains("telepathy"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(outcomes[2], (2, Some(pb::append_result::Outcome::Receipt(ref r))) if r.seq == 3 && r.contact_seq == 2)
    );
    assert!(
        matches!(outcomes[3], (3, Some(pb::append_result::Outcome::Error(ref e))) if e.code == Code::NotFound as i32)
    );
    assert!(
        matches!(outcomes[4], (4, Some(pb::append_result::Outcome::Error(ref e))) if e.code == Code::FailedPrecondition as i32)
    );
    assert_eq!(tree_head(&mut client).await.0, 3);
    assert_eq!(history(&mut client, "crm-4").await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_names_the_field_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_message_bytes: 64 * 1024,
        max_batch_events: 5,
        ..Limits::default()
    };
    let server = TestServer::start_with(dir.path(), limits).await;
    let mut client = server.client().await;
    append(&mut client, registered("crm-5", "DE")).await;

    let future = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + 600,
        nanos: 0,
    };
    let with = |mut e: pb::Event, f: &dyn Fn(&mut pb::Event)| {
        f(&mut e);
        e
    };
    let cases: Vec<(&str, pb::Event, &str)> = vec![
        (
            "email as contact id",
            registered("jane@example.com", "DE"),
            "contact_id",
        ),
        (
            "phone as contact id",
            registered("+4917012345678", "DE"),
            "contact_id",
        ),
        ("empty contact id", registered("", "DE"), "contact_id"),
        (
            "long contact id",
            registered(&"x".repeat(129), "DE"),
            "contact_id",
        ),
        (
            "unknown country",
            registered("crm-6", "XX"),
            "contact_registered.country",
        ),
        (
            "lower-case country",
            registered("crm-6", "de"),
            "contact_registered.country",
        ),
        (
            "unknown purpose",
            consent_granted("crm-5", "telepathy"),
            "consent_granted.purpose",
        ),
        (
            "unknown channel",
            with(consent_granted("crm-5", "email_marketing"), &|e| {
                if let Some(Kind::ConsentGranted(m)) = &mut e.kind {
                    m.channel = "pigeon".into();
                }
            }),
            "consent_granted.channel",
        ),
        (
            "missing basis",
            with(basis("crm-5", "storage"), &|e| {
                if let Some(Kind::LegalBasisRecorded(m)) = &mut e.kind {
                    m.basis = 0;
                }
            }),
            "legal_basis_recorded.basis",
        ),
        (
            "unknown basis value",
            with(basis("crm-5", "storage"), &|e| {
                if let Some(Kind::LegalBasisRecorded(m)) = &mut e.kind {
                    m.basis = 77;
                }
            }),
            "legal_basis_recorded.basis",
        ),
        (
            "missing justification",
            with(basis("crm-5", "storage"), &|e| {
                if let Some(Kind::LegalBasisRecorded(m)) = &mut e.kind {
                    m.justification.clear();
                }
            }),
            "legal_basis_recorded.justification",
        ),
        (
            "missing notice",
            with(consent_granted("crm-5", "email_marketing"), &|e| {
                if let Some(Kind::ConsentGranted(m)) = &mut e.kind {
                    m.notice = None;
                }
            }),
            "consent_granted.notice",
        ),
        (
            "bad ip",
            with(consent_granted("crm-5", "email_marketing"), &|e| {
                if let Some(Kind::ConsentGranted(m)) = &mut e.kind {
                    m.evidence.as_mut().unwrap().ip_address = "999.1.1.1".into();
                }
            }),
            "consent_granted.evidence.ip_address",
        ),
        (
            "time in the future",
            with(consent_granted("crm-5", "email_marketing"), &|e| {
                e.occurred_at = Some(future)
            }),
            "occurred_at",
        ),
        (
            "no kind",
            pb::Event {
                contact_id: "crm-5".into(),
                ..Default::default()
            },
            "kind",
        ),
        (
            "vendor list without supplier",
            event(
                "crm-5",
                Kind::AcquisitionRecorded(pb::AcquisitionRecorded {
                    source_kind: pb::SourceKind::PurchasedList as i32,
                    source_reference: "list-1".into(),
                    ..Default::default()
                }),
            ),
            "acquisition_recorded.supplier",
        ),
        (
            "token digest not hex",
            event(
                "crm-5",
                Kind::DoubleOptInRequested(pb::DoubleOptInRequested {
                    purpose: "email_marketing".into(),
                    channel: "email".into(),
                    token_sha256: "plain-token".into(),
                    evidence: None,
                }),
            ),
            "double_opt_in_requested.token_sha256",
        ),
    ];
    for (name, event, field) in cases {
        let err = client
            .append(pb::AppendRequest { event: Some(event) })
            .await
            .expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert!(
            err.message().starts_with(&format!("{field}: ")),
            "{name}: expected field {field}, got {:?}",
            err.message()
        );
    }

    let oversized = with(basis("crm-5", "storage"), &|e| {
        if let Some(Kind::LegalBasisRecorded(m)) = &mut e.kind {
            m.justification = "x".repeat(100 * 1024);
        }
    });
    let err = client
        .append(pb::AppendRequest {
            event: Some(oversized),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(
        err.message().contains("message length too large"),
        "{}",
        err.message()
    );

    let err = client
        .append_batch(pb::AppendBatchRequest {
            events: vec![basis("crm-5", "storage"); 6],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("max_batch_events"),
        "{}",
        err.message()
    );

    // Nothing of the rejected requests was written.
    assert_eq!(tree_head(&mut client).await.0, 2);
    server.stop().await;
}

#[tokio::test]
async fn events_must_fit_the_contacts_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let status = |r: Result<tonic::Response<pb::AppendResponse>, tonic::Status>| r.unwrap_err();

    let err = status(
        client
            .append(pb::AppendRequest {
                event: Some(basis("crm-7", "storage")),
            })
            .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    append(&mut client, registered("crm-7", "US")).await;
    let err = status(
        client
            .append(pb::AppendRequest {
                event: Some(registered("crm-7", "US")),
            })
            .await,
    );
    assert_eq!(err.code(), Code::FailedPrecondition);

    let confirm = event(
        "crm-7",
        Kind::DoubleOptInConfirmed(pb::DoubleOptInConfirmed {
            purpose: "email_marketing".into(),
            channel: "email".into(),
            token_sha256: "b".repeat(64),
            evidence: None,
        }),
    );
    let err = status(
        client
            .append(pb::AppendRequest {
                event: Some(confirm),
            })
            .await,
    );
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .starts_with("double_opt_in_confirmed.token_sha256: "),
        "{}",
        err.message()
    );

    let lift = event(
        "crm-7",
        Kind::RestrictionLifted(pb::RestrictionLifted {
            restriction_contact_seq: 1,
            reason: "done".into(),
        }),
    );
    let err = status(client.append(pb::AppendRequest { event: Some(lift) }).await);
    assert_eq!(err.code(), Code::FailedPrecondition);

    let move_region = event(
        "crm-7",
        Kind::ProfileUpdated(pb::ProfileUpdated {
            region: "DE-BY".into(),
            ..Default::default()
        }),
    );
    let err = status(
        client
            .append(pb::AppendRequest {
                event: Some(move_region),
            })
            .await,
    );
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(tree_head(&mut client).await.0, 2);
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_answer_generic_clients() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let channel = server.channel().await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "consentledger.v1.LedgerService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["consentledger.v1.LedgerService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }

    // v1alpha, still used by many tools.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    let mut alpha = AlphaClient::new(channel);
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol(
            "consentledger.v1.LedgerService".into(),
        )),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert!(matches!(
        response.message_response,
        Some(tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()
    ));
    server.stop().await;
}

/// More connections than gRPC threads, all busy at once: every connection is served, the
/// appends on all of them land in one gapless sequence, and a graceful stop ends every
/// thread cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_share_the_grpc_threads_and_all_stop_cleanly() {
    const CONNECTIONS: usize = 7;
    const EACH: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_config(consent_ledger::config::ServeConfig {
        data_dir: dir.path().to_path_buf(),
        grpc_threads: 3,
        ..Default::default()
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(server.client().await);
    }
    let calls = clients.into_iter().enumerate().map(|(c, mut client)| {
        tokio::spawn(async move {
            let contact = format!("crm-lane-{c}");
            let mut seqs = vec![append(&mut client, registered(&contact, "US")).await.seq];
            for _ in 1..EACH {
                let granted = consent_granted(&contact, "email_marketing");
                seqs.push(append(&mut client, granted).await.seq);
            }
            assert_eq!(history(&mut client, &contact).await.len(), EACH);
            seqs
        })
    });
    let mut seqs: Vec<u64> = futures::future::join_all(calls)
        .await
        .into_iter()
        .flat_map(Result::unwrap)
        .collect();
    seqs.sort_unstable();
    // Seq 1 is the policy activation.
    let expected: Vec<u64> = (2..2 + (CONNECTIONS * EACH) as u64).collect();
    assert_eq!(seqs, expected);
    let mut client = server.client().await;
    assert_eq!(
        tree_head(&mut client).await.0,
        1 + (CONNECTIONS * EACH) as u64
    );
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn a_clean_restart_keeps_tree_chains_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let contacts: Vec<String> = (0..10).map(|i| format!("crm-r{i}")).collect();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    for contact in &contacts {
        append(&mut client, registered(contact, "NL")).await;
        append(&mut client, consent_granted(contact, "email_marketing")).await;
        append(&mut client, consent_withdrawn(contact, "email_marketing")).await;
    }
    let head_before = tree_head(&mut client).await;
    let mut histories_before = Vec::new();
    for contact in &contacts {
        histories_before.push(history(&mut client, contact).await);
    }
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    assert_eq!(tree_head(&mut client).await, head_before);
    for (contact, before) in contacts.iter().zip(&histories_before) {
        assert_eq!(&history(&mut client, contact).await, before);
        let verified = client
            .verify_contact(pb::VerifyContactRequest {
                contact_id: contact.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(verified.ok, "{contact}: {verified:?}");
    }
    let next = append(&mut client, basis(&contacts[0], "storage")).await;
    assert_eq!(next.seq, head_before.0 + 1);
    assert_eq!(next.contact_seq, 4);
    assert_eq!(
        history(&mut client, &contacts[0]).await[3].prev_hash,
        histories_before[0][2].entry_hash
    );
    server.stop().await;

    // The projections themselves survive the restart unchanged.
    let store = consent_ledger::store::Store::open(dir.path()).unwrap();
    let state = store
        .contact_state(&consent_ledger::model::ContactId::parse("c", &contacts[1]).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(state.head_contact_seq, 3);
    assert_eq!(state.consents.len(), 1);
    assert!(state.consents[0].granted.is_some() && state.consents[0].withdrawn.is_some());
}

// Many clients appending to the same contact at once: the chain stays linear, no two
// entries share a contact sequence number, and every client gets a receipt.
mod concurrency {
    use super::*;
    use std::collections::BTreeSet;

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
}

/// Bad input below the API: raw HTTP/2 requests with broken gRPC framing or protobuf bytes
/// get an error status, and the server keeps serving everyone else.
mod wire {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;

    /// Sends `body` (already framed, or not) to `path` with `content_type`; returns the
    /// HTTP status and the `grpc-status` from the headers or trailers.
    async fn raw_call(
        addr: std::net::SocketAddr,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Option<i32>) {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let request = hyper::Request::post(format!("http://{addr}{path}"))
            .header("content-type", content_type)
            .header("te", "trailers")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let header_status = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let collected = response.into_body().collect().await.unwrap();
        let trailer_status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .and_then(|v| v.to_str().ok()?.parse().ok());
        (status, header_status.or(trailer_status))
    }

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    #[tokio::test]
    async fn broken_frames_and_bytes_are_refused_and_the_server_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path()).await;
        let mut client = server.client().await;
        let append_path = "/consentledger.v1.LedgerService/Append";
        let grpc = "application/grpc";
        // Protobuf bytes that do not parse (a truncated length-delimited field).
        let (http, code) =
            raw_call(server.addr, append_path, grpc, framed(&[0x0a, 0x40, 0x01])).await;
        assert_eq!((http, code), (200, Some(Code::Internal as i32)));
        // A string field holding bytes that are not UTF-8.
        let bad_utf8 = [0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe];
        let (_, code) = raw_call(server.addr, append_path, grpc, framed(&bad_utf8)).await;
        assert_eq!(code, Some(Code::Internal as i32));
        // A frame that announces more than the message limit.
        let mut huge = vec![0];
        huge.extend_from_slice(&(64u32 << 20).to_be_bytes());
        huge.extend_from_slice(&[0; 16]);
        let (_, code) = raw_call(server.addr, append_path, grpc, huge).await;
        assert_eq!(code, Some(Code::OutOfRange as i32));
        // A frame cut short.
        let (_, code) = raw_call(server.addr, append_path, grpc, vec![0, 0, 0, 0, 9, 1]).await;
        assert!(matches!(code, Some(c) if c != 0), "{code:?}");
        // Not gRPC at all.
        let (http, code) =
            raw_call(server.addr, append_path, "application/json", b"{}".to_vec()).await;
        assert!(
            http != 200 || code.is_some_and(|c| c != 0),
            "{http} {code:?}"
        );
        // An unknown method.
        let (_, code) = raw_call(
            server.addr,
            "/consentledger.v1.LedgerService/Nope",
            grpc,
            framed(&[]),
        )
        .await;
        assert_eq!(code, Some(Code::PermissionDenied as i32));

        // Everyone else is still served.
        append(&mut client, registered("crm-after-wire", "DE")).await;
        drop(client);
        server.stop().await;
    }

    /// A caller that opens a large `Screen` and stops reading: after `request_timeout`
    /// the server stops the screening and counts it; when the caller reads again it gets
    /// what was queued, then `DEADLINE_EXCEEDED` naming the limit, and never a summary.
    /// Other callers are served throughout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_its_caller_stops_reading_is_ended_after_the_request_timeout() {
        use consent_ledger::config::ServeConfig;
        use consent_ledger::proto::v1::eligibility_service_client::EligibilityServiceClient;
        use std::time::Duration;

        let dir = tempfile::tempdir().unwrap();
        let (server, port) = TestServer::start_with_metrics(ServeConfig {
            data_dir: dir.path().to_path_buf(),
            limits: Limits {
                request_timeout: Duration::from_secs(2),
                ..Limits::default()
            },
            ..ServeConfig::default()
        })
        .await;
        append(&mut server.client().await, registered("crm-reader", "US")).await;
        let mut eligibility = EligibilityServiceClient::new(server.channel().await);
        let ids = 300_000;
        let mut stalled = eligibility
            .screen(screen_requests(ids))
            .await
            .unwrap()
            .into_inner();
        // Not reading: the transport's windows and the server's queue fill, then the
        // server waits for the caller for request_timeout.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let metrics = http_get(port, "/metrics").await;
        assert!(
            metrics.contains("consent_ledger_stalled_streams_total 1"),
            "the stopped stream is counted:\n{metrics}"
        );
        let decision = EligibilityServiceClient::new(server.channel().await)
            .check(pb::CheckRequest {
                contact_id: "crm-reader".into(),
                purpose: "email_marketing".into(),
                channel: "email".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(decision.contact_id, "crm-reader");

        let mut decided = 0;
        let status = loop {
            match stalled.message().await {
                Ok(Some(response)) => match response.kind {
                    Some(pb::screen_response::Kind::Decisions(d)) => {
                        decided += d.decisions.len();
                    }
                    other => panic!("a stopped screening sent {other:?}"),
                },
                Ok(None) => panic!("the stream ended without saying why"),
                Err(status) => break status,
            }
        };
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert!(
            status.message().contains("Screen") && status.message().contains("request_timeout"),
            "{}",
            status.message()
        );
        assert!(
            decided > 0 && decided < ids,
            "{decided} decisions before the error"
        );
        server.stop().await;
    }

    /// One HTTP/2 frame: 24-bit length, type, flags, stream id, payload.
    fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut frame = vec![len[1], len[2], len[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// An HPACK header field, literal without indexing, no Huffman coding (short strings).
    fn hpack_literal(name: &str, value: &str) -> Vec<u8> {
        let mut field = vec![0x00, u8::try_from(name.len()).unwrap()];
        field.extend_from_slice(name.as_bytes());
        field.push(u8::try_from(value.len()).unwrap());
        field.extend_from_slice(value.as_bytes());
        field
    }

    /// A peer that opens a `Screen`, sends ids, and then neither reads its socket nor
    /// answers anything: the server pings it after `keepalive_secs` of silence and closes
    /// the connection (GOAWAY, then end of stream) when the ping goes unanswered, so the
    /// call and everything it holds are released. Others are served meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_stops_reading_its_socket_is_disconnected_by_keepalive() {
        use prost::Message;
        use std::time::{Duration, Instant};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start_with(
            dir.path(),
            Limits {
                keepalive: Duration::from_secs(1),
                ..Limits::default()
            },
        )
        .await;
        let mut client = server.client().await;
        append(&mut client, registered("crm-alive", "US")).await;

        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS, defaults
        let headers: Vec<u8> = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/consentledger.v1.EligibilityService/Screen"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        .iter()
        .flat_map(|(name, value)| hpack_literal(name, value))
        .collect();
        out.extend(h2_frame(0x1, 0x4, 1, &headers)); // HEADERS, END_HEADERS
        let request = pb::ScreenRequest {
            target: Some(pb::ScreenTarget {
                purpose: "email_marketing".into(),
                channel: "email".into(),
                ..Default::default()
            }),
            contact_ids: (0..3000).map(|i| format!("nobody-{i}")).collect(),
        };
        let message = framed(&request.encode_to_vec());
        assert!(message.len() < 60_000, "fits the initial window");
        for chunk in message.chunks(16_384) {
            out.extend(h2_frame(0x0, 0, 1, chunk)); // DATA, the stream left open
        }
        socket.write_all(&out).await.unwrap();

        // Silent, and reading nothing, for longer than a keepalive round.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let check = pb::CheckRequest {
            contact_id: "crm-alive".into(),
            purpose: "email_marketing".into(),
            channel: "email".into(),
            ..Default::default()
        };
        let mut eligibility =
            consent_ledger::proto::v1::eligibility_service_client::EligibilityServiceClient::new(
                server.channel().await,
            );
        assert_eq!(
            eligibility
                .check(check)
                .await
                .unwrap()
                .into_inner()
                .contact_id,
            "crm-alive"
        );

        // What the server sent before it gave up, then the end of the connection.
        let started = Instant::now();
        let mut received = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut received))
            .await
            .expect("the server kept the connection of a peer that answers nothing")
            .unwrap();
        let mut kinds = Vec::new();
        let mut rest = &received[..];
        while rest.len() >= 9 {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            kinds.push(rest[3]);
            rest = &rest[(9 + len).min(rest.len())..];
        }
        assert!(
            kinds.contains(&0x0),
            "the screening had started answering: {kinds:?}"
        );
        assert!(kinds.contains(&0x6), "the server pinged: {kinds:?}");
        assert!(kinds.contains(&0x7), "the server said GOAWAY: {kinds:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "closed before the read began"
        );
        server.stop().await;
    }
}
