//! Operations through a real server: the Prometheus endpoint, online backup and proven
//! restore, the CSV import of acquired contacts, damaged data at start, and a full disk.

#![allow(clippy::unwrap_used)]

mod common;

/// The Prometheus endpoint over a real socket: what the writer, the services and the auth layer count, and the gauges read from the ledger at each scrape.
mod metrics {
    use crate::common;

    use common::{append, consent_granted, http_get, registered, TestServer};
    use consent_ledger::config::ServeConfig;
    use consent_ledger::proto::v1 as pb;
    use consent_ledger::proto::v1::eligibility_service_client::EligibilityServiceClient;
    use consent_ledger::proto::v1::rights_service_client::RightsServiceClient;

    #[tokio::test]
    async fn metrics_count_appends_decisions_and_requests() {
        let dir = tempfile::tempdir().unwrap();
        let (server, port) = TestServer::start_with_metrics(ServeConfig {
            data_dir: dir.path().to_path_buf(),
            ..ServeConfig::default()
        })
        .await;
        let channel = server.channel().await;
        let mut ledger = server.client().await;
        append(&mut ledger, registered("crm-m1", "FR")).await;
        append(&mut ledger, consent_granted("crm-m1", "email_marketing")).await;
        ledger
            .append_batch(pb::AppendBatchRequest {
                events: vec![registered("crm-m2", "US"), registered("crm-m3", "US")],
            })
            .await
            .unwrap();
        let mut eligibility = EligibilityServiceClient::new(channel.clone());
        for contact in ["crm-m1", "crm-m2"] {
            eligibility
                .check(pb::CheckRequest {
                    contact_id: contact.into(),
                    purpose: "email_marketing".into(),
                    channel: "email".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let mut rights = RightsServiceClient::new(channel);
        rights
            .open_request(pb::OpenRequestRequest {
                contact_id: "crm-m1".into(),
                kind: pb::RequestKind::Access as i32,
                regime: pb::RequestRegime::Gdpr as i32,
                received_at: Some(prost_types::Timestamp {
                    seconds: 1_767_225_600, // 2026-01-01: long overdue
                    nanos: 0,
                }),
                channel: "email".into(),
                ..Default::default()
            })
            .await
            .unwrap();

        let response = http_get(port, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("application/openmetrics-text"));
        for expected in [
            "consent_ledger_appends_total{kind=\"contact_registered\"} 3",
            "consent_ledger_appends_total{kind=\"consent_granted\"} 1",
            "consent_ledger_appends_total{kind=\"request_opened\"} 1",
            "consent_ledger_append_batch_events_count 1",
            "consent_ledger_append_batch_events_sum 2.0",
            "consent_ledger_decisions_total{outcome=\"allowed\",rule=\"consent.granted\"} 1",
            "consent_ledger_decisions_total{outcome=\"denied\",rule=\"opt_out.no_basis\"} 1",
            // Policy activation, two unary appends, one batch and the request.
            "consent_ledger_tree_size 6",
            "consent_ledger_open_requests{kind=\"access\",regime=\"gdpr\"} 1",
            "consent_ledger_overdue_requests{kind=\"access\",regime=\"gdpr\"} 1",
            // The storage engine: nothing stopped.
            "consent_ledger_storage_writes_stopped 0",
            "consent_ledger_storage_pending_compaction_bytes ",
            "consent_ledger_storage_running_compactions ",
            "consent_ledger_storage_table_file_bytes ",
        ] {
            assert!(
                response.contains(expected),
                "missing {expected:?} in\n{response}"
            );
        }
        // The default cache: a quarter of the memory the server may use.
        let capacity = format!(
            "consent_ledger_storage_block_cache_capacity_bytes {}\n",
            consent_ledger::store::default_block_cache_bytes()
        );
        assert!(
            response.contains(&capacity),
            "missing {capacity:?} in\n{response}"
        );
        let gauge = |name: &str| -> u64 {
            response
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{response}"))
        };
        // What was appended sits in the memtables.
        assert!(gauge("consent_ledger_storage_memtable_bytes") > 0);
        // The state cache: every state written is put in, so the only lookups that missed
        // are the writer's for the three contacts it registered, and both checks hit.
        assert_eq!(gauge("consent_ledger_state_cache_misses_total"), 3);
        assert!(gauge("consent_ledger_state_cache_hits_total") >= 2);
        assert!(gauge("consent_ledger_state_cache_bytes") > 0);
        assert_eq!(
            gauge("consent_ledger_state_cache_capacity_bytes"),
            consent_ledger::store::default_state_cache_bytes() as u64
        );
        assert!(response.contains("consent_ledger_commit_seconds_bucket"));
        assert!(response.contains("consent_ledger_checkpoint_age_seconds"));
        // Nothing personal: no email address, no contact id.
        assert!(!response.contains("example.test") && !response.contains("crm-m1"));
        assert!(http_get(port, "/other").await.starts_with("HTTP/1.1 404"));
        drop((ledger, eligibility, rights));
        server.stop().await;
    }
}

/// Online backup while appends continue, and an offline restore that proves the backup against the checkpoint signed when it was taken.
mod backup {
    use crate::common;

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
}

/// CSV import of acquired contacts through a real server: rows become contacts with their acquisition and basis, bad rows are listed with the reason, an erased identity is not re-imported, and a rerun imports nothing twice.
mod import {
    use crate::common;

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
}

/// A damaged file at start: the server refuses to open, names the file and what to do,
/// and changes nothing.
mod damage {
    use crate::common::{append, registered, TestServer};
    use consent_ledger::config::ServeConfig;
    use sha2::{Digest, Sha256};
    use std::collections::BTreeMap;
    use std::path::Path;

    /// SHA-256 of every storage file (SSTs, WALs, MANIFESTs) in `dir`.
    fn storage_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.ends_with(".sst") || name.ends_with(".log") || name.starts_with("MANIFEST")
            })
            .map(|p| {
                let digest = Sha256::digest(std::fs::read(&p).unwrap()).to_vec();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    digest,
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_damaged_sst_stops_the_start_naming_the_file_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path()).await;
        let mut ledger = server.client().await;
        for i in 0..30 {
            append(&mut ledger, registered(&format!("crm-d{i}"), "FR")).await;
        }
        drop(ledger);
        server.stop().await; // flushes: the entries are in SST files now

        // Damage the footer of the largest SST (its magic number).
        let (sst, _) = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sst"))
            .map(|p| {
                let len = std::fs::metadata(&p).unwrap().len();
                (p, len)
            })
            .max_by_key(|(_, len)| *len)
            .unwrap();
        let mut bytes = std::fs::read(&sst).unwrap();
        let at = bytes.len() - 4;
        bytes[at] ^= 0xff;
        std::fs::write(&sst, &bytes).unwrap();
        let before = storage_files(dir.path());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = ServeConfig {
            data_dir: dir.path().to_path_buf(),
            ..ServeConfig::default()
        };
        let err = consent_ledger::server::run(listener, config, std::future::pending())
            .await
            .unwrap_err()
            .to_string();
        let name = sst.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains("is damaged and was not opened"), "{err}");
        assert!(
            err.contains(&name),
            "the message does not name {name}: {err}"
        );
        assert!(err.contains("consent-ledger restore"), "{err}");
        assert_eq!(
            storage_files(dir.path()),
            before,
            "a storage file was changed"
        );
    }
}

