//! A load generator for the append path, using the project's own gRPC client: fixed
//! concurrency over a fixed number of connections, a warm-up, then a measured period with
//! an HDR histogram of request latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{BearerToken, Client};
use crate::proto::v1 as pb;
use crate::proto::v1::ledger_service_client::LedgerServiceClient;

/// What to run.
#[derive(Debug, Clone)]
pub struct AppendBench {
    /// The server, and credentials of a caller with the writer role.
    pub connection: super::Connection,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// HTTP/2 connections the requests share.
    pub connections: usize,
    /// Events per request: 1 uses `Append`, more uses `AppendBatch`.
    pub batch: usize,
    /// Distinct contacts each worker appends to.
    pub contacts_per_worker: usize,
    /// Unmeasured period first.
    pub warmup: Duration,
    /// Measured period.
    pub duration: Duration,
}

/// Results of a run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `append` or `append-batch`.
    pub workload: String,
    /// Requests in flight.
    pub concurrency: usize,
    /// Connections used.
    pub connections: usize,
    /// Events per request.
    pub batch: usize,
    /// Measured seconds.
    pub seconds: f64,
    /// Requests completed in the measured period.
    pub requests: u64,
    /// Events appended in the measured period.
    pub events: u64,
    /// Requests that failed (any status).
    pub errors: u64,
    /// Requests per second.
    pub requests_per_sec: f64,
    /// Events per second.
    pub events_per_sec: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest request.
    pub max_us: u64,
}

impl BenchReport {
    /// A human-readable table.
    pub fn table(&self) -> String {
        format!(
            "workload     {}\nconcurrency  {} requests over {} connections, {} event(s) each\nmeasured     {:.1} s: {} requests, {} events, {} errors\nthroughput   {:.0} requests/s, {:.0} events/s\nlatency      p50 {} us  p90 {} us  p99 {} us  p99.9 {} us  max {} us",
            self.workload,
            self.concurrency,
            self.connections,
            self.batch,
            self.seconds,
            self.requests,
            self.events,
            self.errors,
            self.requests_per_sec,
            self.events_per_sec,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us
        )
    }
}

/// Runs the append benchmark against a running server.
pub async fn run_append(bench: AppendBench) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(
        bench.concurrency > 0 && bench.connections > 0 && bench.batch > 0,
        "concurrency, connections and batch must be at least 1"
    );
    let mut channels = Vec::with_capacity(bench.connections);
    for _ in 0..bench.connections {
        channels.push(bench.connection.channel().await?);
    }
    let token = BearerToken::new(bench.connection.token.as_deref())?;
    // Contact ids unique to this run, so runs can repeat against the same ledger.
    let run = format!("{:x}", chrono::Utc::now().timestamp_micros());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(bench.concurrency);
    for worker in 0..bench.concurrency {
        let client = LedgerServiceClient::with_interceptor(
            channels[worker % channels.len()].clone(),
            token.clone(),
        );
        let prefix = format!("bench-{run}-{worker}");
        workers.push(tokio::spawn(append_worker(
            client,
            prefix,
            bench.clone(),
            measuring.clone(),
            stop.clone(),
            errors.clone(),
        )));
    }
    tokio::time::sleep(bench.warmup).await;
    errors.store(0, Ordering::Relaxed);
    measuring.store(true, Ordering::Release);
    let started = Instant::now();
    tokio::time::sleep(bench.duration).await;
    stop.store(true, Ordering::Release);
    let seconds = started.elapsed().as_secs_f64();
    let mut histogram = new_histogram();
    for worker in workers {
        histogram.add(worker.await?)?;
    }
    let requests = histogram.len();
    let events = requests * bench.batch as u64;
    Ok(BenchReport {
        workload: if bench.batch == 1 {
            "append"
        } else {
            "append-batch"
        }
        .into(),
        concurrency: bench.concurrency,
        connections: bench.connections,
        batch: bench.batch,
        seconds,
        requests,
        events,
        errors: errors.load(Ordering::Relaxed),
        requests_per_sec: requests as f64 / seconds,
        events_per_sec: events as f64 / seconds,
        p50_us: histogram.value_at_quantile(0.5),
        p90_us: histogram.value_at_quantile(0.9),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
    })
}

