//! `consentledger.v1.EligibilityService`: explained decisions for one contact or a
//! campaign list, now or at a past time, and the policy packs they are made under.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::instrument;

use super::convert::{client_contact_id, record_timestamp, timestamp, to_timestamp};
use super::decision_wire::{DecisionFields, DecisionsWriter};
use super::outbox::{outbox, ResponseStream};
use super::{blocking, caller};
use crate::ledger::projection::Cutoff;
use crate::ledger::ContactState;
use crate::model::{ContactId, Event, EventKind, Registry, Submission, ValidationError};
use crate::policy::{
    decide, Activation, Decision, Detail, PolicyBook, PolicyError, PolicyPack, Regime,
};
use crate::proto::v1 as pb;
use crate::proto::v1::eligibility_service_server::EligibilityService;
use crate::store::{AppendError, Store, StoreError, WriterHandle};

/// Contacts decided per storage read in `Screen`.
const SCREEN_CHUNK: usize = 1024;
/// Chunks of one `Screen` call decided at once.
const SCREEN_PARALLEL: usize = 2;
/// Decision batches `Screen` may have ready before the client reads them.
const SCREEN_BUFFER: usize = 16;
/// Largest policy text accepted, in bytes.
const MAX_POLICY_TEXT: usize = 1 << 20;

/// The policy packs activated in the ledger, shared by every service; swapped whole when
/// a pack is activated, so a reader always sees one consistent book.
#[derive(Debug, Clone)]
pub struct Policies {
    book: Arc<RwLock<Arc<PolicyBook>>>,
    /// One activation at a time, so two never race for the same chain head.
    activating: Arc<tokio::sync::Mutex<()>>,
}

/// Why a policy pack was not activated.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The pack is malformed or contradictory.
    #[error("policy: {0}")]
    Invalid(#[from] PolicyError),
    /// Storage failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger refused the activation entry.
    #[error(transparent)]
    Rejected(#[from] AppendError),
}

impl From<ActivateError> for Status {
    fn from(err: ActivateError) -> Self {
        match err {
            ActivateError::Invalid(e) => Status::invalid_argument(format!("text: {e}")),
            ActivateError::Store(e) => e.into(),
            ActivateError::Rejected(e) => e.into(),
        }
    }
}

impl Policies {
    /// Loads every activation from the ledger. When `configured` (a pack's text) is given
    /// and differs from the active pack, or when no pack was ever activated (then the
    /// default pack is used), it is activated first, as `actor`.
    pub async fn load(
        store: &Store,
        writer: &WriterHandle,
        actor: &str,
        configured: Option<&str>,
    ) -> Result<Self, ActivateError> {
        let book = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.policy_book())
                .await
                .map_err(|_| StoreError::Corrupt("the policy loading task failed".into()))??
        };
        let empty = book.current().is_none();
        let policies = Self {
            book: Arc::new(RwLock::new(Arc::new(book))),
            activating: Arc::new(tokio::sync::Mutex::new(())),
        };
        let text = configured.or(empty.then_some(crate::policy::DEFAULT_PACK));
        if let Some(text) = text {
            policies.activate(store, writer, actor, text).await?;
        }
        Ok(policies)
    }

    /// The book as it stands.
    pub fn book(&self) -> Arc<PolicyBook> {
        self.book
            .read()
            .map(|book| Arc::clone(&book))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    /// The purposes and channels events may name: those of the active pack.
    pub fn registry(&self) -> Registry {
        self.book()
            .current()
            .map_or_else(Registry::default, |a| a.pack.registry.clone())
    }

    /// Validates `text` and makes it the active pack: its text is stored, then a
    /// `policy_activated` entry is appended and durable, then decisions use it. Returns
    /// the activation and whether it is new (`false`: the same text was already active).
    pub async fn activate(
        &self,
        store: &Store,
        writer: &WriterHandle,
        actor: &str,
        text: &str,
    ) -> Result<(Activation, bool), ActivateError> {
        let pack = PolicyPack::parse(text)?;
        let _one_at_a_time = self.activating.lock().await;
        if let Some(current) = self.book().current() {
            if current.pack.sha256 == pack.sha256 {
                return Ok((current.clone(), false));
            }
        }
        {
            let (store, text, pack) = (store.clone(), text.to_owned(), pack.clone());
            tokio::task::spawn_blocking(move || store.save_policy_text(&pack, &text))
                .await
                .map_err(|_| StoreError::Corrupt("the policy saving task failed".into()))??;
        }
        let event = Event {
            contact_id: ContactId::policy_chain(),
            idempotency_key: None,
            occurred_at: None,
            kind: EventKind::PolicyActivated {
                version: pack.version.clone(),
                text_sha256: hex::encode(pack.sha256),
            },
        };
        let receipt = writer
            .append(
                actor,
                vec![Submission {
                    event,
                    personal: None,
                    entropy: None,
                }],
            )
            .await?
            .pop()
            .ok_or(StoreError::WriterStopped)??;
        let activation = Activation {
            pack: Arc::new(pack),
            seq: receipt.seq,
            recorded_at: receipt.recorded_at,
        };
        let mut next = PolicyBook::clone(&self.book());
        next.push(activation.clone());
        match self.book.write() {
            Ok(mut book) => *book = Arc::new(next),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
        }
        tracing::info!(
            version = %activation.pack.version,
            seq = activation.seq,
            "policy pack activated"
        );
        Ok((activation, true))
    }
}

