//! Data-subject rights end to end over gRPC: the access export decrypts every personal
//! field, erasure removes personal data from every file of the data directory while the
//! ledger still verifies, and an erased identity stays suppressed.
#![allow(clippy::unwrap_used)]

mod common;

use common::{append, consent_granted, consent_withdrawn, registered, TestServer};
use consent_ledger::proto::v1 as pb;
use consent_ledger::proto::v1::eligibility_service_client::EligibilityServiceClient;
use consent_ledger::proto::v1::rights_service_client::RightsServiceClient;
use tonic::transport::Channel;
use tonic::Code;

const EMAIL: &str = "zq7-erasure-probe@example.test";
const NAME: &str = "Quillon Erasureprobe";
const PHONE: &str = "+49 30 5550123";
const NOTES: &str = "met at the Hamburg fair, prefers German";
const IP: &str = "198.51.100.77";
const AGENT: &str = "ProbeAgent/9.9 (erasure test)";

fn probe_registration(contact: &str) -> pb::Event {
    let mut event = registered(contact, "FR");
    if let Some(pb::event::Kind::ContactRegistered(m)) = &mut event.kind {
        m.personal = Some(pb::PersonalData {
            email: EMAIL.into(),
            name: NAME.into(),
            phone: PHONE.into(),
            notes: NOTES.into(),
        });
    }
    event
}

fn probe_consent(contact: &str) -> pb::Event {
    let mut event = consent_granted(contact, "email_marketing");
    if let Some(pb::event::Kind::ConsentGranted(m)) = &mut event.kind {
        m.evidence = Some(pb::CollectionEvidence {
            form_url: "https://example.test/signup".into(),
            ip_address: IP.into(),
            user_agent: AGENT.into(),
        });
    }
    event
}

struct Export {
    header: pb::ExportHeader,
    entries: Vec<pb::ExportedEntry>,
    state: pb::ContactSummary,
    integrity: Option<pb::Bundle>,
}

