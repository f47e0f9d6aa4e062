//! Load generators using the project's own gRPC client: appends and eligibility checks at
//! fixed concurrency over a fixed number of connections (or, for checks, at a fixed rate),
//! a warm-up, then a measured period with an HDR histogram of request latency; a campaign
//! list streamed through `Screen`; full verification; and the eligibility decision itself,
//! in process.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::{BearerToken, Client, EligibilityClient};
use crate::proto::v1 as pb;
use crate::proto::v1::eligibility_service_client::EligibilityServiceClient;
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
    /// `append`, `append-batch`, `check` or `ping`.
    pub workload: String,
    /// What `events` counts: `event` (appended), `decision` (made) or `call` (answered).
    pub unit: String,
    /// Requests in flight (at most, with a fixed rate).
    pub concurrency: usize,
    /// Connections used.
    pub connections: usize,
    /// Events (or decisions) per request.
    pub batch: usize,
    /// Contacts the requests were spread over, when they were drawn from a seeded set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contacts: Option<usize>,
    /// Fixed-rate mode: the requests per second scheduled; latency is then measured from
    /// each request's intended send time. Absent: closed loop (each request in flight
    /// sends the next as soon as it completes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Measured seconds.
    pub seconds: f64,
    /// Requests completed in the measured period.
    pub requests: u64,
    /// Events appended (or decisions made) in the measured period.
    pub events: u64,
    /// Requests that failed (any status).
    pub errors: u64,
    /// Requests per second.
    pub requests_per_sec: f64,
    /// Events (or decisions) per second.
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
    /// The report of a run with (requests in flight, connections, events per request),
    /// from its histogram; the contacts and the fixed rate are left unset.
    fn new(
        workload: &str,
        unit: &str,
        (concurrency, connections, batch): (usize, usize, usize),
        histogram: &Histogram<u64>,
        seconds: f64,
        errors: u64,
    ) -> Self {
        let requests = histogram.len();
        let events = requests * batch as u64;
        Self {
            workload: workload.into(),
            unit: unit.into(),
            concurrency,
            connections,
            batch,
            contacts: None,
            target_rate: None,
            seconds,
            requests,
            events,
            errors,
            requests_per_sec: requests as f64 / seconds,
            events_per_sec: events as f64 / seconds,
            p50_us: histogram.value_at_quantile(0.5),
            p90_us: histogram.value_at_quantile(0.9),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let unit = &self.unit;
        let mut contacts = String::new();
        if let Some(n) = self.contacts {
            contacts = format!("\ncontacts     {n}, drawn at random");
        }
        let (at_most, schedule) = match self.target_rate {
            Some(rate) => (
                "at most ",
                format!("\nschedule     fixed rate of {rate:.0} requests/s; latency from each request's intended send time"),
            ),
            None => ("", String::new()),
        };
        format!(
            "workload     {}\nconcurrency  {at_most}{} requests over {} connections, {} {unit}(s) each{contacts}{schedule}\nmeasured     {:.1} s: {} requests, {} {unit}s, {} errors\nthroughput   {:.0} requests/s, {:.0} {unit}s/s\nlatency      p50 {} us  p90 {} us  p99 {} us  p99.9 {} us  max {} us",
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
    let lanes = Lanes::connect(&bench.connection, bench.connections).await?;
    let token = BearerToken::new(bench.connection.token.as_deref())?;
    // Contact ids unique to this run, so runs can repeat against the same ledger.
    let run = format!("{:x}", chrono::Utc::now().timestamp_micros());
    let timeline = ClosedLoop::default();
    let mut workers = Vec::with_capacity(bench.concurrency);
    for worker in 0..bench.concurrency {
        let prefix = format!("bench-{run}-{worker}");
        let (bench, token, timeline) = (bench.clone(), token.clone(), timeline.clone());
        workers.push(lanes.spawn(worker, move |channel| {
            let client = LedgerServiceClient::with_interceptor(channel, token);
            append_worker(client, prefix, bench, timeline)
        }));
    }
    let seconds = timeline.run(bench.warmup, bench.duration).await;
    let mut histogram = new_histogram();
    for worker in workers {
        histogram.add(worker.await?)?;
    }
    let workload = if bench.batch == 1 {
        "append"
    } else {
        "append-batch"
    };
    Ok(BenchReport::new(
        workload,
        "event",
        (bench.concurrency, bench.connections, bench.batch),
        &histogram,
        seconds,
        timeline.errors(),
    ))
}

/// What to run: the gRPC health check (`grpc.health.v1.Health/Check`) at fixed
/// concurrency. It has no work behind it (no storage, no decision), so its rate is what
/// any unary call can reach on this server, connection count and machine: the ceiling
/// of unary `Append` and `Check` before either does anything of its own.
#[derive(Debug, Clone)]
pub struct PingBench {
    /// The server, and credentials (the health service needs none).
    pub connection: super::Connection,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// HTTP/2 connections the requests share.
    pub connections: usize,
    /// Unmeasured period first.
    pub warmup: Duration,
    /// Measured period.
    pub duration: Duration,
}

/// Runs the health-check benchmark against a running server.
pub async fn run_ping(bench: PingBench) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(
        bench.concurrency > 0 && bench.connections > 0,
        "concurrency and connections must be at least 1"
    );
    let lanes = Lanes::connect(&bench.connection, bench.connections).await?;
    let token = BearerToken::new(bench.connection.token.as_deref())?;
    let timeline = ClosedLoop::default();
    let mut workers = Vec::with_capacity(bench.concurrency);
    for worker in 0..bench.concurrency {
        let (token, timeline) = (token.clone(), timeline.clone());
        workers.push(lanes.spawn(worker, move |channel| async move {
            let mut client = HealthClient::with_interceptor(channel, token);
            let mut histogram = new_histogram();
            while timeline.running() {
                let started = Instant::now();
                let ok = client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32);
                timeline.record(&mut histogram, started, ok);
            }
            histogram
        }));
    }
    let seconds = timeline.run(bench.warmup, bench.duration).await;
    let mut histogram = new_histogram();
    for worker in workers {
        histogram.add(worker.await?)?;
    }
    Ok(BenchReport::new(
        "ping",
        "call",
        (bench.concurrency, bench.connections, 1),
        &histogram,
        seconds,
        timeline.errors(),
    ))
}