/// What to decide: a purpose on a channel, now or at a time on a basis.
#[derive(Debug, Clone)]
struct Target {
    purpose: String,
    channel: String,
    at: Option<(DateTime<Utc>, Cutoff)>,
    basis: i32,
    /// Answers carry only the contact, the outcome, the rule and the regime.
    brief: bool,
}

impl Target {
    fn from_proto(
        purpose: String,
        channel: String,
        at: Option<prost_types::Timestamp>,
        basis: i32,
        field: &str,
    ) -> Result<Self, ValidationError> {
        let at = at
            .map(|t| timestamp(&format!("{field}at"), t))
            .transpose()?;
        let basis = pb::TimeBasis::try_from(basis).map_err(|_| {
            ValidationError::new(
                format!("{field}time_basis"),
                format!("unknown time basis {basis}"),
            )
        })?;
        if at.is_none() && basis != pb::TimeBasis::Unspecified {
            return Err(ValidationError::new(
                format!("{field}time_basis"),
                "applies only to a decision for a past time: set `at` too",
            ));
        }
        let at = at.map(|at| {
            let cutoff = match basis {
                pb::TimeBasis::Recorded => Cutoff::Recorded(at),
                pb::TimeBasis::Effective | pb::TimeBasis::Unspecified => Cutoff::Occurred(at),
            };
            (at, cutoff)
        });
        Ok(Self {
            purpose,
            channel,
            at,
            basis: match (at.is_some(), basis) {
                (false, _) => pb::TimeBasis::Unspecified as i32,
                (true, pb::TimeBasis::Recorded) => pb::TimeBasis::Recorded as i32,
                (true, _) => pb::TimeBasis::Effective as i32,
            },
            brief: false,
        })
    }

    /// The activation the decision is made under, with the target checked against it.
    fn activation(
        &self,
        book: &PolicyBook,
        field: &str,
    ) -> Result<(Activation, Option<String>), Status> {
        let (activation, note) = match self.at {
            None => (book.current(), None),
            Some((at, _)) => match book.in_force_at(at) {
                Some((activation, true)) => (Some(activation), None),
                Some((activation, false)) => (
                    Some(activation),
                    Some(format!(
                        "no policy was active yet at {}; the first one activated ({}, seq {}) was applied",
                        at.to_rfc3339(),
                        activation.pack.version,
                        activation.seq
                    )),
                ),
                None => (None, None),
            },
        };
        let activation =
            activation.ok_or_else(|| Status::unavailable("no policy pack is active yet"))?;
        activation.pack.check_target(
            &format!("{field}purpose"),
            &self.purpose,
            &format!("{field}channel"),
            &self.channel,
        )?;
        Ok((activation.clone(), note))
    }
}

/// Everything one answer needs besides the contact's state.
struct Frame<'a> {
    target: &'a Target,
    activation: &'a Activation,
    note: Option<&'a str>,
    tree_size: u64,
    now: DateTime<Utc>,
}