async fn export(
    rights: &mut RightsServiceClient<Channel>,
    contact: &str,
    kind: pb::ExportKind,
) -> Export {
    use pb::export_part::Part;
    let mut stream = rights
        .export_contact(pb::ExportContactRequest {
            contact_id: contact.into(),
            kind: kind as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let (mut header, mut entries, mut state, mut integrity) = (None, Vec::new(), None, None);
    while let Some(part) = stream.message().await.unwrap() {
        match part.part.unwrap() {
            Part::Header(h) => header = Some(h),
            Part::Entry(e) => entries.push(e),
            Part::State(s) => state = Some(s),
            Part::Integrity(b) => integrity = Some(b),
        }
    }
    Export {
        header: header.unwrap(),
        entries,
        state: state.unwrap(),
        integrity,
    }
}

/// Files under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

async fn check(
    eligibility: &mut EligibilityServiceClient<Channel>,
    contact: &str,
    purpose: &str,
) -> pb::Decision {
    eligibility
        .check(pb::CheckRequest {
            contact_id: contact.into(),
            purpose: purpose.into(),
            channel: "email".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn access_export_then_erasure_that_leaves_no_personal_data_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let channel = server.channel().await;
    let mut ledger = server.client().await;
    let mut rights = RightsServiceClient::new(channel.clone());
    let mut eligibility = EligibilityServiceClient::new(channel);

    let contact = "crm-erase-1";
    append(&mut ledger, probe_registration(contact)).await;
    append(&mut ledger, common::basis(contact, "storage")).await;
    append(&mut ledger, probe_consent(contact)).await;
    append(&mut ledger, registered("crm-bystander", "FR")).await;
    assert!(
        check(&mut eligibility, contact, "email_marketing")
            .await
            .allowed
    );

    // Access: every entry, every personal field decrypted, integrity evidence attached.
    let before = export(&mut rights, contact, pb::ExportKind::Access).await;
    assert_eq!(before.entries.len(), 3);
    assert!(before.header.erasure.is_none());
    let personal: Vec<_> = before
        .entries
        .iter()
        .map(|e| (e.personal_status, e.personal.clone().unwrap_or_default()))
        .collect();
    let present = pb::PersonalDataStatus::Present as i32;
    assert_eq!(personal[0].0, present);
    assert_eq!(
        (
            personal[0].1.email.as_str(),
            personal[0].1.name.as_str(),
            personal[0].1.phone.as_str(),
            personal[0].1.notes.as_str()
        ),
        (EMAIL, NAME, PHONE, NOTES)
    );
    assert_eq!(personal[1].0, pb::PersonalDataStatus::None as i32);
    assert_eq!(personal[2].0, present);
    assert_eq!(
        (
            personal[2].1.ip_address.as_str(),
            personal[2].1.user_agent.as_str()
        ),
        (IP, AGENT)
    );
    assert_eq!(before.state.country, "FR");
    assert_eq!(before.state.consents[0].granted_contact_seq, 3);
    let bundle = before.integrity.unwrap();
    assert_eq!(bundle.entries.len(), 3);
    // The portability export keeps only what the person provided.
    let portable = export(&mut rights, contact, pb::ExportKind::Portability).await;
    assert_eq!(portable.entries.len(), 2);
    assert!(portable.integrity.is_none());

    // A reason is required, and only people can be erased.
    let refused = rights
        .erase_contact(pb::EraseContactRequest {
            contact_id: contact.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("reason:"),
        "{}",
        refused.message()
    );
    let erased = rights
        .erase_contact(pb::EraseContactRequest {
            contact_id: contact.into(),
            reason: "Art. 17 request received by email".into(),
            request_id: String::new(),
            idempotency_key: "erase-crm-erase-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let receipt = erased.receipt.unwrap();
    assert_eq!(receipt.contact_seq, 4);
    assert_eq!(erased.records_purged, 2);
    let twice = rights
        .erase_contact(pb::EraseContactRequest {
            contact_id: contact.into(),
            reason: "again".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);

    // Denied for every purpose, storage included, citing the erasure.
    for purpose in ["storage", "email_marketing", "profiling"] {
        let decision = check(&mut eligibility, contact, purpose).await;
        assert!(!decision.allowed, "{purpose}");
        assert_eq!(decision.rule_id, "erased");
        assert!(decision.evidence.iter().any(|e| e.contact_seq == 4));
    }

    // The person's wishes are still recorded; anything else, or personal data, is refused.
    append(&mut ledger, consent_withdrawn(contact, "email_marketing")).await;
    let regrant = ledger
        .append(pb::AppendRequest {
            event: Some(consent_granted(contact, "email_marketing")),
        })
        .await
        .unwrap_err();
    assert_eq!(regrant.code(), Code::FailedPrecondition);
    assert!(
        regrant.message().contains("erased"),
        "{}",
        regrant.message()
    );

    // The export says what was erased and when; the entries and digests stay.
    let after = export(&mut rights, contact, pb::ExportKind::Access).await;
    assert_eq!(after.header.erasure.as_ref().unwrap().contact_seq, 4);
    assert_eq!(after.entries.len(), 5);
    assert_eq!(
        after.entries[0].personal_status,
        pb::PersonalDataStatus::Erased as i32
    );
    assert!(after.entries.iter().all(|e| e.personal.is_none()));
    assert_eq!(after.state.erased_contact_seq, 4);

    // The erased identity is suppressed, however it is written; a DPO may override.
    let mut again = probe_registration("crm-erase-2");
    if let Some(pb::event::Kind::ContactRegistered(m)) = &mut again.kind {
        m.personal.as_mut().unwrap().email = EMAIL.to_uppercase();
    }
    let suppressed = ledger
        .append(pb::AppendRequest {
            event: Some(again.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(suppressed.code(), Code::FailedPrecondition);
    assert!(
        suppressed
            .message()
            .contains("suppressed by the erasure recorded at seq"),
        "{}",
        suppressed.message()
    );
    if let Some(pb::event::Kind::ContactRegistered(m)) = &mut again.kind {
        m.suppression_override = Some(pb::SuppressionOverride {
            reason: "the person subscribed again in writing, ticket DPO-88".into(),
        });
        m.personal = Some(pb::PersonalData {
            email: "zq7-other@example.test".into(),
            ..Default::default()
        });
    }
    append(&mut ledger, again).await;

    // The chain still verifies, and the erasure survives a restart.
    let verified = ledger
        .verify_contact(pb::VerifyContactRequest {
            contact_id: contact.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{:?}", verified.first_break);
    assert_eq!(verified.entries_checked, 5);
    drop((ledger, rights, eligibility));
    server.stop().await;

    for needle in [EMAIL, NAME, PHONE, NOTES, IP, AGENT, "Erasureprobe"] {
        assert_eq!(
            files_containing(dir.path(), needle),
            Vec::<String>::new(),
            "{needle:?} found on disk"
        );
    }

    let server = TestServer::start(dir.path()).await;
    let mut ledger = server.client().await;
    let verified = ledger
        .verify_contact(pb::VerifyContactRequest {
            contact_id: contact.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok);
    let mut rights = RightsServiceClient::new(server.channel().await);
    let after_restart = export(&mut rights, contact, pb::ExportKind::Access).await;
    assert!(after_restart.header.erasure.is_some());
    drop((ledger, rights));
    server.stop().await;
}

#[tokio::test]
async fn exports_and_erasure_refuse_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut rights = RightsServiceClient::new(server.channel().await);
    let unknown = rights
        .export_contact(pb::ExportContactRequest {
            contact_id: "crm-nobody".into(),
            kind: pb::ExportKind::Access as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let no_kind = rights
        .export_contact(pb::ExportContactRequest {
            contact_id: "crm-nobody".into(),
            kind: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(no_kind.code(), Code::InvalidArgument);
    assert!(no_kind.message().starts_with("kind:"));
    for (contact, code) in [
        ("crm-nobody", Code::NotFound),
        ("~policy", Code::InvalidArgument),
    ] {
        let err = rights
            .erase_contact(pb::EraseContactRequest {
                contact_id: contact.into(),
                reason: "test".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{contact}: {}", err.message());
    }
    drop(rights);
    server.stop().await;
}
