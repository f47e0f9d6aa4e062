//! The server's Prometheus metrics: counters and histograms the writer, the services and
//! the auth layer update as they work, and gauges set from the ledger when scraped. One
//! registry per server (no global state). Labels never carry personal data or contact ids.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `kind` label: an event kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabel {
    /// Snake-case event kind.
    pub kind: &'static str,
}

/// Labels of an eligibility decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `allowed` or `denied`.
    pub outcome: &'static str,
    /// The deciding rule id.
    pub rule: String,
}

/// Labels of a refused call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AuthLabels {
    /// The RPC path.
    pub rpc: String,
    /// `unauthenticated` or `permission_denied`.
    pub code: &'static str,
}

/// Labels of the request gauges.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// Request kind.
    pub kind: &'static str,
    /// Regime.
    pub regime: &'static str,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Entries appended, by event kind.
    pub appends: Family<KindLabel, Counter>,
    /// Events per group commit.
    pub group_events: Histogram,
    /// Events per `AppendBatch` request.
    pub batch_events: Histogram,
    /// Seconds to write and fsync one group commit.
    pub commit_seconds: Histogram,
    /// Eligibility decisions by outcome and rule (`Check` and `Screen`).
    pub decisions: Family<DecisionLabels, Counter>,
    /// Contacts decided by `Screen`.
    pub screened: Counter,
    /// Streamed responses stopped because the caller read nothing for `request_timeout`.
    pub stalled_streams: Counter,
    /// Calls refused by authentication or authorization, by RPC.
    pub auth_failures: Family<AuthLabels, Counter>,
    /// Entries in the ledger (set when scraped).
    pub tree_size: Gauge,
    /// Bytes free on the data directory's disk (set when scraped).
    pub disk_free_bytes: Gauge,
    /// 1 while appends are refused for want of disk space (set when scraped).
    pub appends_refused_for_space: Gauge,
    /// Seconds since the latest signed checkpoint (set when scraped; -1 without one).
    pub checkpoint_age_seconds: Gauge<f64, AtomicU64>,
    /// Entries not yet covered by a signed checkpoint (set when scraped).
    pub entries_after_checkpoint: Gauge,
    /// Storage engine figures (set when scraped): see [`crate::store::EngineStats`].
    pub storage_pending_compaction_bytes: Gauge,
    /// Compactions running.
    pub storage_running_compactions: Gauge,
    /// Memtable flushes running.
    pub storage_running_flushes: Gauge,
    /// Bytes in memtables.
    pub storage_memtable_bytes: Gauge,
    /// Bytes of live table files.
    pub storage_table_file_bytes: Gauge,
    /// Bytes in use in the block cache.
    pub storage_block_cache_bytes: Gauge,
    /// The block cache's capacity.
    pub storage_block_cache_capacity_bytes: Gauge,
    /// 1 while the engine stops writes until compaction catches up.
    pub storage_writes_stopped: Gauge,
    /// Lookups of a contact's current state found in the state cache.
    pub state_cache_hits: Counter,
    /// Lookups of a contact's current state read from the store instead.
    pub state_cache_misses: Counter,
    /// Estimated bytes held by the state cache (set when scraped).
    pub state_cache_bytes: Gauge,
    /// The state cache's capacity (set when scraped).
    pub state_cache_capacity_bytes: Gauge,
    /// Open data-subject requests by kind and regime (set when scraped).
    pub open_requests: Family<RequestLabels, Gauge>,
    /// Open requests past their due date, by kind and regime (set when scraped).
    pub overdue_requests: Family<RequestLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered under the `consent_ledger` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("consent_ledger");
        let metrics = Self {
            appends: Family::default(),
            group_events: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            batch_events: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            decisions: Family::default(),
            screened: Counter::default(),
            stalled_streams: Counter::default(),
            auth_failures: Family::default(),
            tree_size: Gauge::default(),
            disk_free_bytes: Gauge::default(),
            appends_refused_for_space: Gauge::default(),
            checkpoint_age_seconds: Gauge::default(),
            entries_after_checkpoint: Gauge::default(),
            storage_pending_compaction_bytes: Gauge::default(),
            storage_running_compactions: Gauge::default(),
            storage_running_flushes: Gauge::default(),
            storage_memtable_bytes: Gauge::default(),
            storage_table_file_bytes: Gauge::default(),
            storage_block_cache_bytes: Gauge::default(),
            storage_block_cache_capacity_bytes: Gauge::default(),
            storage_writes_stopped: Gauge::default(),
            state_cache_hits: Counter::default(),
            state_cache_misses: Counter::default(),
            state_cache_bytes: Gauge::default(),
            state_cache_capacity_bytes: Gauge::default(),
            open_requests: Family::default(),
            overdue_requests: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "appends",
            "Entries appended, by event kind",
            metrics.appends.clone(),
        );
        registry.register(
            "group_commit_events",
            "Events per group commit (one fsync each)",
            metrics.group_events.clone(),
        );
        registry.register(
            "append_batch_events",
            "Events per AppendBatch request",
            metrics.batch_events.clone(),
        );
        registry.register(
            "commit_seconds",
            "Time to write and fsync one group commit",
            metrics.commit_seconds.clone(),
        );
        registry.register(
            "decisions",
            "Eligibility decisions by outcome and deciding rule",
            metrics.decisions.clone(),
        );
        registry.register(
            "screened_contacts",
            "Contacts decided by Screen",
            metrics.screened.clone(),
        );
        registry.register(
            "stalled_streams",
            "Streamed responses (Screen, VerifyLedger, ExportContact) stopped because the caller read nothing for request_timeout",
            metrics.stalled_streams.clone(),
        );
        registry.register(
            "auth_failures",
            "Calls refused by authentication or authorization, by RPC",
            metrics.auth_failures.clone(),
        );
        registry.register(
            "tree_size",
            "Entries in the ledger",
            metrics.tree_size.clone(),
        );
        registry.register(
            "disk_free_bytes",
            "Bytes free on the data directory's disk",
            metrics.disk_free_bytes.clone(),
        );
        registry.register(
            "appends_refused_for_space",
            "1 while appends are refused because the data directory's disk is below its minimum free space or full",
            metrics.appends_refused_for_space.clone(),
        );
        registry.register(
            "checkpoint_age_seconds",
            "Seconds since the latest signed checkpoint (-1 without one)",
            metrics.checkpoint_age_seconds.clone(),
        );
        registry.register(
            "entries_after_checkpoint",
            "Entries not yet covered by a signed checkpoint",
            metrics.entries_after_checkpoint.clone(),
        );
        for (name, help, gauge) in [
            (
                "storage_pending_compaction_bytes",
                "Bytes the storage engine estimates compaction must still rewrite (the debt of a bulk load; reads pay for it until it is worked off)",
                &metrics.storage_pending_compaction_bytes,
            ),
            (
                "storage_running_compactions",
                "Storage compactions running",
                &metrics.storage_running_compactions,
            ),
            (
                "storage_running_flushes",
                "Memtable flushes running",
                &metrics.storage_running_flushes,
            ),
            (
                "storage_memtable_bytes",
                "Bytes in memtables (logged, not yet in table files)",
                &metrics.storage_memtable_bytes,
            ),
            (
                "storage_table_file_bytes",
                "Bytes of live table files",
                &metrics.storage_table_file_bytes,
            ),
            (
                "storage_block_cache_bytes",
                "Bytes in use in the block cache",
                &metrics.storage_block_cache_bytes,
            ),
            (
                "storage_block_cache_capacity_bytes",
                "Capacity of the block cache (block_cache_mb)",
                &metrics.storage_block_cache_capacity_bytes,
            ),
            (
                "storage_writes_stopped",
                "1 while the storage engine stops writes until compaction catches up",
                &metrics.storage_writes_stopped,
            ),
            (
                "state_cache_bytes",
                "Estimated bytes of decoded contact states held in memory",
                &metrics.state_cache_bytes,
            ),
            (
                "state_cache_capacity_bytes",
                "Capacity of the contact state cache (state_cache_mib)",
                &metrics.state_cache_capacity_bytes,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "state_cache_hits",
            "Lookups of a contact's current state (Check, the writer) answered from memory",
            metrics.state_cache_hits.clone(),
        );
        registry.register(
            "state_cache_misses",
            "Lookups of a contact's current state read from the storage engine",
            metrics.state_cache_misses.clone(),
        );
        registry.register(
            "open_requests",
            "Open data-subject requests by kind and regime",
            metrics.open_requests.clone(),
        );
        registry.register(
            "overdue_requests",
            "Open data-subject requests past their due date, by kind and regime",
            metrics.overdue_requests.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts `count` decisions with the same outcome and rule.
    pub fn decided(&self, allowed: bool, rule: &str, count: u64) {
        self.decisions
            .get_or_create(&DecisionLabels {
                outcome: if allowed { "allowed" } else { "denied" },
                rule: rule.to_owned(),
            })
            .inc_by(count);
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_their_labels() {
        let metrics = Metrics::new();
        metrics
            .appends
            .get_or_create(&KindLabel {
                kind: "consent_granted",
            })
            .inc();
        metrics.decided(false, "consent.missing", 1);
        metrics.commit_seconds.observe(0.002);
        let text = metrics.encode();
        assert!(
            text.contains("consent_ledger_appends_total{kind=\"consent_granted\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "consent_ledger_decisions_total{outcome=\"denied\",rule=\"consent.missing\"} 1"
        ));
        assert!(text.contains("consent_ledger_commit_seconds_count 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}
