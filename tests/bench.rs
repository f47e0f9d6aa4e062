//! The load generators against a real server: each measures requests that really
//! happened (the appends it counts are in the ledger), with no errors on a healthy server.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{tree_head, TestServer};
use consent_ledger::cli::bench::{self, AppendBench, BenchReport, CheckBench, PingBench};
use consent_ledger::cli::Connection;

const MEASURED: Duration = Duration::from_millis(600);

fn assert_measured(report: &BenchReport, workload: &str) {
    assert_eq!(report.workload, workload);
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(report.requests > 0, "{report:?}");
    assert_eq!(report.events, report.requests * report.batch as u64);
    assert!(
        report.p50_us > 0 && report.p50_us <= report.p99_us,
        "{report:?}"
    );
    assert!(report.p99_us <= report.max_us, "{report:?}");
    assert!(
        report.seconds >= MEASURED.as_secs_f64() && report.requests_per_sec > 0.0,
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_load_generator_measures_what_the_server_did() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let connection = Connection::plain(&server.url());
    let mut client = server.client().await;
    let (size, _) = tree_head(&mut client).await;

    let ping = bench::run_ping(PingBench {
        connection: connection.clone(),
        concurrency: 4,
        connections: 2,
        warmup: Duration::ZERO,
        duration: MEASURED,
    })
    .await
    .unwrap();
    assert_measured(&ping, "ping");
    assert_eq!((ping.unit.as_str(), ping.batch), ("call", 1));
    // Health checks append nothing.
    assert_eq!(tree_head(&mut client).await.0, size);

    for batch in [1, 20] {
        let before = tree_head(&mut client).await.0;
        let report = bench::run_append(AppendBench {
            connection: connection.clone(),
            concurrency: 4,
            connections: 2,
            batch,
            contacts_per_worker: 5,
            warmup: Duration::from_millis(100),
            duration: MEASURED,
        })
        .await
        .unwrap();
        assert_measured(&report, if batch == 1 { "append" } else { "append-batch" });
        // Every event measured was appended (and some in the warm-up and at the end).
        let grown = tree_head(&mut client).await.0 - before;
        assert!(grown >= report.events, "{grown} < {}", report.events);
    }

    let check = bench::run_check(CheckBench {
        connection,
        concurrency: 4,
        connections: 2,
        population: bench::Population {
            contacts: 20,
            prefix: Some("pop".into()),
            seed: true,
            erase_every: 0,
        },
        warmup: Duration::ZERO,
        duration: MEASURED,
        rate: None,
    })
    .await
    .unwrap();
    assert_measured(&check, "check");
    assert_eq!(check.contacts, Some(20));
    server.stop().await;
}
