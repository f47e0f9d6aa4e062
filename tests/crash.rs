//! Kill the real binary with SIGKILL under concurrent appends, erasures and checkpoint
//! signing, restart it on the same data directory, and check that every acknowledged
//! receipt is there with the same hash, the sequence has no gaps, every chain verifies,
//! every acknowledged erasure holds (data gone, identity suppressed), and the whole ledger
//! with its checkpoints verifies. `CRASH_CYCLES` sets the number of kills (default 10;
//! `scripts/crash-soak.sh` runs 100). Also, the same process's memory under a million-id
//! `Screen` and a caller that never reads.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use consent_ledger::proto::v1 as pb;
use consent_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use consent_ledger::proto::v1::rights_service_client::RightsServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

const WRITERS: usize = 16;

fn cycles() -> u64 {
    std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10)
}

async fn spawn_server(data_dir: &std::path::Path, log: &std::path::Path) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
        // Checkpoints every 20 ms, so kills also land while one is being signed.
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--checkpoint-interval-ms",
            "20",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("server did not start within 60 s")
        .unwrap()
        .expect("server exited before listening");
    let addr = line.strip_prefix("listening on ").unwrap().to_owned();
    (child, format!("http://{addr}"))
}

async fn connect(url: &str) -> LedgerServiceClient<Channel> {
    LedgerServiceClient::connect(url.to_owned()).await.unwrap()
}

/// Appends to its own contacts until the server dies; records every acknowledged receipt.
async fn writer(url: String, cycle: u64, id: usize, acked: Arc<Mutex<Vec<pb::Receipt>>>) {
    let Ok(mut client) = LedgerServiceClient::connect(url).await else {
        return;
    };
    let contact = format!("crash-{cycle}-{id}");
    let Ok(response) = client
        .append(pb::AppendRequest {
            event: Some(registered(&contact, "DE")),
        })
        .await
    else {
        return;
    };
    acked.lock().unwrap().extend(response.into_inner().receipt);
    for i in 0u64.. {
        let event = if i % 3 == 2 {
            consent_withdrawn(&contact, "email_marketing")
        } else if id % 2 == 0 {
            consent_granted(&contact, "email_marketing")
        } else {
            // Odd writers send batches of three.
            let batch = vec![
                consent_granted(&contact, "email_tracking"),
                basis(&contact, "profiling"),
                consent_withdrawn(&contact, "email_tracking"),
            ];
            match client
                .append_batch(pb::AppendBatchRequest { events: batch })
                .await
            {
                Ok(response) => {
                    let mut acked = acked.lock().unwrap();
                    for result in response.into_inner().results {
                        match result.outcome {
                            Some(pb::append_result::Outcome::Receipt(r)) => acked.push(r),
                            other => panic!("batch event rejected: {other:?}"),
                        }
                    }
                    continue;
                }
                Err(_) => return,
            }
        };
        match client
            .append(pb::AppendRequest { event: Some(event) })
            .await
        {
            Ok(response) => acked.lock().unwrap().extend(response.into_inner().receipt),
            Err(_) => return,
        }
    }
}

/// Registers contacts with personal data and erases them, until the server dies; records
/// the contacts whose erasure was acknowledged.
async fn eraser(url: String, cycle: u64, erased: Arc<Mutex<Vec<String>>>) {
    let Ok(channel) = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
    else {
        return;
    };
    let mut ledger = LedgerServiceClient::new(channel.clone());
    let mut rights = RightsServiceClient::new(channel);
    for n in 0u64.. {
        let contact = format!("erase-{cycle}-{n}");
        if ledger
            .append(pb::AppendRequest {
                event: Some(registered(&contact, "FR")),
            })
            .await
            .is_err()
        {
            return;
        }
        let erasure = rights
            .erase_contact(pb::EraseContactRequest {
                contact_id: contact.clone(),
                reason: "crash test".into(),
                ..Default::default()
            })
            .await;
        match erasure {
            Ok(_) => erased.lock().unwrap().push(contact),
            Err(_) => return,
        }
    }
}

