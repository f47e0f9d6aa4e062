//! CSV import of acquired contacts through a real server: rows become contacts with their
//! acquisition and basis, bad rows are listed with the reason, an erased identity is not
//! re-imported, and a rerun imports nothing twice.

#![allow(clippy::unwrap_used)]

mod common;

use common::{append, registered, tree_head, TestServer};
use consent_ledger::cli::import::{import, Columns, IdBook, ImportOptions};
use consent_ledger::cli::Connection;
use consent_ledger::proto::v1 as pb;
use consent_ledger::proto::v1::eligibility_service_client::EligibilityServiceClient;
use consent_ledger::proto::v1::rights_service_client::RightsServiceClient;

const CSV: &str = "E-Mail,Name,Country,Collected\n\
a.lead@example.test,Ann Lead,DE,2026-01-05\n\
b.lead@example.test,Bob Lead,us,2026-01-06T09:30:00Z\n\
,No Email,FR,\n\
c.lead@example.test,Cy Lead,XX,\n\
B.Lead@Example.TEST,Bob Again,US,\n\
erased.person@example.test,Erased Person,GB,\n\
d.lead@example.test,Di Lead,Germany,\n";

fn options(columns: Columns) -> ImportOptions {
    ImportOptions {
        columns,
        source_kind: pb::SourceKind::DataVendorExport,
        supplier: Some("Acme Data".into()),
        source_reference: "acme-2026-01.csv".into(),
        basis: pb::LegalBasis::LegitimateInterests,
        purpose: "storage".into(),
        justification: "LIA-2026-07".into(),
        audience: pb::Audience::B2b,
        acquired_at: None,
        batch_rows: 2,
    }
}

#[tokio::test]
async fn a_vendor_list_is_imported_once_with_bad_rows_listed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut ledger = server.client().await;
    // Someone erased earlier must not come back through a purchased list.
    let mut erased = registered("crm-erased", "GB");
    if let Some(pb::event::Kind::ContactRegistered(m)) = &mut erased.kind {
        m.personal.as_mut().unwrap().email = "erased.person@example.test".into();
    }
    append(&mut ledger, erased).await;
    let mut rights = RightsServiceClient::new(server.channel().await);
    rights
        .erase_contact(pb::EraseContactRequest {
            contact_id: "crm-erased".into(),
            reason: "Art. 17".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let columns = Columns {
        id: None,
        email: "e-mail".into(),
        name: Some("Name".into()),
        country: "Country".into(),
        acquired_at: Some("Collected".into()),
        ..Columns::default()
    };
    let mut client = Connection::plain(&server.url()).client().await.unwrap();
    let mut book = IdBook::default();
    let mut ids = csv::Writer::from_writer(Vec::new());
    let mut rejects = csv::Writer::from_writer(Vec::new());
    let mut progressed = 0;
    let summary = import(
        &mut client,
        &options(columns.clone()),
        CSV.as_bytes(),
        &mut book,
        &mut ids,
        &mut rejects,
        |n| progressed += n,
    )
    .await
    .unwrap();
    assert_eq!(summary.rows, 7);
    assert_eq!(summary.imported, 2, "{summary:?}");
    assert_eq!(summary.already_imported, 0);
    assert_eq!(summary.rejected_total(), 5, "{summary:?}");
    assert_eq!(progressed, 4, "rows sent to the server");
    let rejects = String::from_utf8(rejects.into_inner().unwrap()).unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines.len(), 5, "{rejects}");
    assert!(
        lines.iter().any(|l| l.starts_with("4,missing email")),
        "{rejects}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("5,") && l.contains("country")),
        "{rejects}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("6,duplicate: the same email as line 3")),
        "{rejects}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("7,") && l.contains("suppressed by the erasure")),
        "{rejects}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("8,") && l.contains("bad country")),
        "{rejects}"
    );
    assert_eq!(summary.rejected["suppressed (erased identity)"], 1);

    // The ids file maps each generated id to its email; the contact is on record with its
    // acquisition and basis, and not emailable in Germany without double opt-in.
    let ids = String::from_utf8(ids.into_inner().unwrap()).unwrap();
    let ann = ids
        .lines()
        .find(|l| l.starts_with("a.lead@example.test,"))
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(ann.starts_with("imp-"));
    let history = common::history(&mut ledger, &ann).await;
    assert_eq!(history.len(), 3);
    let occurred = history[0].event.as_ref().unwrap().occurred_at.unwrap();
    assert_eq!(occurred.seconds, 1_767_571_200, "2026-01-05T00:00:00Z");
    assert!(matches!(
        history[1].event.as_ref().unwrap().kind,
        Some(pb::event::Kind::AcquisitionRecorded(ref a)) if a.supplier == "Acme Data"
    ));
    let mut eligibility = EligibilityServiceClient::new(server.channel().await);
    let decision = eligibility
        .check(pb::CheckRequest {
            contact_id: ann.clone(),
            purpose: "email_marketing".into(),
            channel: "email".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!decision.allowed, "{decision:?}");

    // A rerun of the same file with the same ids imports nothing twice.
    let (size, _) = tree_head(&mut ledger).await;
    let mut ids_again = csv::Writer::from_writer(Vec::new());
    let mut rejects_again = csv::Writer::from_writer(Vec::new());
    let again = import(
        &mut client,
        &options(columns.clone()),
        CSV.as_bytes(),
        &mut book,
        &mut ids_again,
        &mut rejects_again,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        (again.imported, again.already_imported),
        (0, 2),
        "{again:?}"
    );
    assert_eq!(again.rejected_total(), 5);
    assert_eq!(tree_head(&mut ledger).await.0, size);
    assert!(String::from_utf8(ids_again.into_inner().unwrap())
        .unwrap()
        .is_empty());

    // A CSV without a required column is refused before anything is sent.
    let err = import(
        &mut client,
        &options(Columns::default()),
        "mail,land\nx@example.test,DE\n".as_bytes(),
        &mut book,
        &mut csv::Writer::from_writer(Vec::new()),
        &mut csv::Writer::from_writer(Vec::new()),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no column \"email\""), "{err}");
    drop((ledger, rights, eligibility, client));
    server.stop().await;
}
