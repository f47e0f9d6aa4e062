//! What the fuzz targets share: the shipped policy packs, a small in-memory ledger that
//! records validated events the way the writer does, and a sweep of every decision a pack
//! can make for a contact. Each target asserts properties, not only the absence of panics.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, TimeZone, Utc};
use consent_ledger::cli::from_json;
use consent_ledger::ledger::entry::entry_hash;
use consent_ledger::ledger::projection;
use consent_ledger::ledger::{ContactState, Entry, Hash, ZERO_HASH};
use consent_ledger::model::{ContactId, Registry, Submission};
use consent_ledger::policy::{decide, Detail, PolicyPack};
use consent_ledger::proto::v1 as pb;
use consent_ledger::service::convert::submission_from_proto;

/// The receive time every target validates against, fixed so runs are reproducible.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0)
        .single()
        .expect("a valid fixed time")
}

/// The policy packs shipped in `deploy/policy/`.
pub fn shipped_packs() -> &'static [PolicyPack] {
    static PACKS: OnceLock<Vec<PolicyPack>> = OnceLock::new();
    PACKS.get_or_init(|| {
        [
            include_str!("../../deploy/policy/per-country.toml"),
            include_str!("../../deploy/policy/conservative.toml"),
        ]
        .iter()
        .map(|text| PolicyPack::parse(text).expect("the shipped packs parse"))
        .collect()
    })
}

/// Contacts' chains and states, kept as the writer keeps them.
#[derive(Debug, Default)]
pub struct MiniLedger {
    stored: Vec<Vec<u8>>,
    heads: HashMap<ContactId, (u64, Hash)>,
    states: HashMap<ContactId, ContactState>,
}

impl MiniLedger {
    /// Records a validated submission as the writer would, at `recorded_at`. The entry's
    /// stored bytes must decode back to the same entry. Returns whether the projection
    /// accepted it (a refused event is not recorded, as over the API).
    pub fn append(&mut self, submission: &Submission, recorded_at: DateTime<Utc>) -> bool {
        let event = &submission.event;
        let (contact_seq, prev_hash) = self
            .heads
            .get(&event.contact_id)
            .map_or((1, ZERO_HASH), |&(seq, hash)| (seq + 1, hash));
        // Only the presence of a personal-data digest matters to the projection, not the
        // sealed record it is of.
        let sealed = submission.personal.as_ref().map(|_| &b"sealed record"[..]);
        let entry = Entry::recording(
            (self.stored.len() as u64 + 1, contact_seq, prev_hash),
            event,
            "fuzz",
            recorded_at,
            sealed,
        );
        let bytes = entry.encode();
        let decoded = Entry::decode(&bytes).expect("an entry built from a valid event decodes");
        assert_eq!(decoded, entry, "stored bytes must decode to the entry");
        let hash = entry_hash(&bytes);
        let Ok(next) = projection::apply(self.states.get(&event.contact_id), &entry, hash) else {
            return false;
        };
        assert_eq!(next.head_contact_seq, contact_seq);
        assert_eq!(next.head_hash, hash);
        self.stored.push(bytes);
        self.heads
            .insert(event.contact_id.clone(), (contact_seq, hash));
        self.states.insert(event.contact_id.clone(), next);
        true
    }

    /// Every recorded entry's stored bytes, in ledger order (seq 1 first).
    pub fn stored(&self) -> &[Vec<u8>] {
        &self.stored
    }

    /// Every contact's current state.
    pub fn states(&self) -> impl Iterator<Item = &ContactState> {
        self.states.values()
    }
}

/// Validates and records each event of `batch` (at most `MAX_EVENTS`), one millisecond
/// apart, under `registry`; events that fail validation or the projection are skipped.
pub fn record_batch(batch: pb::AppendBatchRequest, registry: &Registry) -> MiniLedger {
    let mut ledger = MiniLedger::default();
    for (i, event) in batch.events.into_iter().take(MAX_EVENTS).enumerate() {
        let recorded_at = now() + Duration::milliseconds(i as i64);
        if let Ok(submission) = submission_from_proto(event, registry, recorded_at) {
            ledger.append(&submission, recorded_at);
        }
    }
    ledger
}

/// Events of one batch the targets look at; more only slows an iteration down.
pub const MAX_EVENTS: usize = 64;

/// The seed history (`seeds/request_validation/history.json`): contacts in several
/// countries with consents, confirmations, withdrawals, objections and a move.
pub fn seed_history() -> &'static MiniLedger {
    static LEDGER: OnceLock<MiniLedger> = OnceLock::new();
    LEDGER.get_or_init(|| {
        let text = include_str!("../seeds/request_validation/history.json");
        let batch =
            from_json::<pb::AppendBatchRequest>("consentledger.v1.AppendBatchRequest", text)
                .expect("the seed history is an AppendBatchRequest");
        let ledger = record_batch(batch, &shipped_packs()[0].registry);
        assert!(
            ledger.states().count() >= 4,
            "the seed history registers its contacts"
        );
        ledger
    })
}

/// Decides every purpose on every channel `pack` decides, for `state`, now and a year on,
/// and checks what every decision must carry: a rule id and a reason a person can read,
/// and evidence for anything allowed; a brief decision is the same one, unexplained.
pub fn decide_everything(pack: &PolicyPack, state: &ContactState) {
    for (purpose, policy) in &pack.purposes {
        for channel in &policy.channels {
            pack.check_target("purpose", purpose, "channel", channel)
                .expect("every channel a pack decides a purpose on is a valid target");
            for at in [now(), now() + Duration::days(365)] {
                let decision = decide(pack, state, purpose, channel, at, Detail::Explained);
                assert!(!decision.rule_id.is_empty(), "a decision names its rule");
                assert!(!decision.reasons.is_empty(), "a decision gives a reason");
                if decision.allowed {
                    assert!(
                        !decision.evidence.is_empty(),
                        "an allowed decision ({}) relies on evidence",
                        decision.rule_id
                    );
                }
                let brief = decide(pack, state, purpose, channel, at, Detail::Brief);
                assert_eq!(
                    (brief.allowed, brief.rule_id, brief.regime),
                    (decision.allowed, decision.rule_id, decision.regime),
                    "a brief decision is the explained one"
                );
                assert!(brief.reasons.is_empty() && brief.warnings.is_empty());
                assert!(brief.evidence.is_empty());
            }
        }
    }
}