/// The timeline of a closed-loop run, shared by its workers: each sends its next request
/// as soon as the last completes, records nothing during the warm-up, and stops at the
/// end of the measured period.
#[derive(Debug, Clone, Default)]
struct ClosedLoop {
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
}

impl ClosedLoop {
    /// Whether workers should send another request.
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Acquire)
    }

    /// Records a request sent at `started` that has just completed (`ok`) or failed,
    /// if it completed within the measured period.
    fn record(&self, histogram: &mut Histogram<u64>, started: Instant, ok: bool) {
        let elapsed = started.elapsed().as_micros() as u64;
        if self.measuring.load(Ordering::Acquire) && self.running() {
            if ok {
                let _ = histogram.record(elapsed.max(1));
            } else {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits out the warm-up and the measured period; returns the measured seconds.
    async fn run(&self, warmup: Duration, duration: Duration) -> f64 {
        tokio::time::sleep(warmup).await;
        self.errors.store(0, Ordering::Relaxed);
        self.measuring.store(true, Ordering::Release);
        let started = Instant::now();
        tokio::time::sleep(duration).await;
        self.stop.store(true, Ordering::Release);
        started.elapsed().as_secs_f64()
    }

    /// Requests that failed in the measured period.
    fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// The load generator's connections, each served by a thread of its own with a
/// single-threaded runtime, like the server's: the requests of the workers on one
/// connection leave together and their responses are read together, with no hand-off
/// between threads per request. `pgbench -j` runs its connections the same way.
struct Lanes {
    lanes: Vec<Lane>,
}

/// One connection and the runtime of its thread.
struct Lane {
    channel: tonic::transport::Channel,
    runtime: tokio::runtime::Handle,
    /// Dropped with the lane: the thread then ends, and its runtime with it.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Lanes {
    /// Opens `count` connections, each on a thread of its own.
    async fn connect(connection: &super::Connection, count: usize) -> anyhow::Result<Self> {
        let mut lanes = Vec::with_capacity(count);
        for index in 0..count {
            let (ready, opened) = tokio::sync::oneshot::channel();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let connection = connection.clone();
            let name = format!("bench-connection-{index}");
            let finished = crate::threads::spawn_single_threaded(name, move || async move {
                let channel = connection.channel().await;
                let opened = channel.map(|c| (c, tokio::runtime::Handle::current()));
                if ready.send(opened).is_ok() {
                    let _ = stopped.await;
                }
            })?;
            let (channel, runtime) = match opened.await {
                Ok(opened) => opened?,
                // The thread ended before it connected: its runtime did not start.
                Err(_) => match finished.await {
                    Ok(Err(err)) => return Err(err.into()),
                    _ => anyhow::bail!("a connection thread stopped"),
                },
            };
            lanes.push(Lane {
                channel,
                runtime,
                _stop: stop,
            });
        }
        Ok(Self { lanes })
    }

    /// Runs worker `worker` on connection `worker % count`, on that connection's thread.
    fn spawn<F>(
        &self,
        worker: usize,
        start: impl FnOnce(tonic::transport::Channel) -> F,
    ) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let lane = &self.lanes[worker % self.lanes.len()];
        lane.runtime.spawn(start(lane.channel.clone()))
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 us to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

async fn append_worker(
    mut client: Client,
    prefix: String,
    bench: AppendBench,
    timeline: ClosedLoop,
) -> Histogram<u64> {
    let mut histogram = new_histogram();
    let mut next = 0usize;
    let contacts = bench.contacts_per_worker.max(1);
    while timeline.running() {
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
        timeline.record(&mut histogram, started, ok);
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
            suppression_override: None,
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
                notes: String::new(),
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

    // Bare leaf hashing (the verification's own `leaf_hash`) of as many entries of the
    // average size, single-threaded. Each digest is written over the start of the next
    // entry, so that no hash can be skipped and nothing is hashed beyond the entry itself
    // (appending the digest instead would add a compression to most leaves, and
    // understate the raw rate by about a seventh).
    let average = (result.bytes_hashed / result.entries_verified).max(1) as usize;
    let mut entry = vec![0x5au8; average];
    let chained = average.min(32);
    let started = Instant::now();
    for _ in 0..result.entries_verified {
        let digest = crate::audit::merkle::leaf_hash(&entry);
        entry[..chained].copy_from_slice(&digest[..chained]);
    }
    let raw_seconds = started.elapsed().as_secs_f64();
    std::hint::black_box(&entry);
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

// ---------------------------------------------------------------------------------------
// Eligibility: a seeded population of contacts, `Check` under load, `Screen` of a list,
// and the decision itself in process.
// ---------------------------------------------------------------------------------------

/// The purpose and channel the eligibility benchmarks ask about.
const CHECK_PURPOSE: &str = "email_marketing";
/// See [`CHECK_PURPOSE`].
const CHECK_CHANNEL: &str = "email";
/// Contacts per `AppendBatch` when seeding; a contact's events always travel together, in
/// order, so its history is valid whatever order concurrent batches commit in. About 1,750
/// events, well under the server's batch and message limits.
const SEED_CONTACTS_PER_BATCH: usize = 100;
/// Seeding batches in flight at once.
const SEED_IN_FLIGHT: usize = 4;
/// Countries of seeded contacts, with weights: the 21 countries of the per-country pack
/// (`deploy/policy/per-country.toml`), and two it does not list (MX, ZA) so that the
/// unknown-country rule is exercised too.
const SEED_COUNTRIES: [(&str, u64); 23] = [
    ("US", 28),
    ("DE", 10),
    ("GB", 8),
    ("FR", 6),
    ("CA", 5),
    ("IN", 4),
    ("AU", 4),
    ("NL", 3),
    ("ES", 3),
    ("IT", 3),
    ("BR", 3),
    ("JP", 2),
    ("SE", 2),
    ("CH", 2),
    ("AT", 2),
    ("BE", 2),
    ("IE", 2),
    ("PL", 2),
    ("SG", 2),
    ("DK", 1),
    ("GR", 1),
    ("MX", 2),
    ("ZA", 1),
];

/// A small deterministic generator (SplitMix64): enough to vary histories and spread
/// requests over contacts, and reproducible, so a contact's seeded history depends only
/// on its index.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x5eed_c0de_1ed9_e500)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The contacts an eligibility benchmark uses: ids `PREFIX-0` to `PREFIX-(contacts-1)`.
#[derive(Debug, Clone)]
pub struct Population {
    /// How many.
    pub contacts: usize,
    /// The id prefix; `None` picks a new one for this run.
    pub prefix: Option<String>,
    /// Seed them first; `false` uses contacts an earlier run seeded with this prefix.
    pub seed: bool,
    /// When seeding, erase every this-many-th contact afterwards (0: none).
    pub erase_every: usize,
}

/// What seeding appended.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    /// The contact id prefix: reuse the contacts with `--no-seed --contact-prefix`.
    pub prefix: String,
    /// Contacts registered.
    pub contacts: usize,
    /// Entries appended.
    pub entries: u64,
    /// Contacts then erased through `EraseContact`.
    pub erased: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// Entries appended per second.
    pub entries_per_sec: f64,
}

impl SeedReport {
    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "seeded {} contacts ({} entries, {:.1} per contact; {} erased) in {:.1} s, {:.0} entries/s; reuse them with --no-seed --contact-prefix {} --contacts {}",
            self.contacts,
            self.entries,
            self.entries as f64 / self.contacts.max(1) as f64,
            self.erased,
            self.seconds,
            self.entries_per_sec,
            self.prefix,
            self.contacts
        )
    }
}

impl Population {
    /// The id prefix to use, after seeding the contacts (over `connections` connections)
    /// or, with `seed` off, checking that the first and last of them exist.
    pub async fn prepare(
        &self,
        connection: &super::Connection,
        connections: usize,
    ) -> anyhow::Result<(String, Option<SeedReport>)> {
        anyhow::ensure!(self.contacts > 0, "--contacts must be at least 1");
        let prefix = self
            .prefix
            .clone()
            .unwrap_or_else(|| format!("bench-{:x}", Utc::now().timestamp_micros()));
        let last = format!("{prefix}-{}", self.contacts - 1);
        crate::model::ContactId::parse("--contact-prefix", &last)
            .map_err(|e| anyhow::anyhow!("{e} (contact ids are PREFIX-N, e.g. {last})"))?;
        if self.seed {
            let report = seed(
                connection,
                &prefix,
                self.contacts,
                connections,
                self.erase_every,
            )
            .await?;
            return Ok((prefix, Some(report)));
        }
        let mut client = connection.eligibility_client().await?;
        for contact in [format!("{prefix}-0"), last] {
            let request = pb::CheckRequest {
                contact_id: contact.clone(),
                purpose: CHECK_PURPOSE.into(),
                channel: CHECK_CHANNEL.into(),
                ..Default::default()
            };
            match client.check(request).await {
                Ok(_) => {}
                Err(status) if status.code() == tonic::Code::NotFound => anyhow::bail!(
                    "contact {contact} is not registered: seed {} contacts with this --contact-prefix first (without --no-seed)",
                    self.contacts
                ),
                Err(status) => return Err(status.into()),
            }
        }
        Ok((prefix, None))
    }
}

/// Registers `contacts` contacts `PREFIX-N` with realistic histories of 5 to 30 entries
/// each (see [`seed_events`]), with `AppendBatch` over `connections` connections; then, as
/// a DPO would, erases every `erase_every`-th of them through `EraseContact` (none if 0).
pub async fn seed(
    connection: &super::Connection,
    prefix: &str,
    contacts: usize,
    connections: usize,
    erase_every: usize,
) -> anyhow::Result<SeedReport> {
    let token = BearerToken::new(connection.token.as_deref())?;
    let mut clients = Vec::with_capacity(connections.max(1));
    for _ in 0..connections.max(1) {
        clients.push(LedgerServiceClient::with_interceptor(
            connection.channel().await?,
            token.clone(),
        ));
    }
    let now = Utc::now();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(SEED_IN_FLIGHT);
    for worker in 0..SEED_IN_FLIGHT {
        let mut client = clients[worker % clients.len()].clone();
        let (next, prefix) = (next.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut entries = 0u64;
            loop {
                let first = next.fetch_add(SEED_CONTACTS_PER_BATCH, Ordering::Relaxed);
                if first >= contacts {
                    return Ok::<u64, anyhow::Error>(entries);
                }
                let last = contacts.min(first + SEED_CONTACTS_PER_BATCH);
                let events: Vec<pb::Event> = (first..last)
                    .flat_map(|index| seed_events(&prefix, index, now))
                    .collect();
                let response = client
                    .append_batch(pb::AppendBatchRequest { events })
                    .await?
                    .into_inner();
                for result in &response.results {
                    if let Some(pb::append_result::Outcome::Error(err)) = &result.outcome {
                        anyhow::bail!(
                            "seeding contacts {prefix}-{first} to {prefix}-{}: event {} was refused: {}",
                            last - 1,
                            result.index,
                            err.message
                        );
                    }
                }
                entries += response.results.len() as u64;
            }
        }));
    }
    let mut entries = 0;
    for task in tasks {
        entries += task.await??;
    }
    let mut erased = 0;
    if erase_every > 0 {
        let mut rights = connection.rights_client().await?;
        for index in (erase_every - 1..contacts).step_by(erase_every) {
            let contact_id = format!("{prefix}-{index}");
            rights
                .erase_contact(pb::EraseContactRequest {
                    contact_id: contact_id.clone(),
                    reason: "benchmark population: an Art. 17 request".into(),
                    ..Default::default()
                })
                .await
                .map_err(|status| {
                    anyhow::anyhow!(
                        "erasing {contact_id}: {:?}: {}",
                        status.code(),
                        status.message()
                    )
                })?;
            erased += 1;
        }
        // The erasure entries.
        entries += erased;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(SeedReport {
        prefix: prefix.to_owned(),
        contacts,
        entries,
        erased,
        seconds,
        entries_per_sec: entries as f64 / seconds,
    })
}

/// The history of seeded contact `index`, deterministic in the index: a registration in
/// a country drawn from [`SEED_COUNTRIES`] (B2B or B2C, prospect or customer), usually an
/// acquisition record and a lawful basis for storage, then email-marketing consent by one
/// of several routes (a double opt-in sign-up, confirmed or not; a checkbox or a
/// preference centre; implied consent; none), some withdrawals and re-grants, tracking
/// consent, a profiling basis, some objections, and everyday preference changes on other
/// purposes up to a length of 5 to 30 entries, spread over the past months.
fn seed_events(prefix: &str, index: usize, now: DateTime<Utc>) -> Vec<pb::Event> {
    use pb::event::Kind;
    use pb::ConsentMethod as Method;
    use sha2::{Digest, Sha256};

    fn grant(purpose: &str, channel: &str, method: Method) -> Kind {
        Kind::ConsentGranted(pb::ConsentGranted {
            purpose: purpose.into(),
            channel: channel.into(),
            method: method as i32,
            notice: Some(pb::Notice {
                id: format!("{purpose}-notice"),
                version: "4".into(),
                ..Default::default()
            }),
            evidence: Some(pb::CollectionEvidence {
                form_url: "https://example.com/preferences".into(),
                ..Default::default()
            }),
            expires_at: None,
        })
    }
    fn withdraw(purpose: &str, channel: &str, method: Method) -> Kind {
        Kind::ConsentWithdrawn(pb::ConsentWithdrawn {
            purpose: purpose.into(),
            channel: channel.into(),
            method: method as i32,
            evidence: None,
        })
    }
    fn basis(purpose: &str, basis: pb::LegalBasis, justification: &str) -> Kind {
        Kind::LegalBasisRecorded(pb::LegalBasisRecorded {
            purpose: purpose.into(),
            basis: basis as i32,
            justification: justification.into(),
        })
    }
    fn acquisition(rng: &mut SplitMix) -> Kind {
        let (source_kind, supplier) = match rng.below(5) {
            0 => (pb::SourceKind::Event, ""),
            1 => (pb::SourceKind::PurchasedList, "bench-list-vendor"),
            2 => (pb::SourceKind::Referral, ""),
            3 => (pb::SourceKind::Import, ""),
            _ => (pb::SourceKind::WebForm, ""),
        };
        Kind::AcquisitionRecorded(pb::AcquisitionRecorded {
            source_kind: source_kind as i32,
            supplier: supplier.into(),
            source_reference: format!("campaign-{}", rng.below(40)),
            notice_sent_at: None,
        })
    }
    fn double_opt_in(confirm: bool, token_sha256: String) -> Kind {
        let (purpose, channel) = (CHECK_PURPOSE.into(), CHECK_CHANNEL.into());
        if confirm {
            Kind::DoubleOptInConfirmed(pb::DoubleOptInConfirmed {
                purpose,
                channel,
                token_sha256,
                evidence: None,
            })
        } else {
            Kind::DoubleOptInRequested(pb::DoubleOptInRequested {
                purpose,
                channel,
                token_sha256,
                evidence: None,
            })
        }
    }

    let contact_id = format!("{prefix}-{index}");
    let mut rng = SplitMix::new(index as u64);
    let total: u64 = SEED_COUNTRIES.iter().map(|(_, w)| w).sum();
    let mut pick = rng.below(total);
    let country = SEED_COUNTRIES
        .iter()
        .find(|(_, weight)| {
            let found = pick < *weight;
            pick = pick.saturating_sub(*weight);
            found
        })
        .map_or("US", |(code, _)| code);
    let b2b = rng.chance(45);
    let customer = rng.chance(20);
    let wanted = 5 + rng.below(26) as usize;

    let mut kinds = Vec::with_capacity(32);
    kinds.push(Kind::ContactRegistered(pb::ContactRegistered {
        suppression_override: None,
        country: country.into(),
        region: String::new(),
        relationship: Some(pb::Relationship {
            audience: if b2b {
                pb::Audience::B2b
            } else {
                pb::Audience::B2c
            } as i32,
            lifecycle: if customer {
                pb::Lifecycle::Customer
            } else {
                pb::Lifecycle::Prospect
            } as i32,
        }),
        personal: Some(pb::PersonalData {
            email: format!("{contact_id}@bench.invalid"),
            ..Default::default()
        }),
    }));
    if rng.chance(70) {
        kinds.push(acquisition(&mut rng));
    }
    if rng.chance(92) {
        kinds.push(if customer {
            basis("storage", pb::LegalBasis::Contract, "customer contract")
        } else {
            basis(
                "storage",
                pb::LegalBasis::LegitimateInterests,
                "LIA-2026-04 prospect database",
            )
        });
    }
    let token = |n: u32| hex::encode(Sha256::digest(format!("{contact_id}/token/{n}")));
    let consented = match rng.below(100) {
        // A sign-up form with double opt-in; one in five never confirms.
        0..=34 => {
            kinds.push(grant(CHECK_PURPOSE, CHECK_CHANNEL, Method::Checkbox));
            kinds.push(double_opt_in(false, token(1)));
            if rng.chance(80) {
                kinds.push(double_opt_in(true, token(1)));
            }
            true
        }
        35..=69 => {
            let method = [
                Method::Checkbox,
                Method::PreferenceCenter,
                Method::Written,
                Method::Verbal,
            ][rng.below(4) as usize];
            kinds.push(grant(CHECK_PURPOSE, CHECK_CHANNEL, method));
            true
        }
        70..=79 => {
            let method = if rng.chance(50) {
                Method::ImpliedByInquiry
            } else {
                Method::ImpliedByRelationship
            };
            kinds.push(grant(CHECK_PURPOSE, CHECK_CHANNEL, method));
            true
        }
        _ => false,
    };
    if consented && rng.chance(15) {
        kinds.push(withdraw(
            CHECK_PURPOSE,
            CHECK_CHANNEL,
            Method::UnsubscribeLink,
        ));
        if rng.chance(30) {
            kinds.push(grant(
                CHECK_PURPOSE,
                CHECK_CHANNEL,
                Method::PreferenceCenter,
            ));
        }
    } else if !consented && rng.chance(10) {
        kinds.push(withdraw(
            CHECK_PURPOSE,
            CHECK_CHANNEL,
            Method::UnsubscribeLink,
        ));
    }
    if rng.chance(25) {
        kinds.push(grant("email_tracking", CHECK_CHANNEL, Method::Checkbox));
    }
    if rng.chance(30) {
        kinds.push(basis(
            "profiling",
            pb::LegalBasis::LegitimateInterests,
            "LIA-2026-05 lead scoring",
        ));
    }
    if rng.chance(5) || rng.chance(3) {
        let scope = if rng.chance(70) {
            pb::ObjectionScope::DirectMarketing
        } else {
            pb::ObjectionScope::Profiling
        };
        kinds.push(Kind::ObjectionRecorded(pb::ObjectionRecorded {
            scope: scope as i32,
            purpose: String::new(),
        }));
    }
    // Everyday traffic up to the wanted length: preference changes on other purposes,
    // and new acquisition records.
    while kinds.len() < wanted {
        kinds.push(match rng.below(5) {
            0 => grant("sales_outreach", CHECK_CHANNEL, Method::PreferenceCenter),
            1 => withdraw("sales_outreach", CHECK_CHANNEL, Method::PreferenceCenter),
            2 => grant("sms_marketing", "sms", Method::Checkbox),
            3 => withdraw("sms_marketing", "sms", Method::Other),
            _ => acquisition(&mut rng),
        });
    }
    // Each event only needs those before it, so cutting the tail keeps a valid history.
    kinds.truncate(wanted);

    // Spread over the past 1 to 30 months, in order, the last at least a day ago.
    let span = 86_400 * (30 + rng.below(900)) as i64;
    let start = now - chrono::Duration::seconds(span);
    let step = span / (kinds.len() as i64 + 1);
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let offset = step * i as i64 + rng.below((step / 2).max(1) as u64) as i64;
            pb::Event {
                contact_id: contact_id.clone(),
                occurred_at: Some(crate::service::convert::to_timestamp(
                    start + chrono::Duration::seconds(offset),
                )),
                kind: Some(kind),
                ..Default::default()
            }
        })
        .collect()
}