/// How one contact was decided.
enum Outcome {
    /// By the policy's rules.
    Decided(Decision),
    /// By no rule: the id is malformed (`contact.invalid_id`) or names no contact at the
    /// time (`contact.unknown`). The reason is written out only for a full answer.
    Refused {
        rule_id: &'static str,
        reason: Option<String>,
    },
}

impl Outcome {
    /// The deciding rule and whether it allowed.
    fn rule(&self) -> (&'static str, bool) {
        match self {
            Self::Decided(decision) => (decision.rule_id, decision.allowed),
            Self::Refused { rule_id, .. } => (rule_id, false),
        }
    }
}

impl<'a> Frame<'a> {
    fn new(
        target: &'a Target,
        activation: &'a Activation,
        note: Option<&'a str>,
        tree_size: u64,
    ) -> Self {
        Self {
            target,
            activation,
            note,
            tree_size,
            now: Utc::now(),
        }
    }

    fn decided_for(&self) -> DateTime<Utc> {
        self.target.at.map_or(self.now, |(at, _)| at)
    }

    /// What every answer in this frame shares, whatever decided it.
    fn shared(&self) -> pb::DecisionFrame {
        pb::DecisionFrame {
            purpose: self.target.purpose.clone(),
            channel: self.target.channel.clone(),
            policy_version: self.activation.pack.version.clone(),
            policy_sha256: self.activation.pack.sha256.to_vec(),
            tree_size: self.tree_size,
            decided_for: Some(to_timestamp(self.decided_for())),
            time_basis: self.target.basis,
        }
    }

    /// How the contact whose state at the target time is `state` is decided.
    fn outcome(&self, state: Option<&ContactState>) -> Outcome {
        let Some(state) = state else {
            return self.refused("contact.unknown", || match self.target.at {
                None => "no contact with this id is registered".into(),
                Some((at, _)) => {
                    format!("the contact was not registered as of {}", at.to_rfc3339())
                }
            });
        };
        Outcome::Decided(decide(
            &self.activation.pack,
            state,
            &self.target.purpose,
            &self.target.channel,
            self.decided_for(),
            if self.target.brief {
                Detail::Brief
            } else {
                Detail::Explained
            },
        ))
    }

    fn refused(&self, rule_id: &'static str, reason: impl FnOnce() -> String) -> Outcome {
        Outcome::Refused {
            rule_id,
            reason: (!self.target.brief).then(reason),
        }
    }

    /// The `Check` answer for a contact whose state at the target time is `state`: in
    /// full, with what a batch's frame would hold.
    fn answer(&self, contact: String, state: Option<&ContactState>) -> pb::Decision {
        debug_assert!(!self.target.brief, "a Check answer is never brief");
        let mut out = pb::Decision {
            contact_id: contact,
            ..Default::default()
        };
        self.shared().fill(&mut out);
        match self.outcome(state) {
            Outcome::Decided(decision) => fill_decision(&mut out, decision),
            Outcome::Refused { rule_id, reason } => {
                out.rule_id = rule_id.to_owned();
                out.reasons.extend(reason);
            }
        }
        out.warnings.extend(self.note.map(str::to_owned));
        out
    }

    /// Writes `outcome` into a `Screen` batch, whose frame carries what it shares.
    fn write(&self, contact: &str, outcome: &Outcome, out: &mut DecisionsWriter) {
        let (rule_id, allowed) = outcome.rule();
        let mut fields = DecisionFields {
            contact_id: contact,
            allowed,
            rule_id,
            regime: 0,
            country: "",
            audience: "",
            reasons: &[],
            warnings: &[],
            note: None,
            evidence: &[],
        };
        match outcome {
            Outcome::Decided(decision) => {
                fields.regime = regime_to_proto(decision.regime);
                if !self.target.brief {
                    fields.country = decision.country.as_str();
                    fields.audience = decision.audience.name();
                    fields.reasons = &decision.reasons;
                    fields.warnings = &decision.warnings;
                    fields.note = self.note;
                    fields.evidence = &decision.evidence;
                }
            }
            Outcome::Refused { reason, .. } => {
                fields.reasons = reason.as_slice();
                if !self.target.brief {
                    fields.note = self.note;
                }
            }
        }
        out.push(&fields);
    }
}