/// Every acknowledged erasure survived: the export says erased with no personal data left,
/// and the email is suppressed.
async fn check_erasures(url: &str, erased: &[String]) {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut rights = RightsServiceClient::new(channel.clone());
    let mut ledger = LedgerServiceClient::new(channel);
    for contact in erased {
        let mut parts = rights
            .export_contact(pb::ExportContactRequest {
                contact_id: contact.clone(),
                kind: pb::ExportKind::Access as i32,
            })
            .await
            .unwrap()
            .into_inner();
        while let Some(part) = parts.message().await.unwrap() {
            match part.part.unwrap() {
                pb::export_part::Part::Header(h) => {
                    assert!(h.erasure.is_some(), "{contact}: acknowledged erasure lost")
                }
                pb::export_part::Part::Entry(e) => {
                    assert!(e.personal.is_none(), "{contact}: personal data back")
                }
                _ => {}
            }
        }
    }
    if let Some(contact) = erased.first() {
        let mut again = registered("crash-reregister", "FR");
        if let Some(pb::event::Kind::ContactRegistered(m)) = &mut again.kind {
            m.personal.as_mut().unwrap().email = format!("{contact}@example.test");
        }
        let refused = ledger
            .append(pb::AppendRequest { event: Some(again) })
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );
    }
}

/// The whole ledger, checkpoints included, verifies.
async fn check_whole_ledger(url: &str) {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let result = verify_ledger(channel, "").await;
    assert!(result.ok, "{result:?}");
    assert!(result.checkpoints_checked > 0);
}