/// What to run: `Check` of email_marketing on email for random contacts of a population.
#[derive(Debug, Clone)]
pub struct CheckBench {
    /// The server, and credentials of a caller with the reader role (and writer, to seed).
    pub connection: super::Connection,
    /// Requests in flight at once (at most, with a fixed rate).
    pub concurrency: usize,
    /// HTTP/2 connections the requests share.
    pub connections: usize,
    /// The contacts asked about.
    pub population: Population,
    /// Unmeasured period first.
    pub warmup: Duration,
    /// Measured period.
    pub duration: Duration,
    /// Fixed-rate mode: requests per second over all connections. Requests are scheduled
    /// at fixed intervals and latency is measured from each one's intended send time, so
    /// a slow response delays the requests behind it in the measurement too (no
    /// coordinated omission). `None`: closed loop, like the append benchmark.
    pub rate: Option<f64>,
}

/// When requests are sent.
#[derive(Debug, Clone)]
enum Pace {
    /// Each worker sends its next request as soon as the last one completes.
    Closed(ClosedLoop),
    /// Requests at fixed intervals, shared by the workers.
    Fixed(Arc<Schedule>),
}

/// A fixed-rate schedule: request `n` is due at `start + n * interval`.
#[derive(Debug)]
struct Schedule {
    start: Instant,
    interval_ns: f64,
    /// Requests due from then on are measured...
    measure_from: Instant,
    /// ...and none is due from then on.
    end: Instant,
    next: AtomicU64,
}