fn regime_to_proto(regime: Option<Regime>) -> i32 {
    let regime = match regime {
        None => pb::Regime::Unspecified,
        Some(Regime::OptOut) => pb::Regime::OptOut,
        Some(Regime::OptIn) => pb::Regime::OptIn,
        Some(Regime::DoubleOptIn) => pb::Regime::DoubleOptIn,
        Some(Regime::Excluded) => pb::Regime::Excluded,
    };
    regime as i32
}

fn fill_decision(out: &mut pb::Decision, decision: Decision) {
    out.allowed = decision.allowed;
    out.rule_id = decision.rule_id.to_owned();
    out.regime = regime_to_proto(decision.regime);
    out.country = decision.country.to_string();
    out.audience = decision.audience.name().into();
    out.reasons = decision.reasons;
    out.warnings = decision.warnings;
    out.evidence = decision
        .evidence
        .iter()
        .map(|e| pb::Evidence {
            role: e.role.name().into(),
            seq: e.entry.seq,
            contact_seq: e.entry.contact_seq,
            entry_hash: e.entry.hash.to_vec(),
            occurred_at: Some(record_timestamp(e.entry.occurred_at)),
            recorded_at: Some(record_timestamp(e.entry.recorded_at)),
        })
        .collect();
}

/// The state of each contact at the target time (one snapshot for "now"), and the tree
/// size read with them.
fn states_for(
    store: &Store,
    contacts: &[ContactId],
    target: &Target,
) -> Result<(Vec<Option<ContactState>>, u64), StoreError> {
    match target.at {
        None => store.contact_states_with_size(contacts),
        Some((_, cutoff)) => store.contact_states_at(contacts, cutoff),
    }
}

fn policy_to_proto(activation: &Activation, active: bool, text: Option<String>) -> pb::Policy {
    pb::Policy {
        version: activation.pack.version.clone(),
        description: activation.pack.description.clone().unwrap_or_default(),
        sha256: activation.pack.sha256.to_vec(),
        text: text.unwrap_or_default(),
        activated_seq: activation.seq,
        activated_at: Some(to_timestamp(activation.recorded_at)),
        active,
    }
}

/// The eligibility service.
#[derive(Debug, Clone)]
pub struct EligibilityApi {
    store: Store,
    writer: WriterHandle,
    policies: Policies,
    /// How long a streamed response waits for its caller to read (`request_timeout`).
    stall: Duration,
}

impl EligibilityApi {
    /// A service deciding from `store` under `policies`; activations go through `writer`.
    /// A `Screen` caller that reads nothing for `stall` has its screening stopped.
    pub fn new(store: Store, writer: WriterHandle, policies: Policies, stall: Duration) -> Self {
        Self {
            store,
            writer,
            policies,
            stall,
        }
    }
}

#[tonic::async_trait]
impl EligibilityService for EligibilityApi {
    // At `debug`, as the other high-rate calls (see `LedgerApi::append`).
    #[instrument(level = "debug", skip_all, fields(contact))]
    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::Decision>, Status> {
        let request = request.into_inner();
        let contact = client_contact_id("contact_id", &request.contact_id)?;
        tracing::Span::current().record("contact", contact.as_str());
        let target = Target::from_proto(
            request.purpose,
            request.channel,
            request.at,
            request.time_basis,
            "",
        )?;
        let (activation, note) = target.activation(&self.policies.book(), "")?;
        // "Now" is one lookup: answered inline when the state cache, memtables or the
        // block cache hold it, so the common case never waits for a blocking thread.
        if target.at.is_none() {
            if let Some((Some(state), tree_size)) =
                self.store.contact_state_from_memory(&contact)?
            {
                let frame = Frame::new(&target, &activation, note.as_deref(), tree_size);
                let decision = frame.answer(request.contact_id, Some(&state));
                self.store
                    .metrics()
                    .decided(decision.allowed, &decision.rule_id, 1);
                return Ok(Response::new(decision));
            }
        }
        let store = self.store.clone();
        let decision = blocking(move || {
            let (state, tree_size) = match target.at {
                None => store.contact_state_with_size(&contact)?,
                Some((_, cutoff)) => {
                    let (mut states, tree_size) =
                        store.contact_states_at(std::slice::from_ref(&contact), cutoff)?;
                    (states.pop().flatten().map(Arc::new), tree_size)
                }
            };
            // Unknown now and then: the contact does not exist. Unknown only then: an answer.
            if state.is_none() && store.chain_head(&contact)?.is_none() {
                return Err(Status::not_found(format!(
                    "contact_id: no contact {contact} is registered"
                )));
            }
            let frame = Frame::new(&target, &activation, note.as_deref(), tree_size);
            Ok(frame.answer(request.contact_id, state.as_deref()))
        })
        .await?;
        self.store
            .metrics()
            .decided(decision.allowed, &decision.rule_id, 1);
        Ok(Response::new(decision))
    }