/// Every seq from 1 to the tree size belongs to exactly one of the contacts the writers
/// and erasers used, every acknowledged receipt is there unchanged, and every chain
/// verifies.
async fn check_ledger(
    client: &mut LedgerServiceClient<Channel>,
    acked: &[pb::Receipt],
    cycles_started: u64,
) {
    let (size, _) = tree_head(client).await;
    assert!(
        size >= acked.len() as u64,
        "tree size {size} < {} acknowledged",
        acked.len()
    );
    let mut hashes = HashMap::new();
    for cycle in 0..cycles_started {
        let writers = (0..WRITERS).map(|id| format!("crash-{cycle}-{id}"));
        // Erasers number their contacts from 0 until one is missing.
        let erasers = (0u64..).map(|n| format!("erase-{cycle}-{n}"));
        for (index, contact) in writers.chain(erasers).enumerate() {
            let exists = client
                .verify_contact(pb::VerifyContactRequest {
                    contact_id: contact.clone(),
                })
                .await;
            match exists {
                Ok(verified) => {
                    let verified = verified.into_inner();
                    assert!(verified.ok, "{contact}: {verified:?}");
                }
                Err(status) if status.code() == tonic::Code::NotFound && index < WRITERS => {
                    continue
                }
                Err(status) if status.code() == tonic::Code::NotFound => break,
                Err(status) => panic!("{contact}: {status}"),
            }
            for entry in history(client, &contact).await {
                assert!(
                    hashes.insert(entry.seq, entry.entry_hash).is_none(),
                    "seq {} claimed twice",
                    entry.seq
                );
            }
        }
    }
    // The ledger's own chain of policy activations holds the rest (seq 1 at least).
    for entry in history(client, "~policy").await {
        assert!(hashes.insert(entry.seq, entry.entry_hash).is_none());
    }
    let missing: Vec<u64> = (1..=size).filter(|seq| !hashes.contains_key(seq)).collect();
    assert!(missing.is_empty(), "gaps in the sequence: {missing:?}");
    assert_eq!(hashes.len() as u64, size, "entries beyond the tree size");
    for receipt in acked {
        assert_eq!(
            hashes.get(&receipt.seq),
            Some(&receipt.entry_hash),
            "acknowledged seq {} lost or changed",
            receipt.seq
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let erased = Arc::new(Mutex::new(Vec::new()));
    let cycles = cycles();
    for cycle in 0..cycles {
        let (mut child, url) = spawn_server(&data, &log).await;
        let mut client = connect(&url).await;
        let so_far = acked.lock().unwrap().clone();
        check_ledger(&mut client, &so_far, cycle).await;
        let mut writers: Vec<_> = (0..WRITERS)
            .map(|id| tokio::spawn(writer(url.clone(), cycle, id, acked.clone())))
            .collect();
        writers.push(tokio::spawn(eraser(url.clone(), cycle, erased.clone())));
        // Kill at a different moment each cycle, while writes are in flight: counted from
        // the cycle's first acknowledgement, so a slow start on a busy machine still
        // leaves appends to lose.
        let before = acked.lock().unwrap().len();
        let started = std::time::Instant::now();
        while acked.lock().unwrap().len() == before {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "cycle {cycle}: no append was acknowledged within 30 s of the start"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(100 + (cycle * 137) % 400)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        for writer in writers {
            writer.await.unwrap();
        }
        let after = acked.lock().unwrap().len();
        assert!(
            after > before,
            "cycle {cycle}: no append was acknowledged before the kill"
        );
    }
    let (mut child, url) = spawn_server(&data, &log).await;
    let mut client = connect(&url).await;
    let acked = acked.lock().unwrap().clone();
    check_ledger(&mut client, &acked, cycles).await;
    let erased = erased.lock().unwrap().clone();
    check_erasures(&url, &erased).await;
    check_whole_ledger(&url).await;
    eprintln!(
        "{} acknowledged appends and {} acknowledged erasures over {cycles} SIGKILL cycles all present",
        acked.len(),
        erased.len()
    );
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_appends_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (mut child, url) = spawn_server(&data, &log).await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(url.clone(), 0, id, acked.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("server did not stop within 30 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "server exited with {status}");
    for writer in writers {
        writer.await.unwrap();
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("ledger closed cleanly"), "{log_text}");

    let (mut child, url) = spawn_server(&data, &log).await;
    let mut client = connect(&url).await;
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    check_ledger(&mut client, &acked, 1).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// Resident memory of process `pid`, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// A million contact ids screened in one call, while another caller has opened a screening
/// stream and never reads it: every id gets its decision, others are still answered at
/// once, and the server's resident memory grows by less than 150 MiB at any moment (the
/// decisions alone would be several hundred MiB if either stream were buffered whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_id_screen_and_a_caller_that_never_reads_keep_the_server_bounded() {
    use consent_ledger::proto::v1::eligibility_service_client::EligibilityServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (child, url) = spawn_server(&dir.path().join("data"), &log).await;
    let pid = child.id().unwrap();
    append(&mut connect(&url).await, registered("crm-bounded", "US")).await;
    let baseline = resident_bytes(pid);

    let stalled_channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let stalled = EligibilityServiceClient::new(stalled_channel)
        .screen(screen_requests(300_000))
        .await
        .unwrap();

    let peak = Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(resident_bytes(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut eligibility = EligibilityServiceClient::connect(url.clone())
        .await
        .unwrap();
    let mut responses = eligibility
        .screen(screen_requests(1_000_000))
        .await
        .unwrap()
        .into_inner();
    let (mut decided, mut summary) = (0u64, None);
    while let Some(response) = responses.message().await.unwrap() {
        match response.kind {
            Some(pb::screen_response::Kind::Decisions(d)) => {
                assert!(d.decisions.iter().all(|d| d.rule_id == "contact.unknown"));
                decided += d.decisions.len() as u64;
            }
            Some(pb::screen_response::Kind::Summary(s)) => summary = Some(s),
            None => panic!("empty screening response"),
        }
    }
    let summary = summary.expect("the stream ends with its summary");
    assert_eq!((decided, summary.contacts), (1_000_000, 1_000_000));

    // The stalled stream is still open, and a Check is answered at once.
    let decision = tokio::time::timeout(
        Duration::from_secs(5),
        eligibility.check(pb::CheckRequest {
            contact_id: "crm-bounded".into(),
            purpose: "email_marketing".into(),
            channel: "email".into(),
            ..Default::default()
        }),
    )
    .await
    .expect("Check waited behind the stalled stream")
    .unwrap()
    .into_inner();
    assert_eq!(decision.contact_id, "crm-bounded");
    sampling.abort();
    let grown = peak.load(std::sync::atomic::Ordering::Relaxed) - baseline;
    println!(
        "server resident memory: {} MiB at start, at most {} MiB more",
        baseline >> 20,
        grown >> 20
    );
    assert!(
        grown < 150 << 20,
        "the server's resident memory grew by {} MiB",
        grown >> 20
    );
    drop(stalled);
    drop(child);
}