impl Schedule {
    /// The intended send time of the next request, if one is still due.
    fn next_due(&self) -> Option<Instant> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let due = self.start + Duration::from_nanos((n as f64 * self.interval_ns) as u64);
        (due < self.end).then_some(due)
    }
}

/// Picks the contact of each request.
#[derive(Debug)]
struct Picker {
    prefix: String,
    contacts: usize,
    rng: SplitMix,
}

impl Picker {
    fn request(&mut self) -> pb::CheckRequest {
        pb::CheckRequest {
            contact_id: format!("{}-{}", self.prefix, self.rng.below(self.contacts as u64)),
            purpose: CHECK_PURPOSE.into(),
            channel: CHECK_CHANNEL.into(),
            ..Default::default()
        }
    }
}

/// Runs the check benchmark against a running server: seeds the population (unless told
/// not to), then measures.
pub async fn run_check(bench: CheckBench) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(
        bench.concurrency > 0 && bench.connections > 0,
        "concurrency and connections must be at least 1"
    );
    if let Some(rate) = bench.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "--rate must be a positive number of requests per second"
        );
    }
    let (prefix, seeded) = bench
        .population
        .prepare(&bench.connection, bench.connections)
        .await?;
    if let Some(seeded) = &seeded {
        eprintln!("{}", seeded.line());
    }
    let lanes = Lanes::connect(&bench.connection, bench.connections).await?;
    let token = BearerToken::new(bench.connection.token.as_deref())?;
    let contacts = bench.population.contacts;
    let errors = Arc::new(AtomicU64::new(0));
    let pace = match bench.rate {
        None => Pace::Closed(ClosedLoop::default()),
        Some(rate) => {
            let start = Instant::now();
            let measure_from = start + bench.warmup;
            Pace::Fixed(Arc::new(Schedule {
                start,
                interval_ns: 1e9 / rate,
                measure_from,
                end: measure_from + bench.duration,
                next: AtomicU64::new(0),
            }))
        }
    };
    let mut workers = Vec::with_capacity(bench.concurrency);
    for worker in 0..bench.concurrency {
        let picker = Picker {
            prefix: prefix.clone(),
            contacts,
            rng: SplitMix::new(worker as u64 + 1),
        };
        let (token, pace, errors) = (token.clone(), pace.clone(), errors.clone());
        workers.push(lanes.spawn(worker, move |channel| {
            let client = EligibilityServiceClient::with_interceptor(channel, token);
            check_worker(client, picker, pace, errors)
        }));
    }
    let closed_seconds = match &pace {
        Pace::Closed(timeline) => Some(timeline.run(bench.warmup, bench.duration).await),
        Pace::Fixed(_) => None,
    };
    let mut histogram = new_histogram();
    let mut last_done: Option<Instant> = None;
    for worker in workers {
        let (worker_histogram, done) = worker.await?;
        histogram.add(worker_histogram)?;
        last_done = last_done.max(done);
    }
    let seconds = match (&pace, closed_seconds) {
        (_, Some(seconds)) => seconds,
        // From the first measured send time to the last measured response (later than
        // the end of the schedule when the server could not keep up).
        (Pace::Fixed(schedule), None) => last_done
            .map_or(schedule.end, |done| done.max(schedule.end))
            .duration_since(schedule.measure_from)
            .as_secs_f64(),
        (Pace::Closed(_), None) => bench.duration.as_secs_f64(),
    };
    let errors = match &pace {
        Pace::Closed(timeline) => timeline.errors(),
        Pace::Fixed(_) => errors.load(Ordering::Relaxed),
    };
    Ok(BenchReport {
        contacts: Some(contacts),
        target_rate: bench.rate,
        ..BenchReport::new(
            "check",
            "decision",
            (bench.concurrency, bench.connections, 1),
            &histogram,
            seconds,
            errors,
        )
    })
}

