//! Online backup while appends continue, and an offline restore that proves the backup
//! against the checkpoint signed when it was taken.

#![allow(clippy::unwrap_used)]

mod common;

use common::{append, registered, TestServer};
use consent_ledger::audit::backup::MANIFEST_FILE;
use consent_ledger::cli::backup::restore;
use consent_ledger::proto::v1 as pb;
use consent_ledger::proto::v1::admin_service_client::AdminServiceClient;
use consent_ledger::proto::v1::rights_service_client::RightsServiceClient;
use tonic::Code;

#[tokio::test]
async fn a_backup_taken_under_load_restores_and_proves_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data).await;
    let mut ledger = server.client().await;
    for i in 0..20 {
        append(&mut ledger, registered(&format!("crm-b{i}"), "FR")).await;
    }
    // Appends keep coming while the backup is taken.
    let mut writer = server.client().await;
    let load = tokio::spawn(async move {
        for i in 0..200 {
            append(&mut writer, registered(&format!("crm-load{i}"), "US")).await;
        }
    });
    let mut admin = AdminServiceClient::new(server.channel().await);
    let backup_dir = dir.path().join("backup-1");
    let backup = admin
        .backup(pb::BackupRequest {
            to_dir: backup_dir.display().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    load.await.unwrap();
    assert!(backup.tree_size >= 21, "{}", backup.tree_size);
    assert!(backup_dir.join(MANIFEST_FILE).exists());
    for (to_dir, code) in [
        (backup_dir.display().to_string(), Code::InvalidArgument),
        ("relative/dir".to_owned(), Code::InvalidArgument),
    ] {
        let err = admin
            .backup(pb::BackupRequest { to_dir })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code);
        assert!(err.message().starts_with("to_dir:"));
    }
    drop((ledger, admin));
    server.stop().await;

    // Restore offline, proven against the signed checkpoint.
    let restored = dir.path().join("restored");
    let report = restore(&backup_dir, &restored, None).unwrap();
    assert_eq!(report.manifest.tree_size, backup.tree_size);
    assert_eq!(report.manifest.root.to_vec(), backup.root_hash);
    assert!(report.signed_size >= backup.tree_size);
    assert_eq!(report.verification.entries, backup.tree_size);
    // Into a directory that is not empty: refused.
    assert!(restore(&backup_dir, &restored, None)
        .unwrap_err()
        .to_string()
        .contains("not empty"));
    // A manifest whose root was changed does not prove anything.
    let manifest_path = backup_dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["root"] = serde_json::Value::String("00".repeat(32));
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let err = restore(&backup_dir, &dir.path().join("restored-2"), None).unwrap_err();
    assert!(format!("{err:#}").contains("does not prove"), "{err:#}");
    assert!(!dir.path().join("restored-2").exists());

    // With its keys beside it, the restored ledger serves what the backup held.
    for key in ["master.key", "checkpoint-signing.key"] {
        std::fs::copy(data.join(key), restored.join(key)).unwrap();
    }
    let server = TestServer::start(&restored).await;
    let mut ledger = server.client().await;
    let head = common::tree_head(&mut ledger).await;
    assert_eq!(head.0, backup.tree_size);
    let mut rights = RightsServiceClient::new(server.channel().await);
    let mut parts = rights
        .export_contact(pb::ExportContactRequest {
            contact_id: "crm-b3".into(),
            kind: pb::ExportKind::Access as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let mut email = None;
    while let Some(part) = parts.message().await.unwrap() {
        if let Some(pb::export_part::Part::Entry(entry)) = part.part {
            email = entry.personal.map(|p| p.email);
        }
    }
    assert_eq!(email.as_deref(), Some("crm-b3@example.test"));
    drop((ledger, rights));
    server.stop().await;
}