    type ScreenStream = ResponseStream<pb::ScreenResponse>;

    #[instrument(level = "debug", skip_all)]
    async fn screen(
        &self,
        request: Request<Streaming<pb::ScreenRequest>>,
    ) -> Result<Response<Self::ScreenStream>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.ok_or_else(|| {
            ValidationError::new("target", "the first message must name the target")
        })?;
        let wanted = first
            .target
            .ok_or_else(|| ValidationError::new("target", "is required in the first message"))?;
        let mut target = Target::from_proto(
            wanted.purpose,
            wanted.channel,
            wanted.at,
            wanted.time_basis,
            "target.",
        )?;
        target.brief = wanted.brief;
        let (activation, note) = target.activation(&self.policies.book(), "target.")?;
        let store = self.store.clone();
        let (outbox, stream) = outbox("Screen", SCREEN_BUFFER, self.stall, store.metrics().clone());
        let mut summary = pb::ScreenSummary {
            policy_version: activation.pack.version.clone(),
            policy_sha256: activation.pack.sha256.to_vec(),
            ..Default::default()
        };
        let decide_chunk = {
            let store = store.clone();
            move |ids: Vec<String>| {
                let (store, target, activation, note) = (
                    store.clone(),
                    target.clone(),
                    activation.clone(),
                    note.clone(),
                );
                blocking(move || screen_chunk(&store, &target, &activation, note.as_deref(), ids))
            }
        };
        // Chunks are decided on blocking threads, several at once, and sent in order.
        let mut decided = id_chunks(first.contact_ids, incoming)
            .map(move |chunk| {
                let decide_chunk = decide_chunk.clone();
                async move { decide_chunk(chunk?).await }
            })
            .buffered(SCREEN_PARALLEL)
            .boxed();
        tokio::spawn(async move {
            let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
            while let Some(result) = decided.next().await {
                let (batch, counts) = match result {
                    Ok(decided) => decided,
                    Err(status) => {
                        outbox.send(Err(status)).await;
                        return;
                    }
                };
                let tree_size = batch.frame.as_ref().map_or(0, |frame| frame.tree_size);
                summary.tree_size = summary.tree_size.max(tree_size);
                let metrics = store.metrics();
                for ((rule, allowed), count) in counts {
                    summary.contacts += count;
                    if allowed {
                        summary.allowed += count;
                    } else {
                        summary.denied += count;
                    }
                    metrics.screened.inc_by(count);
                    metrics.decided(allowed, rule, count);
                    *by_rule.entry(rule.to_owned()).or_default() += count;
                }
                let batch = pb::ScreenResponse {
                    kind: Some(pb::screen_response::Kind::Decisions(batch)),
                };
                if !outbox.send(Ok(batch)).await {
                    return; // The caller went away or stopped reading.
                }
            }
            summary.by_rule = by_rule.into_iter().collect();
            if summary.contacts == 0 {
                match store.tree_head() {
                    Ok(head) => summary.tree_size = head.size,
                    Err(err) => {
                        outbox.send(Err(err.into())).await;
                        return;
                    }
                }
            }
            outbox
                .send(Ok(pb::ScreenResponse {
                    kind: Some(pb::screen_response::Kind::Summary(summary)),
                }))
                .await;
        });
        Ok(Response::new(stream))
    }

    #[instrument(skip_all)]
    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let request = request.into_inner();
        let book = self.policies.book();
        let activation = match (request.version.as_str(), request.at) {
            ("", None) => book
                .current()
                .ok_or_else(|| Status::unavailable("no policy pack is active yet"))?,
            (version, None) => book
                .activations()
                .iter()
                .rev()
                .find(|a| a.pack.version == version)
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "version: no policy pack with version {version:?} was activated"
                    ))
                })?,
            ("", Some(at)) => {
                let at = timestamp("at", at)?;
                match book.in_force_at(at) {
                    Some((activation, true)) => activation,
                    Some((first, false)) => {
                        return Err(Status::not_found(format!(
                        "at: no policy pack was active yet at {}; the first was activated at {}",
                        at.to_rfc3339(),
                        first.recorded_at.to_rfc3339()
                    )))
                    }
                    None => return Err(Status::unavailable("no policy pack is active yet")),
                }
            }
            (_, Some(_)) => {
                return Err(
                    ValidationError::new("at", "give either version or at, not both").into(),
                )
            }
        }
        .clone();
        let store = self.store.clone();
        let sha256 = activation.pack.sha256;
        let text = blocking(move || Ok(store.policy_text(&sha256)?)).await?;
        let active = book.current().is_some_and(|c| c.seq == activation.seq);
        Ok(Response::new(policy_to_proto(&activation, active, text)))
    }

    #[instrument(skip_all)]
    async fn list_policies(
        &self,
        _request: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let book = self.policies.book();
        let current = book.current().map(|c| c.seq);
        let policies = book
            .activations()
            .iter()
            .map(|a| policy_to_proto(a, Some(a.seq) == current, None))
            .collect();
        Ok(Response::new(pb::ListPoliciesResponse { policies }))
    }

    #[instrument(skip_all)]
    async fn activate_policy(
        &self,
        request: Request<pb::ActivatePolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let actor = caller(&request)?;
        let text = request.into_inner().text;
        if text.len() > MAX_POLICY_TEXT {
            return Err(ValidationError::new(
                "text",
                format!("a policy pack is at most {MAX_POLICY_TEXT} bytes"),
            )
            .into());
        }
        let (activation, _) = self
            .policies
            .activate(&self.store, &self.writer, &actor.name, &text)
            .await?;
        Ok(Response::new(policy_to_proto(
            &activation,
            true,
            Some(text),
        )))
    }
}