/// One request at a time, paced by `pace`; returns the latencies measured and, with a
/// fixed rate, when the last measured request completed.
async fn check_worker(
    mut client: EligibilityClient,
    mut picker: Picker,
    pace: Pace,
    errors: Arc<AtomicU64>,
) -> (Histogram<u64>, Option<Instant>) {
    let mut histogram = new_histogram();
    let mut last_done = None;
    match pace {
        Pace::Closed(timeline) => {
            while timeline.running() {
                let request = picker.request();
                let started = Instant::now();
                let ok = client.check(request).await.is_ok();
                timeline.record(&mut histogram, started, ok);
            }
        }
        Pace::Fixed(schedule) => {
            while let Some(due) = schedule.next_due() {
                let request = picker.request();
                tokio::time::sleep_until(due.into()).await;
                let ok = client.check(request).await.is_ok();
                let done = Instant::now();
                if due >= schedule.measure_from {
                    if ok {
                        let latency = done.saturating_duration_since(due).as_micros() as u64;
                        histogram.saturating_record(latency.max(1));
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    last_done = Some(done);
                }
            }
        }
    }
    (histogram, last_done)
}

/// What to run: the population's ids streamed once through `Screen`.
#[derive(Debug, Clone)]
pub struct ScreenBench {
    /// The server, and credentials of a caller with the reader role (and writer, to seed).
    pub connection: super::Connection,
    /// The contacts screened, in order.
    pub population: Population,
    /// Contact ids per request message.
    pub batch: usize,
    /// Ask for brief decisions.
    pub brief: bool,
}

/// Results of a screening run.
#[derive(Debug, Clone, Serialize)]
pub struct ScreenBenchReport {
    /// `screen`.
    pub workload: String,
    /// The purpose screened for.
    pub purpose: String,
    /// The channel.
    pub channel: String,
    /// The policy pack the server applied.
    pub policy_version: String,
    /// Contacts screened.
    pub contacts: u64,
    /// Contact ids per request message.
    pub batch: usize,
    /// Whether decisions were brief.
    pub brief: bool,
    /// From the call to the summary, in seconds.
    pub seconds: f64,
    /// Contacts decided per second.
    pub contacts_per_sec: f64,
    /// From the call to the first decisions, in milliseconds.
    pub first_decisions_ms: f64,
    /// Contacts allowed.
    pub allowed: u64,
    /// Contacts denied.
    pub denied: u64,
    /// Contacts per deciding rule.
    pub by_rule: BTreeMap<String, u64>,
}

impl ScreenBenchReport {
    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut rules: Vec<(&String, &u64)> = self.by_rule.iter().collect();
        rules.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let rules: Vec<String> = rules.iter().map(|(r, n)| format!("{r} {n}")).collect();
        format!(
            "workload     screen ({} on {}, policy {}{})\ncontacts     {} in messages of {} ids\nmeasured     {:.2} s: {:.0} contacts/s; first decisions after {:.1} ms\ndecisions    {} allowed, {} denied\nrules        {}",
            self.purpose,
            self.channel,
            self.policy_version,
            if self.brief { ", brief decisions" } else { "" },
            self.contacts,
            self.batch,
            self.seconds,
            self.contacts_per_sec,
            self.first_decisions_ms,
            self.allowed,
            self.denied,
            rules.join(", ")
        )
    }
}