fn new_histogram() -> Histogram<u64> {
    // 1 us to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

async fn append_worker(
    mut client: Client,
    prefix: String,
    bench: AppendBench,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
) -> Histogram<u64> {
    let mut histogram = new_histogram();
    let mut next = 0usize;
    let contacts = bench.contacts_per_worker.max(1);
    while !stop.load(Ordering::Acquire) {
        let events: Vec<pb::Event> = (0..bench.batch)
            .map(|_| {
                let n = next;
                next += 1;
                bench_event(&prefix, n % contacts, n / contacts)
            })
            .collect();
        let started = Instant::now();
        let ok = if bench.batch == 1 {
            let event = events.into_iter().next();
            client.append(pb::AppendRequest { event }).await.is_ok()
        } else {
            client
                .append_batch(pb::AppendBatchRequest { events })
                .await
                .map(|r| {
                    r.into_inner()
                        .results
                        .iter()
                        .all(|r| matches!(r.outcome, Some(pb::append_result::Outcome::Receipt(_))))
                })
                .unwrap_or(false)
        };
        let elapsed = started.elapsed().as_micros() as u64;
        if measuring.load(Ordering::Acquire) && !stop.load(Ordering::Acquire) {
            if ok {
                let _ = histogram.record(elapsed.max(1));
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    histogram
}

/// The `round`-th event for contact `index` of a worker: a registration first, then
/// alternating consent grants and withdrawals.
fn bench_event(prefix: &str, index: usize, round: usize) -> pb::Event {
    use pb::event::Kind;
    let contact_id = format!("{prefix}-{index}");
    let kind = match round {
        0 => Kind::ContactRegistered(pb::ContactRegistered {
            country: ["US", "DE", "FR", "GB", "CA"][index % 5].into(),
            region: String::new(),
            relationship: Some(pb::Relationship {
                audience: pb::Audience::B2c as i32,
                lifecycle: pb::Lifecycle::Prospect as i32,
            }),
            personal: Some(pb::PersonalData {
                email: format!("{contact_id}@bench.invalid"),
                name: String::new(),
                phone: String::new(),
            }),
        }),
        n if n % 2 == 1 => Kind::ConsentGranted(pb::ConsentGranted {
            purpose: "email_marketing".into(),
            channel: "email".into(),
            method: pb::ConsentMethod::Checkbox as i32,
            notice: Some(pb::Notice {
                id: "bench-notice".into(),
                version: "1".into(),
                ..Default::default()
            }),
            evidence: None,
            expires_at: None,
        }),
        _ => Kind::ConsentWithdrawn(pb::ConsentWithdrawn {
            purpose: "email_marketing".into(),
            channel: "email".into(),
            method: pb::ConsentMethod::UnsubscribeLink as i32,
            evidence: None,
        }),
    };
    pb::Event {
        contact_id,
        kind: Some(kind),
        ..Default::default()
    }
}

/// Results of the verification benchmark: `VerifyLedger` over the whole ledger next to
/// raw SHA-256 over the same number and size of entries on this machine, and the latency
/// of inclusion and consistency proofs at the ledger's current size.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyBenchReport {
    /// Entries verified.
    pub entries: u64,
    /// Bytes of entries re-hashed.
    pub bytes: u64,
    /// Server-side seconds of `VerifyLedger`.
    pub seconds: f64,
    /// Entries verified per second.
    pub entries_per_sec: f64,
    /// Leaf hashes per second of bare SHA-256 over entries of the same size, here.
    pub raw_sha256_entries_per_sec: f64,
    /// `entries_per_sec / raw_sha256_entries_per_sec`.
    pub share_of_raw_hashing: f64,
    /// Whether the ledger verified.
    pub ok: bool,
    /// Proofs sampled of each kind.
    pub proofs: usize,
    /// Inclusion proof latency, microseconds.
    pub inclusion_p50_us: u64,
    /// 99th percentile.
    pub inclusion_p99_us: u64,
    /// Consistency proof latency, microseconds.
    pub consistency_p50_us: u64,
    /// 99th percentile.
    pub consistency_p99_us: u64,
}

impl VerifyBenchReport {
    /// A human-readable table.
    pub fn table(&self) -> String {
        format!(
            "workload     verify ({})\nledger       {} entries, {:.1} MB\nVerifyLedger {:.2} s: {:.0} entries/s\nraw SHA-256  {:.0} entries/s of the same size (verification runs at {:.0}% of it)\nproofs       {} each; inclusion p50 {} us p99 {} us; consistency p50 {} us p99 {} us",
            if self.ok { "ok" } else { "DAMAGE FOUND" },
            self.entries,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.entries_per_sec,
            self.raw_sha256_entries_per_sec,
            self.share_of_raw_hashing * 100.0,
            self.proofs,
            self.inclusion_p50_us,
            self.inclusion_p99_us,
            self.consistency_p50_us,
            self.consistency_p99_us,
        )
    }
}

/// Runs `VerifyLedger` once, measures raw hashing here, and samples `proofs` random
/// inclusion and consistency proofs against the current tree.
pub async fn run_verify(
    connection: &super::Connection,
    proofs: usize,
) -> anyhow::Result<VerifyBenchReport> {
    use sha2::{Digest, Sha256};

    let mut audit = connection.audit_client().await?;
    let mut stream = audit
        .verify_ledger(pb::VerifyLedgerRequest::default())
        .await?
        .into_inner();
    let mut result = None;
    while let Some(message) = stream.message().await? {
        if let Some(pb::verify_ledger_response::Update::Result(r)) = message.update {
            result = Some(r);
        }
    }
    let result = result.ok_or_else(|| anyhow::anyhow!("VerifyLedger sent no result"))?;
    anyhow::ensure!(
        result.entries_verified > 0,
        "the ledger is empty: seed it first"
    );

    // Bare leaf hashing of as many entries of the average size, single-threaded.
    let average = (result.bytes_hashed / result.entries_verified).max(1) as usize;
    let entry = vec![0x5au8; average];
    let started = Instant::now();
    let mut sink = [0u8; 32];
    for _ in 0..result.entries_verified {
        let mut hasher = Sha256::new();
        hasher.update([0u8]);
        hasher.update(&entry);
        hasher.update(sink);
        sink = hasher.finalize().into();
    }
    let raw_seconds = started.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    let raw_rate = result.entries_verified as f64 / raw_seconds;

    let size = result.tree_size;
    let mut inclusion = new_histogram();
    let mut consistency = new_histogram();
    let mut state = size ^ 0x9e37_79b9_7f4a_7c15;
    let mut random = move |bound: u64| {
        // xorshift: enough to spread samples over the tree.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound + 1
    };
    for _ in 0..proofs {
        let seq = random(size);
        let started = Instant::now();
        audit
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                seq,
                tree_size: size,
            })
            .await?;
        inclusion.record(started.elapsed().as_micros().max(1) as u64)?;
        let first = random(size);
        let started = Instant::now();
        audit
            .get_consistency_proof(pb::GetConsistencyProofRequest {
                first_size: first,
                second_size: size,
            })
            .await?;
        consistency.record(started.elapsed().as_micros().max(1) as u64)?;
    }
    let entries_per_sec = result.entries_verified as f64 / result.seconds;
    Ok(VerifyBenchReport {
        entries: result.entries_verified,
        bytes: result.bytes_hashed,
        seconds: result.seconds,
        entries_per_sec,
        raw_sha256_entries_per_sec: raw_rate,
        share_of_raw_hashing: entries_per_sec / raw_rate,
        ok: result.ok,
        proofs,
        inclusion_p50_us: inclusion.value_at_quantile(0.5),
        inclusion_p99_us: inclusion.value_at_quantile(0.99),
        consistency_p50_us: consistency.value_at_quantile(0.5),
        consistency_p99_us: consistency.value_at_quantile(0.99),
    })
}