/// The contact ids of a `Screen` call in chunks of [`SCREEN_CHUNK`] (the last may be
/// shorter), read from the client only as fast as they are taken.
fn id_chunks(
    first: Vec<String>,
    incoming: Streaming<pb::ScreenRequest>,
) -> impl Stream<Item = Result<Vec<String>, Status>> + Send {
    futures::stream::unfold(
        (first, Some(incoming)),
        |(mut pending, mut incoming)| async move {
            while pending.len() < SCREEN_CHUNK {
                let Some(stream) = incoming.as_mut() else {
                    break;
                };
                match stream.message().await {
                    Ok(Some(more)) => pending.extend(more.contact_ids),
                    Ok(None) => incoming = None,
                    Err(status) => return Some((Err(status), (Vec::new(), None))),
                }
            }
            if pending.is_empty() {
                return None;
            }
            let rest = pending.split_off(pending.len().min(SCREEN_CHUNK));
            Some((Ok(pending), (rest, incoming)))
        },
    )
}

/// Decisions of one chunk per rule, and whether the rule allowed.
type RuleCounts = BTreeMap<(&'static str, bool), u64>;

/// Decides a chunk of a `Screen` call's ids: their answers in order, written into a batch
/// with the frame they share, and how many each rule decided.
fn screen_chunk(
    store: &Store,
    target: &Target,
    activation: &Activation,
    note: Option<&str>,
    ids: Vec<String>,
) -> Result<(pb::Decisions, RuleCounts), Status> {
    // Malformed ids are decisions too, so one bad row never ends a campaign's screening.
    let mut valid = Vec::with_capacity(ids.len());
    let malformed: Vec<Option<ValidationError>> = ids
        .iter()
        .map(|id| match client_contact_id("contact_ids", id) {
            Ok(contact) => {
                valid.push(contact);
                None
            }
            Err(err) => Some(err),
        })
        .collect();
    let (states, tree_size) = states_for(store, &valid, target)?;
    let frame = Frame::new(target, activation, note, tree_size);
    let mut states = states.into_iter();
    // A full decision takes about half a kilobyte, a brief one a few dozen bytes.
    let mut out = DecisionsWriter::with_capacity(ids.len() * if target.brief { 48 } else { 512 });
    let mut counts = RuleCounts::new();
    for (id, malformed) in ids.iter().zip(malformed) {
        let outcome = match malformed {
            None => frame.outcome(states.next().flatten().as_ref()),
            Some(err) => frame.refused("contact.invalid_id", || err.rule),
        };
        frame.write(id, &outcome, &mut out);
        *counts.entry(outcome.rule()).or_default() += 1;
    }
    Ok((pb::Decisions::encoded(out.finish(), frame.shared()), counts))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ledger::projection::arbitrary::state;
    use crate::policy::DEFAULT_PACK;

    fn activation() -> Activation {
        Activation {
            pack: Arc::new(PolicyPack::parse(DEFAULT_PACK).unwrap()),
            seq: 7,
            recorded_at: Utc::now(),
        }
    }

    /// What prost writes for `decision` as a record of a batch's field 1.
    fn prost_record(decision: &pb::Decision) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::message::encode(1, decision, &mut out);
        out
    }

    proptest! {
        /// A `Screen` batch holds exactly the bytes prost writes for the `Check` answer
        /// with the frame's fields left empty (full), or for its contact, outcome, rule
        /// and regime (brief): for every kind of state, an unknown contact, a malformed
        /// id, with and without a note, now and at a past time.
        #[test]
        fn screen_decisions_are_written_as_prost_writes_them(
            state in state(),
            which in 0usize..5,
            contact in prop_oneof![Just(None), Just(Some(None)), Just(Some(Some(())))],
            note in any::<bool>(),
            at in prop::option::of(0i64..4_000_000_000),
        ) {
            let (purpose, channel) = [
                ("email_marketing", "email"),
                ("email_tracking", "email"),
                ("profiling", "email"),
                ("sales_outreach", "phone"),
                ("storage", "email"),
            ][which];
            let activation = activation();
            let note = note.then_some("no policy was active yet at 1970-01-01T00:00:00+00:00");
            let at = at.map(|secs| prost_types::Timestamp { seconds: secs, nanos: 5 });
            let mut target =
                Target::from_proto(purpose.into(), channel.into(), at, 0, "").unwrap();
            let full = Frame::new(&target, &activation, note, 42);
            // None: a malformed id; Some(None): an unknown contact.
            let outcome = |frame: &Frame<'_>| match contact {
                None => frame.refused("contact.invalid_id", || "contact_ids: malformed".into()),
                Some(None) => frame.outcome(None),
                Some(Some(())) => frame.outcome(Some(&state)),
            };

            let decided = outcome(&full);
            let mut expected = match &decided {
                Outcome::Refused { .. } if contact.is_none() => pb::Decision {
                    contact_id: "crm-1".into(),
                    rule_id: "contact.invalid_id".into(),
                    reasons: vec!["contact_ids: malformed".into()],
                    warnings: note.map(str::to_owned).into_iter().collect(),
                    ..Default::default()
                },
                _ => full.answer("crm-1".into(), contact.flatten().map(|()| &state)),
            };
            // A batch's decisions leave the frame's fields empty.
            pb::DecisionFrame::default().fill(&mut expected);
            let mut out = DecisionsWriter::with_capacity(512);
            full.write("crm-1", &decided, &mut out);
            prop_assert_eq!(out.finish(), prost_record(&expected));

            target.brief = true;
            let brief = Frame::new(&target, &activation, note, 42);
            let decided = outcome(&brief);
            let (rule_id, allowed) = decided.rule();
            let regime = match &decided {
                Outcome::Decided(decision) => regime_to_proto(decision.regime),
                Outcome::Refused { .. } => 0,
            };
            let expected = pb::Decision {
                contact_id: "crm-1".into(),
                allowed,
                rule_id: rule_id.into(),
                regime,
                ..Default::default()
            };
            let mut out = DecisionsWriter::with_capacity(512);
            brief.write("crm-1", &decided, &mut out);
            prop_assert_eq!(out.finish(), prost_record(&expected));
        }
    }
}