/// Runs the screening benchmark against a running server: seeds the population (unless
/// told not to), then streams every id through one `Screen` call.
pub async fn run_screen(bench: ScreenBench) -> anyhow::Result<ScreenBenchReport> {
    anyhow::ensure!(bench.batch > 0, "--batch must be at least 1");
    let (prefix, seeded) = bench.population.prepare(&bench.connection, 2).await?;
    if let Some(seeded) = &seeded {
        eprintln!("{}", seeded.line());
    }
    let contacts = bench.population.contacts;
    let (batch, brief) = (bench.batch, bench.brief);
    let mut client = bench.connection.eligibility_client().await?;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let producer = tokio::spawn(async move {
        let target = pb::ScreenRequest {
            target: Some(pb::ScreenTarget {
                purpose: CHECK_PURPOSE.into(),
                channel: CHECK_CHANNEL.into(),
                brief,
                ..Default::default()
            }),
            contact_ids: Vec::new(),
        };
        if sender.send(target).await.is_err() {
            return;
        }
        for first in (0..contacts).step_by(batch) {
            let contact_ids = (first..contacts.min(first + batch))
                .map(|index| format!("{prefix}-{index}"))
                .collect();
            let message = pb::ScreenRequest {
                target: None,
                contact_ids,
            };
            if sender.send(message).await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut responses = client
        .screen(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await?
        .into_inner();
    let mut first_decisions = None;
    let mut decided = 0u64;
    let mut summary = None;
    while let Some(response) = responses.message().await? {
        match response.kind {
            Some(pb::screen_response::Kind::Decisions(batch)) => {
                first_decisions.get_or_insert_with(|| started.elapsed());
                decided += batch.decisions.len() as u64;
                std::hint::black_box(batch);
            }
            Some(pb::screen_response::Kind::Summary(s)) => summary = Some(s),
            None => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    producer.await?;
    let summary = summary.ok_or_else(|| anyhow::anyhow!("Screen ended without a summary"))?;
    anyhow::ensure!(
        decided == contacts as u64 && summary.contacts == decided,
        "{contacts} contacts were sent, {decided} decided, {} in the summary",
        summary.contacts
    );
    let by_rule: BTreeMap<String, u64> = summary.by_rule.into_iter().collect();
    if let Some(unknown) = by_rule.get("contact.unknown") {
        eprintln!("warning: {unknown} of the contacts screened are not registered");
    }
    Ok(ScreenBenchReport {
        workload: "screen".into(),
        purpose: CHECK_PURPOSE.into(),
        channel: CHECK_CHANNEL.into(),
        policy_version: summary.policy_version,
        contacts: decided,
        batch,
        brief,
        seconds,
        contacts_per_sec: decided as f64 / seconds,
        first_decisions_ms: first_decisions.unwrap_or_default().as_secs_f64() * 1e3,
        allowed: summary.allowed,
        denied: summary.denied,
        by_rule,
    })
}

/// What to run: `policy::decide` in process, on one contact's folded state.
#[derive(Debug, Clone, Copy)]
pub struct DecideBench {
    /// Entries in the contact's history.
    pub entries: usize,
    /// Decisions timed per purpose.
    pub iterations: u64,
}

/// Results of the in-process decision benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct DecideBenchReport {
    /// `decide`.
    pub workload: String,
    /// Whether this binary was built with optimizations (figures from a debug build are
    /// many times slower).
    pub optimized: bool,
    /// The policy pack (the built-in per-country pack).
    pub policy_version: String,
    /// The contact decided for.
    pub contact: String,
    /// Entries in its history.
    pub entries: usize,
    /// Microseconds to fold the entries into the contact's state.
    pub fold_us: f64,
    /// Size of the contact's stored state record.
    pub state_bytes: usize,
    /// Microseconds to decode the stored state record.
    pub decode_us: f64,
    /// Decisions timed per purpose.
    pub iterations: u64,
    /// One result per purpose.
    pub results: Vec<DecideResult>,
}

/// The decision timings of one purpose.
#[derive(Debug, Clone, Serialize)]
pub struct DecideResult {
    /// The purpose.
    pub purpose: String,
    /// The channel.
    pub channel: String,
    /// The answer.
    pub allowed: bool,
    /// The deciding rule.
    pub rule_id: String,
    /// Decisions per second, on one thread.
    pub decisions_per_sec: f64,
    /// Nanoseconds per decision.
    pub ns_per_decision: f64,
}

impl DecideBenchReport {
    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut text = format!(
            "workload     decide (in process, one thread, policy {}{})\ncontact      {}, {} entries, folded in {:.1} us\nstate        {} bytes stored, decoded in {:.2} us\niterations   {} per purpose",
            self.policy_version,
            if self.optimized {
                ""
            } else {
                "; DEBUG BUILD: use a release build for real figures"
            },
            self.contact,
            self.entries,
            self.fold_us,
            self.state_bytes,
            self.decode_us,
            self.iterations
        );
        let width = self
            .results
            .iter()
            .map(|r| r.purpose.len() + r.channel.len() + 4)
            .max()
            .unwrap_or(0);
        for r in &self.results {
            let target = format!("{} on {}", r.purpose, r.channel);
            text.push_str(&format!(
                "\n{target:<width$}  {:<8}{:<26} {:>10.0} decisions/s  {:>7.0} ns/decision",
                if r.allowed { "allowed" } else { "denied" },
                r.rule_id,
                r.decisions_per_sec,
                r.ns_per_decision
            ));
        }
        text
    }
}

/// Times `policy::decide` in process: folds a history of `entries` entries of a German
/// B2C prospect with a confirmed double opt-in to email marketing (see
/// [`decide_history`]) with `ledger::projection::apply`, parses the built-in per-country
/// pack, and times `iterations` decisions for email marketing, email tracking and
/// profiling.
pub fn run_decide(bench: DecideBench) -> anyhow::Result<DecideBenchReport> {
    use std::hint::black_box;

    use crate::ledger::projection::{apply, decode_state, encode_state};
    use crate::ledger::ContactState;
    use crate::policy::{decide, Detail, PolicyPack, DEFAULT_PACK};

    anyhow::ensure!(bench.iterations > 0, "--iterations must be at least 1");
    let pack = PolicyPack::parse(DEFAULT_PACK)
        .map_err(|e| anyhow::anyhow!("the built-in policy pack: {e}"))?;
    let history = decide_history(&pack, bench.entries)?;
    let fold = |history: &[(crate::ledger::Entry, crate::ledger::Hash)]| {
        let mut state: Option<ContactState> = None;
        for (entry, hash) in history {
            state = Some(apply(state.as_ref(), entry, *hash)?);
        }
        state.ok_or_else(|| anyhow::anyhow!("no entries"))
    };
    let state = fold(&history)?;
    // Folds and decodes are timed over this many rounds each.
    const REPEATS: u32 = 1000;
    let started = Instant::now();
    for _ in 0..REPEATS {
        black_box(fold(black_box(&history))?);
    }
    let fold_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(REPEATS);
    // What every `Check` and every screened contact pays before deciding: the stored
    // state record read back.
    let record = encode_state(&state);
    let started = Instant::now();
    for _ in 0..REPEATS {
        black_box(decode_state::<ContactState>(black_box(&record)).map_err(anyhow::Error::msg)?);
    }
    let decode_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(REPEATS);

    let at = Utc::now();
    let mut results = Vec::new();
    for (purpose, channel) in [
        (CHECK_PURPOSE, CHECK_CHANNEL),
        ("email_tracking", "email"),
        ("profiling", "email"),
    ] {
        pack.check_target("purpose", purpose, "channel", channel)?;
        let explained = Detail::Explained;
        let decision = decide(&pack, &state, purpose, channel, at, explained);
        for _ in 0..bench.iterations.min(1000) {
            black_box(decide(&pack, &state, purpose, channel, at, explained));
        }
        let started = Instant::now();
        for _ in 0..bench.iterations {
            black_box(decide(
                black_box(&pack),
                black_box(&state),
                black_box(purpose),
                black_box(channel),
                black_box(at),
                explained,
            ));
        }
        let seconds = started.elapsed().as_secs_f64();
        results.push(DecideResult {
            purpose: purpose.into(),
            channel: channel.into(),
            allowed: decision.allowed,
            rule_id: decision.rule_id.into(),
            decisions_per_sec: bench.iterations as f64 / seconds,
            ns_per_decision: seconds * 1e9 / bench.iterations as f64,
        });
    }
    Ok(DecideBenchReport {
        workload: "decide".into(),
        optimized: !cfg!(debug_assertions),
        policy_version: pack.version.clone(),
        contact: "DE B2C prospect, email marketing consent confirmed by double opt-in".into(),
        entries: history.len(),
        fold_us,
        state_bytes: record.len(),
        decode_us,
        iterations: bench.iterations,
        results,
    })
}

/// Entries of one contact, as the ledger would store them: a German B2C prospect from a
/// web form, held on legitimate interests, who signed up to the newsletter with a
/// checkbox and confirmed by double opt-in, consented to email tracking, and whose lead
/// scoring rests on legitimate interests; then preference-centre changes on sales
/// outreach and SMS up to `count` entries (at least 8).
fn decide_history(
    pack: &crate::policy::PolicyPack,
    count: usize,
) -> anyhow::Result<Vec<(crate::ledger::Entry, crate::ledger::Hash)>> {
    use sha2::{Digest, Sha256};

    use crate::ledger::entry::{entry_hash, Entry, EntryBody};
    use crate::ledger::ZERO_HASH;
    use crate::model::{
        Audience, ConsentMethod, ContactId, Country, EventKind, LegalBasis, Lifecycle, Notice,
        Relationship, SourceKind,
    };

    let purpose = |id: &str| pack.registry.purpose("purpose", id);
    let channel = |id: &str| pack.registry.channel("channel", id);
    let notice = Notice {
        id: "newsletter-signup".into(),
        version: Some("3".into()),
        text_sha256: None,
        language: Some("de-DE".into()),
    };
    let grant = |p: &str, c: &str, method: ConsentMethod| -> anyhow::Result<EventKind> {
        Ok(EventKind::ConsentGranted {
            purpose: purpose(p)?,
            channel: channel(c)?,
            method,
            notice: notice.clone(),
            form_url: Some("https://example.com/newsletter".into()),
            expires_at: None,
        })
    };
    let withdraw = |p: &str, c: &str, method: ConsentMethod| -> anyhow::Result<EventKind> {
        Ok(EventKind::ConsentWithdrawn {
            purpose: purpose(p)?,
            channel: channel(c)?,
            method,
            form_url: None,
        })
    };
    let token = hex::encode(Sha256::digest(b"bench-decide-token"));
    let mut kinds = vec![
        EventKind::ContactRegistered {
            suppression_override: None,
            country: Country::parse("country", "DE")?,
            region: None,
            relationship: Relationship {
                audience: Audience::B2c,
                lifecycle: Lifecycle::Prospect,
            },
        },
        EventKind::AcquisitionRecorded {
            source_kind: SourceKind::WebForm,
            supplier: None,
            source_reference: "newsletter-form".into(),
            notice_sent_at: None,
        },
        EventKind::LegalBasisRecorded {
            purpose: purpose("storage")?,
            basis: LegalBasis::LegitimateInterests,
            justification: "LIA-2026-04 prospect database".into(),
        },
        grant(CHECK_PURPOSE, CHECK_CHANNEL, ConsentMethod::Checkbox)?,
        EventKind::DoubleOptInRequested {
            purpose: purpose(CHECK_PURPOSE)?,
            channel: channel(CHECK_CHANNEL)?,
            token_sha256: token.clone(),
            form_url: None,
        },
        EventKind::DoubleOptInConfirmed {
            purpose: purpose(CHECK_PURPOSE)?,
            channel: channel(CHECK_CHANNEL)?,
            token_sha256: token,
            form_url: None,
        },
        grant("email_tracking", "email", ConsentMethod::Checkbox)?,
        EventKind::LegalBasisRecorded {
            purpose: purpose("profiling")?,
            basis: LegalBasis::LegitimateInterests,
            justification: "LIA-2026-05 lead scoring".into(),
        },
    ];
    anyhow::ensure!(
        count >= kinds.len(),
        "--entries must be at least {}",
        kinds.len()
    );
    for n in 0..count - kinds.len() {
        kinds.push(match n % 4 {
            0 => grant("sales_outreach", "email", ConsentMethod::PreferenceCenter)?,
            1 => withdraw("sales_outreach", "email", ConsentMethod::UnsubscribeLink)?,
            2 => grant("sms_marketing", "sms", ConsentMethod::Checkbox)?,
            _ => withdraw("sms_marketing", "sms", ConsentMethod::PreferenceCenter)?,
        });
    }
    let contact = ContactId::parse("contact_id", "bench-decide-1")?;
    let start = Utc::now() - chrono::Duration::days(400);
    let mut prev_hash = ZERO_HASH;
    let mut history = Vec::with_capacity(kinds.len());
    for (i, event) in kinds.into_iter().enumerate() {
        let occurred_at = start + chrono::Duration::hours(30 * i as i64);
        let entry = Entry {
            // Other contacts' entries lie between this one's.
            seq: 1_000 + 37 * i as u64,
            contact_seq: i as u64 + 1,
            prev_hash,
            contact_id: contact.clone(),
            body: EntryBody {
                recorded_at: occurred_at + chrono::Duration::seconds(2),
                occurred_at,
                actor: "crm-sync".into(),
                idempotency_key: None,
                personal_data_sha256: None,
                event,
            },
        };
        prev_hash = entry_hash(&entry.encode());
        history.push((entry, prev_hash));
    }
    Ok(history)
}
