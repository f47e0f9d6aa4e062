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

fn open(contact: &str, kind: pb::RequestKind, regime: pb::RequestRegime) -> pb::OpenRequestRequest {
    pb::OpenRequestRequest {
        contact_id: contact.into(),
        kind: kind as i32,
        regime: regime as i32,
        channel: "email".into(),
        requester: Some(pb::PersonalData {
            email: format!("{contact}@example.test"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn received(day: &str) -> Option<prost_types::Timestamp> {
    let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
    Some(consent_ledger::service::convert::to_timestamp(
        date.and_hms_opt(10, 0, 0).unwrap().and_utc(),
    ))
}

fn refused_rule(status: tonic::Status, rule: &str) {
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains(rule),
        "expected rule {rule}: {}",
        status.message()
    );
}

async fn opened(
    rights: &mut RightsServiceClient<Channel>,
    request: pb::OpenRequestRequest,
) -> pb::DataSubjectRequest {
    rights
        .open_request(request)
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap()
}

async fn list(
    rights: &mut RightsServiceClient<Channel>,
    request: pb::ListRequestsRequest,
) -> Vec<String> {
    rights
        .list_requests(request)
        .await
        .unwrap()
        .into_inner()
        .requests
        .into_iter()
        .map(|r| r.request_id)
        .collect()
}

#[tokio::test]
async fn requests_run_from_receipt_to_completion_under_the_deadline_rules() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let channel = server.channel().await;
    let mut ledger = server.client().await;
    let mut rights = RightsServiceClient::new(channel.clone());
    let mut eligibility = EligibilityServiceClient::new(channel);
    for contact in ["crm-r1", "crm-r2", "crm-r3"] {
        append(&mut ledger, registered(contact, "FR")).await;
        append(&mut ledger, consent_granted(contact, "email_marketing")).await;
    }
    let today = chrono::Utc::now().date_naive();

    // A GDPR request received on 31 January is due on the last day of February, and is
    // overdue now; it can no longer be extended.
    let mut late = open("crm-r1", pb::RequestKind::Access, pb::RequestRegime::Gdpr);
    late.received_at = received("2026-01-31");
    let late = rights.open_request(late).await.unwrap().into_inner();
    let late_request = late.request.unwrap();
    assert_eq!(late_request.received_on, "2026-01-31");
    assert_eq!(late_request.due_on, "2026-02-28");
    assert_eq!(late_request.status, pb::RequestStatus::Open as i32);
    assert!(late_request.overdue);
    assert!(late_request.days_left < 0);
    assert_eq!(late.receipt.unwrap().contact_seq, 3);
    let extend_late = rights
        .extend_request(pb::ExtendRequestRequest {
            request_id: late_request.request_id.clone(),
            reason: "complex".into(),
            subject_notified_on: today.to_string(),
        })
        .await
        .unwrap_err();
    refused_rule(extend_late, "extend_within_first_period");

    // An erasure request: extended once within the first month, completed only after the
    // erasure ran for it, and closed for good afterwards.
    let erasure = opened(
        &mut rights,
        open("crm-r1", pb::RequestKind::Erasure, pb::RequestRegime::Gdpr),
    )
    .await;
    let id = erasure.request_id.clone();
    let extended = rights
        .extend_request(pb::ExtendRequestRequest {
            request_id: id.clone(),
            reason: "several systems to search".into(),
            subject_notified_on: today.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(extended.status, pb::RequestStatus::Extended as i32);
    assert_eq!(
        extended.due_on,
        consent_ledger::rights::add_months_clamped(
            chrono::NaiveDate::parse_from_str(&erasure.due_on, "%Y-%m-%d").unwrap(),
            2
        )
        .to_string()
    );
    let twice = rights
        .extend_request(pb::ExtendRequestRequest {
            request_id: id.clone(),
            reason: "again".into(),
            subject_notified_on: today.to_string(),
        })
        .await
        .unwrap_err();
    refused_rule(twice, "extend_once");
    let no_reason = rights
        .reject_request(pb::RejectRequestRequest {
            request_id: id.clone(),
            reason: " ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument);
    assert!(no_reason.message().starts_with("reason:"));
    let too_early = rights
        .complete_request(pb::CompleteRequestRequest {
            request_id: id.clone(),
            outcome: "erased".into(),
        })
        .await
        .unwrap_err();
    refused_rule(too_early, "erasure_not_executed");
    let wrong_request = rights
        .erase_contact(pb::EraseContactRequest {
            contact_id: "crm-r1".into(),
            reason: "Art. 17".into(),
            request_id: late_request.request_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused_rule(wrong_request, "erasure_request_open");
    rights
        .erase_contact(pb::EraseContactRequest {
            contact_id: "crm-r1".into(),
            reason: "Art. 17".into(),
            request_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let done = rights
        .complete_request(pb::CompleteRequestRequest {
            request_id: id.clone(),
            outcome: "erased; subject told by letter".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(done.status, pb::RequestStatus::Completed as i32);
    assert!(!done.closed_late);
    let after_close = rights
        .reject_request(pb::RejectRequestRequest {
            request_id: id.clone(),
            reason: "too late".into(),
        })
        .await
        .unwrap_err();
    refused_rule(after_close, "closed");

    // An objection to direct marketing takes effect at once and cannot be rejected.
    let mut objection = open(
        "crm-r2",
        pb::RequestKind::Objection,
        pb::RequestRegime::UkGdpr,
    );
    objection.objection_scope = pb::ObjectionScope::DirectMarketing as i32;
    let objection = opened(&mut rights, objection).await;
    let decision = check(&mut eligibility, "crm-r2", "email_marketing").await;
    assert!(!decision.allowed);
    assert_eq!(decision.rule_id, "objection");
    let reject_absolute = rights
        .reject_request(pb::RejectRequestRequest {
            request_id: objection.request_id.clone(),
            reason: "we disagree".into(),
        })
        .await
        .unwrap_err();
    refused_rule(reject_absolute, "objection_absolute");

    // A restriction request restricts at once; rejecting it lifts that again.
    let mut restriction = open(
        "crm-r3",
        pb::RequestKind::Restriction,
        pb::RequestRegime::Ccpa,
    );
    restriction.restriction_ground = pb::RestrictionGround::AccuracyContested as i32;
    let restriction = opened(&mut rights, restriction).await;
    assert!(!restriction.acknowledgement_due_on.is_empty());
    assert!(!restriction.acknowledgement_overdue);
    let mut unacknowledged = open("crm-r3", pb::RequestKind::Access, pb::RequestRegime::Ccpa);
    unacknowledged.received_at = received("2026-01-02");
    let unacknowledged = opened(&mut rights, unacknowledged).await;
    assert_eq!(unacknowledged.acknowledgement_due_on, "2026-01-16");
    assert!(unacknowledged.acknowledgement_overdue && unacknowledged.overdue);
    assert_eq!(
        check(&mut eligibility, "crm-r3", "email_marketing")
            .await
            .rule_id,
        "restriction"
    );
    rights
        .acknowledge_request(pb::AcknowledgeRequestRequest {
            request_id: restriction.request_id.clone(),
        })
        .await
        .unwrap();
    rights
        .reject_request(pb::RejectRequestRequest {
            request_id: restriction.request_id.clone(),
            reason: "the data was verified as accurate".into(),
        })
        .await
        .unwrap();
    assert!(
        check(&mut eligibility, "crm-r3", "email_marketing")
            .await
            .allowed
    );

    // LGPD has no extension; identity can be verified once.
    let lgpd = opened(
        &mut rights,
        open("crm-r3", pb::RequestKind::Access, pb::RequestRegime::Lgpd),
    )
    .await;
    let no_extension = rights
        .extend_request(pb::ExtendRequestRequest {
            request_id: lgpd.request_id.clone(),
            reason: "complex".into(),
            subject_notified_on: today.to_string(),
        })
        .await
        .unwrap_err();
    refused_rule(no_extension, "no_extension");
    let verify = |request_id: String| pb::VerifyRequestIdentityRequest {
        request_id,
        method: "reply from the registered address".into(),
    };
    rights
        .verify_request_identity(verify(lgpd.request_id.clone()))
        .await
        .unwrap();
    let verify_twice = rights
        .verify_request_identity(verify(lgpd.request_id.clone()))
        .await
        .unwrap_err();
    refused_rule(verify_twice, "verify_once");

    // The same idempotency key opens the same request once.
    let mut keyed = open(
        "crm-r3",
        pb::RequestKind::Portability,
        pb::RequestRegime::Gdpr,
    );
    keyed.idempotency_key = "ticket-4711".into();
    let first = rights
        .open_request(keyed.clone())
        .await
        .unwrap()
        .into_inner();
    let again = rights.open_request(keyed).await.unwrap().into_inner();
    assert_eq!(
        first.request.unwrap().request_id,
        again.request.as_ref().unwrap().request_id
    );
    assert!(again.receipt.unwrap().replayed);

    // Listings: overdue, due soon, closed, and every request page by page.
    let overdue = list(
        &mut rights,
        pb::ListRequestsRequest {
            overdue: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        overdue,
        vec![
            unacknowledged.request_id.clone(),
            late_request.request_id.clone()
        ]
    );
    let due_soon = list(
        &mut rights,
        pb::ListRequestsRequest {
            due_within_days: 20,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        due_soon,
        vec![
            unacknowledged.request_id.clone(),
            late_request.request_id.clone(),
            lgpd.request_id.clone()
        ]
    );
    let mut closed = list(
        &mut rights,
        pb::ListRequestsRequest {
            filter: pb::RequestFilter::Closed as i32,
            ..Default::default()
        },
    )
    .await;
    closed.sort();
    let mut expected = vec![id.clone(), restriction.request_id.clone()];
    expected.sort();
    assert_eq!(closed, expected);
    let mut paged = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = rights
            .list_requests(pb::ListRequestsRequest {
                filter: pb::RequestFilter::All as i32,
                page_size: 2,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        paged.extend(page.requests.into_iter().map(|r| r.request_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(paged.len(), 7, "{paged:?}");
    let mut unique = paged.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 7);
    let access_erasure_objection = list(
        &mut rights,
        pb::ListRequestsRequest {
            kind: pb::RequestKind::Objection as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(access_erasure_objection, vec![objection.request_id.clone()]);

    let unknown = rights
        .get_request(pb::GetRequestRequest {
            request_id: "dsr-none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    // Request steps cannot be forged through Append.
    let forged = ledger
        .append(pb::AppendRequest {
            event: Some(common::event(
                "crm-r2",
                pb::event::Kind::RequestCompleted(pb::RequestCompleted {
                    request_id: objection.request_id.clone(),
                    outcome: "forged".into(),
                }),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::InvalidArgument);
    drop((ledger, rights, eligibility));
    server.stop().await;
}

#[tokio::test]
async fn the_export_file_is_one_json_document_whose_bundle_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut ledger = server.client().await;
    append(&mut ledger, probe_registration("crm-x")).await;
    append(&mut ledger, probe_consent("crm-x")).await;
    let connection = consent_ledger::cli::Connection::plain(&server.url());
    let mut rights = connection.rights_client().await.unwrap();
    let mut file = Vec::new();
    let summary = consent_ledger::cli::rights::export(
        &mut rights,
        "crm-x",
        pb::ExportKind::Access,
        &mut file,
    )
    .await
    .unwrap();
    assert_eq!((summary.entries, summary.with_personal_data), (2, 2));
    let document: serde_json::Value = serde_json::from_slice(&file).unwrap();
    assert_eq!(
        document["format"],
        consent_ledger::cli::rights::EXPORT_FORMAT
    );
    assert_eq!(document["entries"].as_array().unwrap().len(), 2);
    assert_eq!(document["entries"][0]["personal"]["email"], EMAIL);
    assert_eq!(document["entries"][1]["personal"]["ipAddress"], IP);
    assert_eq!(document["state"]["country"], "FR");

    let bundle = dir.path().join("bundle.json");
    std::fs::write(&bundle, document["integrity"].to_string()).unwrap();
    let mut audit = connection.audit_client().await.unwrap();
    let key = audit
        .get_verifier_key(pb::GetVerifierKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .verifier_key;
    let key = consent_ledger::cli::audit::verifier_key(&key).unwrap();
    let verified = consent_ledger::cli::audit::verify_bundle_file(&bundle, &key).unwrap();
    assert_eq!(verified.entries, 2);
    drop((ledger, rights, audit));
    server.stop().await;
}