/// A full disk, on a size-limited tmpfs the test mounts (as root; skipped with the reason
/// otherwise): appends are refused with RESOURCE_EXHAUSTED and nothing is half-written,
/// health reports it, reads and eligibility go on, and appends resume once space is freed,
/// without a restart. Both ways in: the minimum free space the server keeps, and a real
/// ENOSPC from RocksDB when that minimum is off.
mod disk_full {
    use crate::common::{append, consent_granted, history, registered, tree_head, TestServer};
    use consent_ledger::cli::BearerToken;
    use consent_ledger::config::Limits;
    use consent_ledger::proto::v1 as pb;
    use consent_ledger::proto::v1::eligibility_service_client::EligibilityServiceClient;
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::time::Duration;
    use tonic::Code;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    const MIB: u64 = 1024 * 1024;

    /// A tmpfs of a fixed size, unmounted on drop.
    struct Tmpfs {
        dir: tempfile::TempDir,
    }

    impl Tmpfs {
        fn mount(mib: u64) -> Result<Self, String> {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let out = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(dir.path())
                .output()
                .map_err(|e| format!("cannot run mount: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "mount -t tmpfs failed (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(Self { dir })
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }

        fn free(&self) -> u64 {
            let stat = rustix::fs::statvfs(self.path()).unwrap();
            stat.f_bavail * stat.f_frsize
        }

        /// Writes a ballast file until at most `leave` bytes are free.
        fn fill(&self, leave: u64) -> PathBuf {
            let path = self.path().join("ballast");
            let mut file = std::fs::File::create(&path).unwrap();
            let chunk = vec![0xa5u8; 64 * 1024];
            while self.free() > leave {
                let want = (self.free() - leave).min(chunk.len() as u64) as usize;
                if file.write_all(&chunk[..want.max(1)]).is_err() {
                    break;
                }
                file.flush().unwrap();
            }
            path
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }

    async fn ledger_health(server: &TestServer, service: &str) -> i32 {
        let mut health = HealthClient::new(server.channel().await);
        health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
    }

    /// Waits up to `limit` for the ledger service's health to become `want`.
    async fn await_health(server: &TestServer, want: ServingStatus, limit: Duration) {
        let started = std::time::Instant::now();
        loop {
            let status = ledger_health(server, "consentledger.v1.LedgerService").await;
            if status == want as i32 {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "LedgerService health stayed {status}, not {want:?}, for {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reads, eligibility and overall health, while appends are refused.
    async fn reads_go_on(server: &TestServer, contact: &str, size: u64) {
        let mut ledger = server.client().await;
        assert_eq!(tree_head(&mut ledger).await.0, size, "nothing was written");
        assert!(!history(&mut ledger, contact).await.is_empty());
        let mut eligibility = EligibilityServiceClient::with_interceptor(
            server.channel().await,
            BearerToken::new(None).unwrap(),
        );
        eligibility
            .check(pb::CheckRequest {
                contact_id: contact.into(),
                purpose: "email_marketing".into(),
                channel: "email".into(),
                ..Default::default()
            })
            .await
            .expect("eligibility answers while the disk is full");
        assert_eq!(
            ledger_health(server, "").await,
            ServingStatus::Serving as i32
        );
    }

    async fn verify_ok(server: &TestServer) {
        let result = crate::common::verify_ledger(server.channel().await, "").await;
        assert!(result.ok, "{result:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_refuses_appends_keeps_reads_and_resumes_once_space_is_freed() {
        let disk = match Tmpfs::mount(192) {
            Ok(disk) => disk,
            Err(reason) => {
                println!("skipped: {reason}");
                return;
            }
        };
        let data = disk.path().join("data");

        // 1. Below the minimum free space the server keeps.
        let limits = Limits {
            min_free_disk_bytes: 96 * MIB,
            ..Limits::default()
        };
        let server = TestServer::start_with(&data, limits).await;
        let mut ledger = server.client().await;
        append(&mut ledger, registered("crm-disk", "US")).await;
        append(&mut ledger, consent_granted("crm-disk", "email_marketing")).await;
        let size = tree_head(&mut ledger).await.0;
        let ballast = disk.fill(80 * MIB);

        let refused = ledger
            .append(pb::AppendRequest {
                event: Some(consent_granted("crm-disk", "email_tracking")),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused.message().contains("min_free_disk_mib")
                && refused.message().contains("nothing was written"),
            "{}",
            refused.message()
        );
        let refused = ledger
            .append_batch(pb::AppendBatchRequest {
                events: vec![registered("crm-disk-2", "FR"), basis_event("crm-disk-2")],
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        await_health(&server, ServingStatus::NotServing, Duration::from_secs(5)).await;
        reads_go_on(&server, "crm-disk", size).await;

        std::fs::remove_file(&ballast).unwrap();
        await_health(&server, ServingStatus::Serving, Duration::from_secs(5)).await;
        let receipt = append(&mut ledger, consent_granted("crm-disk", "email_tracking")).await;
        assert_eq!(
            receipt.seq,
            size + 1,
            "no sequence number was used by the refusals"
        );
        drop(ledger);
        server.stop().await;

        // 2. The minimum off: RocksDB itself runs out of space mid-write.
        let limits = Limits {
            min_free_disk_bytes: 0,
            ..Limits::default()
        };
        let server = TestServer::start_with(&data, limits).await;
        let mut ledger = server.client().await;
        let ballast = disk.fill(256 * 1024);
        let mut acked = Vec::new();
        let mut refusal = None;
        for batch in 0..2_000 {
            let events = (0..50)
                .map(|i| registered(&format!("crm-fill-{batch}-{i}"), "DE"))
                .collect();
            match ledger.append_batch(pb::AppendBatchRequest { events }).await {
                Ok(response) => {
                    for result in response.into_inner().results {
                        match result.outcome {
                            Some(pb::append_result::Outcome::Receipt(r)) => acked.push(r),
                            other => panic!("event rejected: {other:?}"),
                        }
                    }
                }
                Err(status) => {
                    refusal = Some(status);
                    break;
                }
            }
        }
        let refusal = refusal.expect("the disk never filled");
        assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
        assert!(
            refusal.message().contains("disk is full"),
            "{}",
            refusal.message()
        );
        let size = tree_head(&mut ledger).await.0;
        assert_eq!(
            size,
            acked.last().map_or(size, |r| r.seq),
            "no unacknowledged entry"
        );
        await_health(&server, ServingStatus::NotServing, Duration::from_secs(5)).await;
        reads_go_on(&server, "crm-disk", size).await;

        // RocksDB polls for space every 5 s and needs its write buffers' worth free.
        std::fs::remove_file(&ballast).unwrap();
        await_health(&server, ServingStatus::Serving, Duration::from_secs(20)).await;
        let receipt = append(&mut ledger, consent_granted("crm-disk", "profiling")).await;
        assert_eq!(receipt.seq, size + 1, "no gap after the failed write");
        verify_ok(&server).await;
        drop(ledger);
        server.stop().await;

        // Every acknowledged entry survives a restart, with its hash.
        let server = TestServer::start_with(&data, Limits::default()).await;
        let mut ledger = server.client().await;
        assert_eq!(tree_head(&mut ledger).await.0, size + 1);
        for receipt in acked.iter().step_by(97) {
            let entries = history(&mut ledger, &receipt.contact_id).await;
            assert_eq!(entries[0].seq, receipt.seq);
            assert_eq!(entries[0].entry_hash, receipt.entry_hash);
        }
        verify_ok(&server).await;
        drop(ledger);
        server.stop().await;
    }

    fn basis_event(contact: &str) -> pb::Event {
        crate::common::basis(contact, "profiling")
    }
}

/// Compaction: a ledger whose table files were written uncompressed (as every build
/// before compression wrote them) is rewritten compressed, offline by `consent-ledger
/// compact --data-dir` or online by `AdminService.Compact`, and still verifies.
mod compact {
    use crate::common::{self, append, registered, TestServer};
    use consent_ledger::proto::v1 as pb;
    use consent_ledger::proto::v1::admin_service_client::AdminServiceClient;
    use std::path::Path;
    use std::process::Command;

    fn compact_offline(dir: &Path) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
            .args(["compact", "--data-dir"])
            .arg(dir)
            .output()
            .unwrap()
    }

    /// A ledger of 301 entries (the policy activation and 300 registrations), stopped.
    async fn ledger_of_301(dir: &Path) -> TestServer {
        let server = TestServer::start(dir).await;
        let mut ledger = server.client().await;
        for i in 0..300 {
            append(&mut ledger, registered(&format!("crm-z{i}"), "FR")).await;
        }
        server
    }

    /// Rewrites every family of a stopped ledger uncompressed, through the bottommost level.
    fn rewrite_uncompressed(path: &Path) {
        let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
        let plain = || {
            let mut options = rocksdb::Options::default();
            options.set_compression_type(rocksdb::DBCompressionType::None);
            options
        };
        let families = names
            .iter()
            .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, plain()));
        let db = rocksdb::DB::open_cf_descriptors(&plain(), path, families).unwrap();
        let mut force = rocksdb::CompactOptions::default();
        force.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for name in &names {
            let cf = db.cf_handle(name).unwrap();
            db.compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &force);
        }
    }

    async fn verify_ok(dir: &Path, entries: u64) {
        let server = TestServer::start(dir).await;
        let result = common::verify_ledger(server.channel().await, "").await;
        server.stop().await;
        assert!(result.ok, "{result:?}");
        assert_eq!(result.entries_verified, entries);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compact_compresses_an_uncompressed_ledger_offline_which_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let server = ledger_of_301(dir.path()).await;
        // While the server runs, the data directory is locked.
        let refused = compact_offline(dir.path());
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("stopped server"), "{stderr}");
        server.stop().await;
        rewrite_uncompressed(dir.path());

        let output = compact_offline(dir.path());
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // "compacted DIR: table files N bytes before, M bytes after"
        let sizes: Vec<u64> = stdout
            .split_whitespace()
            .filter_map(|word| word.parse().ok())
            .collect();
        let [before, after] = sizes[..] else {
            panic!("{stdout}")
        };
        assert!(after * 10 < before * 7, "{stdout}");
        verify_ok(dir.path(), 301).await;

        let missing = compact_offline(&dir.path().join("nothing-here"));
        assert!(!missing.status.success());
        assert!(String::from_utf8_lossy(&missing.stderr).contains("no ledger here"));
        assert!(!dir.path().join("nothing-here").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_running_server_compacts_while_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        ledger_of_301(dir.path()).await.stop().await;
        rewrite_uncompressed(dir.path());

        let server = TestServer::start(dir.path()).await;
        let mut writer = server.client().await;
        let load = tokio::spawn(async move {
            for i in 0..200 {
                append(&mut writer, registered(&format!("crm-load{i}"), "US")).await;
            }
        });
        let mut admin = AdminServiceClient::new(server.channel().await);
        let compacted = admin
            .compact(pb::CompactRequest {})
            .await
            .unwrap()
            .into_inner();
        load.await.unwrap();
        assert!(
            compacted.table_file_bytes_after * 10 < compacted.table_file_bytes_before * 7,
            "{compacted:?}"
        );
        server.stop().await;
        verify_ok(dir.path(), 501).await;
    }
}
