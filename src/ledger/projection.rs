//! The fold of a contact's entries into its current state, and the rules an event must
//! meet given that state (a contact is registered once, a double opt-in confirms a token
//! that was sent, a restriction is lifted only while active).
//!
//! The state keeps, for every fact, a reference to the entry that established it, so a
//! decision can cite its evidence. Folding is deterministic: no clock, no randomness.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[cfg(test)]
pub(crate) mod arbitrary;
mod reader;

use super::entry::{Entry, Hash, ZERO_HASH};
use crate::model::{
    ChannelId, ConsentMethod, Country, EventKind, LegalBasis, ObjectionScope, PurposeId, Region,
    Relationship, RequestKind, RestrictionGround,
};
use crate::rights::{RequestState, TransitionError};

/// A time as state records hold it: nanoseconds since the Unix epoch, UTC, which covers
/// 1677-09-21 to 2262-04-11. Decisions compare these as they are; a [`DateTime`] is built
/// only where calendar arithmetic or text needs one, since building one (the date from a
/// day count) cost more than reading the rest of a state's evidence.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UtcNanos(i64);

impl UtcNanos {
    /// `at`, if it lies within what a record holds.
    pub fn from_datetime(at: DateTime<Utc>) -> Option<Self> {
        at.timestamp_nanos_opt().map(Self)
    }

    /// Nanoseconds since the Unix epoch.
    pub fn nanos(self) -> i64 {
        self.0
    }

    /// As a calendar time.
    pub fn datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0)
    }
}

impl std::fmt::Debug for UtcNanos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.datetime().to_rfc3339())
    }
}

/// Points at the entry that established a fact. Stored in state records as one byte
/// string (see [`record_format`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvidenceRef {
    /// Global sequence number.
    pub seq: u64,
    /// Contact sequence number.
    pub contact_seq: u64,
    /// Entry hash.
    pub hash: Hash,
    /// When the fact happened.
    pub occurred_at: UtcNanos,
    /// When the ledger recorded it.
    pub recorded_at: UtcNanos,
}

/// The lawful basis currently recorded for a purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasisState {
    /// The purpose.
    pub purpose: PurposeId,
    /// The basis.
    pub basis: LegalBasis,
    /// The entry that recorded it.
    pub evidence: EvidenceRef,
}

/// The latest consent events for one purpose on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    /// The purpose.
    pub purpose: PurposeId,
    /// The channel.
    pub channel: ChannelId,
    /// The latest grant, if any.
    pub granted: Option<Grant>,
    /// The latest withdrawal, if any.
    pub withdrawn: Option<EvidenceRef>,
}

/// A consent grant as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// How it was given.
    pub method: ConsentMethod,
    /// Fixed end of validity.
    pub expires_at: Option<UtcNanos>,
    /// The grant entry.
    pub evidence: EvidenceRef,
}

/// The double opt-in progress for one purpose on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoubleOptInState {
    /// The purpose.
    pub purpose: PurposeId,
    /// The channel.
    pub channel: ChannelId,
    /// Token digests sent and not yet confirmed, with their request entries.
    pub pending: Vec<(String, EvidenceRef)>,
    /// The latest confirmation.
    pub confirmed: Option<EvidenceRef>,
}

/// An objection on record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objection {
    /// What it covers.
    #[serde(with = "scope_as_pair")]
    pub scope: ObjectionScope,
    /// The entry that recorded it.
    pub evidence: EvidenceRef,
}

/// A restriction of processing in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restriction {
    /// Art. 18(1) ground.
    pub ground: RestrictionGround,
    /// The entry that applied it.
    pub evidence: EvidenceRef,
}

/// A contact's current state, folded from its entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactState {
    /// Contact sequence number of the last entry.
    pub head_contact_seq: u64,
    /// Hash of the last entry.
    #[serde(with = "record_format::hash")]
    pub head_hash: Hash,
    /// The registration entry.
    pub registered: EvidenceRef,
    /// Current country.
    pub country: Country,
    /// Current region.
    pub region: Option<Region>,
    /// Current relationship.
    pub relationship: Relationship,
    /// The entry that set the current country (registration or the latest move).
    pub country_evidence: EvidenceRef,
    /// The entry that set the current relationship (registration or the latest change).
    pub relationship_evidence: EvidenceRef,
    /// Latest recorded basis per purpose.
    pub bases: Vec<BasisState>,
    /// Latest consent events per purpose and channel.
    pub consents: Vec<ConsentState>,
    /// Double opt-in progress per purpose and channel.
    pub double_opt_ins: Vec<DoubleOptInState>,
    /// Every objection recorded (objections are never lifted, only superseded by new
    /// consent where the law allows).
    pub objections: Vec<Objection>,
    /// Restrictions in force.
    pub restrictions: Vec<Restriction>,
    /// Acquisition records.
    pub acquisitions: Vec<EvidenceRef>,
    /// The latest entry that carried personal data.
    pub personal_data: Option<EvidenceRef>,
    /// The erasure of the contact's personal data, once executed.
    pub erased: Option<EvidenceRef>,
    /// Data-subject requests, in the order they were opened.
    pub requests: Vec<RequestRecord>,
}

/// One data-subject request and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Server-assigned id.
    pub id: String,
    /// Status and deadlines.
    pub state: RequestState,
    /// The entry that opened it.
    pub opened: EvidenceRef,
    /// The entry of its latest step.
    pub last_step: EvidenceRef,
}

/// An event that cannot apply to the contact as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Any event but a registration for a contact with no entries.
    #[error("contact is not registered: its first event must be contact_registered")]
    NotRegistered,
    /// A second registration.
    #[error("contact is already registered (contact seq 1); record changes with profile_updated")]
    AlreadyRegistered,
    /// A region that does not belong to the contact's country after the change.
    #[error("region {region} does not belong to country {country}")]
    RegionOutsideCountry {
        /// The region.
        region: String,
        /// The country.
        country: String,
    },
    /// A confirmation with a token no request sent.
    #[error("no pending double_opt_in_requested for purpose {purpose} on channel {channel} has this token_sha256")]
    UnknownDoubleOptInToken {
        /// The purpose.
        purpose: String,
        /// The channel.
        channel: String,
    },
    /// Lifting a restriction that is not in force.
    #[error("no restriction in force was applied at contact seq {0}")]
    NoSuchRestriction(u64),
    /// A client event on a ledger-internal chain.
    #[error("contact ids starting with '~' are reserved for the ledger's own chains")]
    ReservedContact,
    /// A ledger-internal event on a contact's chain.
    #[error("this event kind is written only by the ledger itself")]
    InternalEvent,
    /// A request step the request's lifecycle or the law does not allow.
    #[error(transparent)]
    Request(#[from] TransitionError),
    /// A step of a request the contact does not have.
    #[error("the contact has no request {0}")]
    UnknownRequest(String),
    /// A time outside what a state record holds (1677-09-21 to 2262-04-11).
    #[error("{field} must lie between 1677-09-21 and 2262-04-11 (UTC)")]
    TimeOutOfRange {
        /// The event field holding the time.
        field: &'static str,
    },
    /// An event an erased contact no longer takes.
    #[error("the contact's personal data was erased at contact seq {contact_seq}: only withdrawals, objections, restrictions and request steps are recorded for it, without personal data")]
    Erased {
        /// Contact sequence number of the erasure entry.
        contact_seq: u64,
    },
}

impl ApplyError {
    /// The request field the error is about, as a path in the API's `Event`.
    pub fn field(&self) -> &'static str {
        match self {
            Self::NotRegistered | Self::AlreadyRegistered | Self::ReservedContact => "contact_id",
            Self::InternalEvent | Self::Erased { .. } => "kind",
            Self::Request(_) | Self::UnknownRequest(_) => "request_id",
            Self::RegionOutsideCountry { .. } => "profile_updated.region",
            Self::UnknownDoubleOptInToken { .. } => "double_opt_in_confirmed.token_sha256",
            Self::NoSuchRestriction(_) => "restriction_lifted.restriction_contact_seq",
            Self::TimeOutOfRange { field } => field,
        }
    }
}

/// Folds `entry` into `state` (`None` for a contact without entries) and returns the new
/// state, or why the entry cannot apply. `hash` is the entry's hash.
pub fn apply(
    state: Option<&ContactState>,
    entry: &Entry,
    hash: Hash,
) -> Result<ContactState, ApplyError> {
    let record_time =
        |field, at| UtcNanos::from_datetime(at).ok_or(ApplyError::TimeOutOfRange { field });
    let evidence = EvidenceRef {
        seq: entry.seq,
        contact_seq: entry.contact_seq,
        hash,
        occurred_at: record_time("occurred_at", entry.body.occurred_at)?,
        recorded_at: record_time("recorded_at", entry.body.recorded_at)?,
    };
    let mut next = match (state, &entry.body.event) {
        (
            None,
            EventKind::ContactRegistered {
                country,
                region,
                relationship,
                ..
            },
        ) => ContactState {
            head_contact_seq: 0,
            head_hash: ZERO_HASH,
            registered: evidence,
            country: *country,
            region: region.clone(),
            relationship: *relationship,
            country_evidence: evidence,
            relationship_evidence: evidence,
            bases: Vec::new(),
            consents: Vec::new(),
            double_opt_ins: Vec::new(),
            objections: Vec::new(),
            restrictions: Vec::new(),
            acquisitions: Vec::new(),
            personal_data: None,
            erased: None,
            requests: Vec::new(),
        },
        (_, event) if event.is_internal() => return Err(ApplyError::InternalEvent),
        (None, _) => return Err(ApplyError::NotRegistered),
        (Some(_), EventKind::ContactRegistered { .. }) => {
            return Err(ApplyError::AlreadyRegistered)
        }
        (
            Some(ContactState {
                erased: Some(erasure),
                ..
            }),
            event,
        ) if !event.allowed_after_erasure() || entry.body.personal_data_sha256.is_some() => {
            return Err(ApplyError::Erased {
                contact_seq: erasure.contact_seq,
            })
        }
        (Some(state), event) => {
            let mut next = state.clone();
            next.fold(event, evidence)?;
            next
        }
    };
    if entry.body.personal_data_sha256.is_some() {
        next.personal_data = Some(evidence);
    }
    next.head_contact_seq = entry.contact_seq;
    next.head_hash = hash;
    Ok(next)
}

impl ContactState {
    fn fold(&mut self, event: &EventKind, evidence: EvidenceRef) -> Result<(), ApplyError> {
        match event {
            EventKind::ContactRegistered { .. } => return Err(ApplyError::AlreadyRegistered),
            EventKind::PolicyActivated { .. } => return Err(ApplyError::InternalEvent),
            EventKind::ProfileUpdated(change) => {
                if let Some(country) = change.country {
                    if country != self.country {
                        self.country = country;
                        self.country_evidence = evidence;
                        self.region = None;
                    }
                }
                if let Some(region) = &change.region {
                    if !region.belongs_to(self.country) {
                        return Err(ApplyError::RegionOutsideCountry {
                            region: region.as_str().to_owned(),
                            country: self.country.to_string(),
                        });
                    }
                    self.region = Some(region.clone());
                }
                if let Some(relationship) = change.relationship {
                    if relationship != self.relationship {
                        self.relationship = relationship;
                        self.relationship_evidence = evidence;
                    }
                }
            }
            EventKind::LegalBasisRecorded { purpose, basis, .. } => {
                let basis = BasisState {
                    purpose: purpose.clone(),
                    basis: *basis,
                    evidence,
                };
                match self.bases.iter_mut().find(|b| b.purpose == *purpose) {
                    Some(existing) if !happened_after(&evidence, &existing.evidence) => {}
                    Some(existing) => *existing = basis,
                    None => self.bases.push(basis),
                }
            }
            EventKind::AcquisitionRecorded { .. } => self.acquisitions.push(evidence),
            EventKind::ErasureExecuted { request_id, .. } => {
                if let Some(id) = request_id {
                    let request = &self.request(id)?.state;
                    if request.kind != RequestKind::Erasure || request.status.is_closed() {
                        return Err(ApplyError::Request(TransitionError {
                            rule: "erasure_request_open",
                            message: format!(
                                "request {id} is a {} request that is {}: an erasure can only fulfil an open erasure request",
                                request.kind,
                                request.status.name()
                            ),
                        }));
                    }
                }
                self.erased = Some(evidence);
            }
            EventKind::RequestOpened {
                request_id,
                kind,
                regime,
                objection,
                restriction_ground,
                ..
            } => {
                if self.requests.iter().any(|r| r.id == *request_id) {
                    return Err(ApplyError::Request(TransitionError {
                        rule: "request_id_unique",
                        message: format!("the contact already has a request {request_id}"),
                    }));
                }
                let state = RequestState::open(
                    *kind,
                    *regime,
                    evidence.occurred_at.datetime(),
                    evidence.recorded_at.datetime(),
                )?;
                // Objections and restrictions asked for take effect at once (Art. 21, 18).
                if let Some(scope) = objection {
                    self.objections.push(Objection {
                        scope: scope.clone(),
                        evidence,
                    });
                }
                if let Some(ground) = restriction_ground {
                    self.restrictions.push(Restriction {
                        ground: *ground,
                        evidence,
                    });
                }
                self.requests.push(RequestRecord {
                    id: request_id.clone(),
                    state,
                    opened: evidence,
                    last_step: evidence,
                });
            }
            EventKind::RequestIdentityVerified { request_id, .. } => {
                self.request_step(request_id, evidence, |r| {
                    r.verify_identity(evidence.recorded_at.datetime())
                })?
            }
            EventKind::RequestAcknowledged { request_id } => {
                self.request_step(request_id, evidence, |r| {
                    r.acknowledge(evidence.recorded_at.datetime())
                })?
            }
            EventKind::RequestExtended {
                request_id,
                subject_notified_on,
                ..
            } => self.request_step(request_id, evidence, |r| {
                r.extend(evidence.recorded_at.datetime(), *subject_notified_on)
            })?,
            EventKind::RequestRejected { request_id, reason } => {
                let opened = self.request(request_id)?.opened;
                let absolute = self.objections.iter().any(|o| {
                    o.evidence.seq == opened.seq && o.scope == ObjectionScope::DirectMarketing
                });
                if absolute {
                    return Err(ApplyError::Request(TransitionError {
                        rule: "objection_absolute",
                        message: "an objection to direct marketing cannot be rejected: it is absolute (GDPR Art. 21(3))".into(),
                    }));
                }
                self.request_step(request_id, evidence, |r| {
                    r.reject(evidence.recorded_at.datetime(), reason)
                })?;
                // A refused objection or restriction request no longer holds.
                self.objections.retain(|o| o.evidence.seq != opened.seq);
                self.restrictions.retain(|r| r.evidence.seq != opened.seq);
            }
            EventKind::RequestCompleted { request_id, .. } => {
                let erasure = self.request(request_id)?.state.kind == RequestKind::Erasure;
                if erasure && self.erased.is_none() {
                    return Err(ApplyError::Request(TransitionError {
                        rule: "erasure_not_executed",
                        message: "an erasure request is completed only after the erasure was executed (RightsService.EraseContact with this request_id)".into(),
                    }));
                }
                self.request_step(request_id, evidence, |r| {
                    r.complete(evidence.recorded_at.datetime())
                })?
            }
            EventKind::ConsentGranted {
                purpose,
                channel,
                method,
                expires_at,
                ..
            } => {
                let expires_at = expires_at
                    .map(|at| {
                        UtcNanos::from_datetime(at).ok_or(ApplyError::TimeOutOfRange {
                            field: "consent_granted.expires_at",
                        })
                    })
                    .transpose()?;
                let consent = self.consent_mut(purpose, channel);
                if consent
                    .granted
                    .as_ref()
                    .is_none_or(|g| happened_after(&evidence, &g.evidence))
                {
                    consent.granted = Some(Grant {
                        method: *method,
                        expires_at,
                        evidence,
                    });
                }
            }
            EventKind::ConsentWithdrawn {
                purpose, channel, ..
            } => {
                let consent = self.consent_mut(purpose, channel);
                if consent
                    .withdrawn
                    .is_none_or(|w| happened_after(&evidence, &w))
                {
                    consent.withdrawn = Some(evidence);
                }
            }
            EventKind::DoubleOptInRequested {
                purpose,
                channel,
                token_sha256,
                ..
            } => {
                self.double_opt_in_mut(purpose, channel)
                    .pending
                    .push((token_sha256.clone(), evidence));
            }
            EventKind::DoubleOptInConfirmed {
                purpose,
                channel,
                token_sha256,
                ..
            } => {
                let doi = self.double_opt_in_mut(purpose, channel);
                let Some(at) = doi.pending.iter().position(|(t, _)| t == token_sha256) else {
                    return Err(ApplyError::UnknownDoubleOptInToken {
                        purpose: purpose.to_string(),
                        channel: channel.to_string(),
                    });
                };
                doi.pending.remove(at);
                if doi.confirmed.is_none_or(|c| happened_after(&evidence, &c)) {
                    doi.confirmed = Some(evidence);
                }
            }
            EventKind::ObjectionRecorded { scope } => self.objections.push(Objection {
                scope: scope.clone(),
                evidence,
            }),
            EventKind::RestrictionApplied { ground, .. } => self.restrictions.push(Restriction {
                ground: *ground,
                evidence,
            }),
            EventKind::RestrictionLifted {
                restriction_contact_seq,
                ..
            } => {
                let before = self.restrictions.len();
                self.restrictions
                    .retain(|r| r.evidence.contact_seq != *restriction_contact_seq);
                if self.restrictions.len() == before {
                    return Err(ApplyError::NoSuchRestriction(*restriction_contact_seq));
                }
            }
        }
        Ok(())
    }

    fn request(&self, id: &str) -> Result<&RequestRecord, ApplyError> {
        self.requests
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ApplyError::UnknownRequest(id.to_owned()))
    }

    /// Applies one step to request `id`, or says why it cannot be taken.
    fn request_step(
        &mut self,
        id: &str,
        evidence: EvidenceRef,
        step: impl FnOnce(&mut RequestState) -> Result<(), TransitionError>,
    ) -> Result<(), ApplyError> {
        let request = self
            .requests
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| ApplyError::UnknownRequest(id.to_owned()))?;
        step(&mut request.state)?;
        request.last_step = evidence;
        Ok(())
    }

    /// The contact's request with this id.
    pub fn find_request(&self, id: &str) -> Option<&RequestRecord> {
        self.requests.iter().find(|r| r.id == id)
    }

    fn consent_mut(&mut self, purpose: &PurposeId, channel: &ChannelId) -> &mut ConsentState {
        let at = match self
            .consents
            .iter()
            .position(|c| c.purpose == *purpose && c.channel == *channel)
        {
            Some(at) => at,
            None => {
                self.consents.push(ConsentState {
                    purpose: purpose.clone(),
                    channel: channel.clone(),
                    granted: None,
                    withdrawn: None,
                });
                self.consents.len() - 1
            }
        };
        &mut self.consents[at]
    }

    fn double_opt_in_mut(
        &mut self,
        purpose: &PurposeId,
        channel: &ChannelId,
    ) -> &mut DoubleOptInState {
        let at = match self
            .double_opt_ins
            .iter()
            .position(|d| d.purpose == *purpose && d.channel == *channel)
        {
            Some(at) => at,
            None => {
                self.double_opt_ins.push(DoubleOptInState {
                    purpose: purpose.clone(),
                    channel: channel.clone(),
                    pending: Vec::new(),
                    confirmed: None,
                });
                self.double_opt_ins.len() - 1
            }
        };
        &mut self.double_opt_ins[at]
    }
}

/// Which of a contact's entries count when answering for a past time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutoff {
    /// Facts that had happened by then (`occurred_at` up to and including the time):
    /// "was this lawful at T?"
    Occurred(DateTime<Utc>),
    /// Facts the ledger had recorded by then (`recorded_at` up to and including the time):
    /// "what would we have answered at T?"
    Recorded(DateTime<Utc>),
}

impl Cutoff {
    /// Whether an entry with these times counts.
    pub fn includes(self, occurred_at: DateTime<Utc>, recorded_at: DateTime<Utc>) -> bool {
        match self {
            Self::Occurred(at) => occurred_at <= at,
            Self::Recorded(at) => recorded_at <= at,
        }
    }
}

/// Folds a contact's entries, in ledger order, keeping those `cutoff` includes. An entry
/// that cannot apply without the ones left out (a confirmation whose request happened
/// later) is skipped, exactly as a ledger holding only the included entries would have
/// refused it. `None` when no registration is included.
pub fn state_at<'e>(
    entries: impl IntoIterator<Item = (&'e Entry, Hash)>,
    cutoff: Cutoff,
) -> Option<ContactState> {
    let mut state: Option<ContactState> = None;
    for (entry, hash) in entries {
        if !cutoff.includes(entry.body.occurred_at, entry.body.recorded_at) {
            continue;
        }
        if let Ok(next) = apply(state.as_ref(), entry, hash) {
            state = Some(next);
        }
    }
    state
}

/// Whether `a` happened after `b`: by the time it happened, then by ledger order. Facts
/// recorded late (a consent collected on paper last week) take their place by the time
/// they happened, so the order of recording never changes what is in force.
pub fn happened_after(a: &EvidenceRef, b: &EvidenceRef) -> bool {
    (a.occurred_at, a.seq) > (b.occurred_at, b.seq)
}

/// The head of a contact's chain: all that a ledger-internal chain (such as the policy
/// activations) keeps as state, and the part of every state that verification reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Contact sequence number of the last entry.
    pub head_contact_seq: u64,
    /// Hash of the last entry.
    #[serde(with = "record_format::hash")]
    pub head_hash: Hash,
}

/// Folds an entry of a ledger-internal chain (contact ids starting with `~`): only
/// ledger-internal events belong there, and only there.
pub fn apply_internal(
    state: Option<&ChainHead>,
    entry: &Entry,
    hash: Hash,
) -> Result<ChainHead, ApplyError> {
    if !entry.body.event.is_internal() {
        return Err(ApplyError::ReservedContact);
    }
    let expected = state.map_or(1, |s| s.head_contact_seq + 1);
    debug_assert_eq!(entry.contact_seq, expected);
    Ok(ChainHead {
        head_contact_seq: entry.contact_seq,
        head_hash: hash,
    })
}

/// An objection's scope in a state record as `(kind, purpose)`: the entry's tagged form
/// needs a self-describing format, and state records are not one.
mod scope_as_pair {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::model::{ObjectionScope, PurposeId};

    pub(super) fn serialize<S: Serializer>(
        scope: &ObjectionScope,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match scope {
            ObjectionScope::DirectMarketing => (0u8, None::<&PurposeId>),
            ObjectionScope::Profiling => (1, None),
            ObjectionScope::Purpose(purpose) => (2, Some(purpose)),
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectionScope, D::Error> {
        match <(u8, Option<PurposeId>)>::deserialize(d)? {
            (0, None) => Ok(ObjectionScope::DirectMarketing),
            (1, None) => Ok(ObjectionScope::Profiling),
            (2, Some(purpose)) => Ok(ObjectionScope::Purpose(purpose)),
            (kind, _) => Err(serde::de::Error::custom(format!(
                "objection scope {kind} is not known"
            ))),
        }
    }
}

/// How a state record holds hashes and [`EvidenceRef`]s.
///
/// Format 3: each as one byte string. A hash is its 32 bytes. Evidence is, in order:
/// seq and contact seq (LEB128 varints), the entry hash (32 bytes), and when the fact
/// happened and when the ledger recorded it (nanoseconds since the Unix epoch, 8 bytes
/// little-endian each). A state holds a dozen or more of these, and reading them through
/// serde field by field (format 2: the hash byte by byte) was most of the time a `Check`
/// or a screened contact spent decoding the state, several times the decision itself;
/// read from one slice they cost two short varints and three copies, and take the same
/// room as before (about 55 bytes each).
///
/// Format 2 records are still read: [`decode_state`] marks the thread while it decodes
/// one, and hashes and evidence are then read field by field.
mod record_format {
    use std::cell::Cell;
    use std::fmt;

    use serde::de::Visitor;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{EvidenceRef, UtcNanos};
    use crate::ledger::entry::Hash;

    thread_local! {
        static FIELD_BY_FIELD: Cell<bool> = const { Cell::new(false) };
    }

    /// While alive, state records on this thread are read as format 2 wrote them.
    pub(super) struct Format2(());

    impl Format2 {
        pub(super) fn enter() -> Self {
            FIELD_BY_FIELD.set(true);
            Self(())
        }
    }

    impl Drop for Format2 {
        fn drop(&mut self) {
            FIELD_BY_FIELD.set(false);
        }
    }

    /// Exactly `N` bytes, as one byte string.
    struct Exactly<const N: usize>;

    impl<const N: usize> Visitor<'_> for Exactly<N> {
        type Value = [u8; N];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{N} bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<[u8; N], E> {
            bytes
                .try_into()
                .map_err(|_| E::invalid_length(bytes.len(), &self))
        }
    }

    /// A chain head's hash: `#[serde(with = "record_format::hash")]`.
    pub(super) mod hash {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(hash)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
            if FIELD_BY_FIELD.get() {
                return Hash::deserialize(d);
            }
            d.deserialize_bytes(Exactly::<32>)
        }
    }

    /// Evidence as format 2 wrote it.
    #[derive(Deserialize)]
    struct FieldByField {
        seq: u64,
        contact_seq: u64,
        hash: Hash,
        occurred_at: UtcNanos,
        recorded_at: UtcNanos,
    }

    /// The most an evidence record takes: two u64 varints, the hash, two times.
    const EVIDENCE_MAX: usize = 10 + 10 + 32 + 8 + 8;

    fn put_varint(out: &mut [u8; EVIDENCE_MAX], len: &mut usize, mut value: u64) {
        while value >= 0x80 {
            out[*len] = value as u8 | 0x80;
            value >>= 7;
            *len += 1;
        }
        out[*len] = value as u8;
        *len += 1;
    }

    /// An unsigned LEB128 varint of at most 64 bits at the start of `bytes`, and the
    /// bytes after it.
    pub(super) fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
        let mut value = 0;
        for i in 0..10 {
            let byte = *bytes.get(i)?;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                if i == 9 && byte > 1 {
                    return None; // past 64 bits
                }
                return Some((value, &bytes[i + 1..]));
            }
        }
        None
    }

    /// An evidence record's bytes, all of them, as evidence.
    pub(super) fn evidence(bytes: &[u8]) -> Option<EvidenceRef> {
        let (seq, rest) = varint(bytes)?;
        let (contact_seq, rest) = varint(rest)?;
        let (hash, rest) = rest.split_first_chunk::<32>()?;
        let (occurred, rest) = rest.split_first_chunk::<8>()?;
        let (recorded, rest) = rest.split_first_chunk::<8>()?;
        rest.is_empty().then_some(EvidenceRef {
            seq,
            contact_seq,
            hash: *hash,
            occurred_at: UtcNanos(i64::from_le_bytes(*occurred)),
            recorded_at: UtcNanos(i64::from_le_bytes(*recorded)),
        })
    }

    impl Serialize for EvidenceRef {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut out = [0u8; EVIDENCE_MAX];
            let mut len = 0;
            put_varint(&mut out, &mut len, self.seq);
            put_varint(&mut out, &mut len, self.contact_seq);
            for field in [
                &self.hash[..],
                &self.occurred_at.nanos().to_le_bytes(),
                &self.recorded_at.nanos().to_le_bytes(),
            ] {
                out[len..len + field.len()].copy_from_slice(field);
                len += field.len();
            }
            s.serialize_bytes(&out[..len])
        }
    }

    impl<'de> Deserialize<'de> for EvidenceRef {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            if FIELD_BY_FIELD.get() {
                let old = FieldByField::deserialize(d)?;
                return Ok(EvidenceRef {
                    seq: old.seq,
                    contact_seq: old.contact_seq,
                    hash: old.hash,
                    occurred_at: old.occurred_at,
                    recorded_at: old.recorded_at,
                });
            }
            d.deserialize_bytes(Evidence)
        }
    }

    struct Evidence;

    impl Visitor<'_> for Evidence {
        type Value = EvidenceRef;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an evidence record: seq, contact seq, hash, occurred at, recorded at")
        }

        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<EvidenceRef, E> {
            evidence(bytes)
                .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Bytes(bytes), &self))
        }
    }
}

/// First byte of a state record: the version of its encoding, so a later encoding can be
/// told apart and read beside this one. Format 3 stores hashes and evidence as byte
/// strings (see [`record_format`]); format 2 added the erasure and is still read; format 1
/// records (from before personal data was sealed) are refused rather than misread.
const STATE_FORMAT_BINARY: u8 = 3;
const STATE_FORMAT_FIELDWISE_EVIDENCE: u8 = 2;

/// Encodes a contact state (or a chain head) for the `state` column family: a format
/// byte, then the fields in declaration order (postcard). Heads come first in both, so
/// a [`ChainHead`] decodes from either.
pub fn encode_state<T: Serialize>(state: &T) -> Vec<u8> {
    let out = vec![STATE_FORMAT_BINARY];
    postcard::to_extend(state, out).expect("states always serialize")
}

/// What a record of the `state` column family is read as: a [`ContactState`], or the
/// [`ChainHead`] at the start of any record.
pub trait StateRecord: serde::de::DeserializeOwned {
    /// The value of a format 3 record's body, read without serde, or `None` to read it
    /// through serde.
    fn read(_body: &[u8]) -> Option<Self> {
        None
    }
}

impl StateRecord for ChainHead {}

impl StateRecord for ContactState {
    fn read(body: &[u8]) -> Option<Self> {
        reader::contact_state(body)
    }
}

/// Decodes what [`encode_state`] wrote, in this format or the one before. For a
/// [`ChainHead`], bytes beyond the head are ignored.
pub fn decode_state<T: StateRecord>(bytes: &[u8]) -> Result<T, String> {
    let decoded = match bytes.split_first() {
        Some((&STATE_FORMAT_BINARY, rest)) => match T::read(rest) {
            Some(value) => return Ok(value),
            None => postcard::from_bytes(rest),
        },
        Some((&STATE_FORMAT_FIELDWISE_EVIDENCE, rest)) => {
            let _format = record_format::Format2::enter();
            postcard::from_bytes(rest)
        }
        Some((format, _)) => return Err(format!("unknown state record format {format}")),
        None => return Err("empty state record".into()),
    };
    decoded.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::{entry_hash, tests::sample};
    use crate::model::{Audience, Lifecycle, ObjectionScope, ProfileChange, Registry};

    /// Folds `events` after the sample registration, each a second later.
    fn fold(events: Vec<EventKind>) -> ContactState {
        let mut entry = sample();
        entry.contact_seq = 1;
        let mut state = apply(None, &entry, [1; 32]).unwrap();
        for (n, event) in events.into_iter().enumerate() {
            entry.seq += 1;
            entry.contact_seq += 1;
            entry.body.occurred_at += chrono::Duration::seconds(1);
            entry.body.event = event;
            let hash = entry_hash(&entry.encode());
            state = apply(Some(&state), &entry, hash).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        state
    }

    /// Consent to email marketing by email, given by `method`, ending at `expires_at`.
    fn email_grant(
        method: crate::model::ConsentMethod,
        expires_at: Option<DateTime<Utc>>,
    ) -> EventKind {
        let registry = Registry::default();
        EventKind::ConsentGranted {
            purpose: registry.purpose("p", "email_marketing").unwrap(),
            channel: registry.channel("c", "email").unwrap(),
            method,
            notice: crate::model::Notice {
                id: "n".into(),
                version: Some("1".into()),
                text_sha256: None,
                language: None,
            },
            form_url: None,
            expires_at,
        }
    }

    /// The state built in `states_round_trip_and_heads_read_from_either_record`, as the
    /// format 2 encoder wrote it.
    const FORMAT_2_RECORD: &str = concat!(
        "020535bef1eafff5b8863624b6cd3e0369e31da3c946fd330425ddf31803fd394e9b2a010101010101010101",
        "01010101010101010101010101010101010101010101010180809c96f2df87942faab4aed8c7bfce972f0244",
        "450000012a01010101010101010101010101010101010101010101010101010101010101010180809c96f2df",
        "87942faab4aed8c7bfce972f2e0535bef1eafff5b8863624b6cd3e0369e31da3c946fd330425ddf31803fd39",
        "4e9b80a0f5fc8fe087942faab4aed8c7bfce972f00010f656d61696c5f6d61726b6574696e6705656d61696c",
        "0100018a80a0bbd29df1fa312b024cff506ca0f5b0d8a37c587ae179e18716814dc744685717905e4a3a9dc7",
        "a37280a8f2cff9df87942faab4aed8c7bfce972f00000202010f656d61696c5f6d61726b6574696e672c03a4",
        "076d7dc8405316be57059ca3d1edda5cff432d556b366ea87d94358e17ab9e80d0c88981e087942faab4aed8",
        "c7bfce972f00002d04832b430a26eca5446cc670ce8bec5408aa3740f64d983ea4e1f45e86878d885380f89e",
        "c388e087942faab4aed8c7bfce972f0000012e0535bef1eafff5b8863624b6cd3e0369e31da3c946fd330425",
        "ddf31803fd394e9b80a0f5fc8fe087942faab4aed8c7bfce972f0000",
    );

    #[test]
    fn times_a_record_cannot_hold_are_refused_not_encoded() {
        let mut entry = sample();
        entry.contact_seq = 1;
        let registered = apply(None, &entry, [1; 32]).unwrap();
        entry.seq += 1;
        entry.contact_seq = 2;
        entry.body.event = email_grant(
            crate::model::ConsentMethod::Checkbox,
            DateTime::from_timestamp(32_503_680_000, 0),
        );
        assert_eq!(
            apply(Some(&registered), &entry, [2; 32]),
            Err(ApplyError::TimeOutOfRange {
                field: "consent_granted.expires_at"
            })
        );
        entry.body.occurred_at = DateTime::from_timestamp(-9_300_000_000, 0).unwrap();
        let err = apply(Some(&registered), &entry, [2; 32]).unwrap_err();
        assert_eq!(err.field(), "occurred_at");
    }

    #[test]
    fn states_round_trip_and_heads_read_from_either_record() {
        let registry = Registry::default();
        let purpose = registry.purpose("p", "email_marketing").unwrap();
        let state = fold(vec![
            email_grant(
                crate::model::ConsentMethod::Checkbox,
                Some(DateTime::from_timestamp(1_800_000_000, 5).unwrap()),
            ),
            EventKind::ObjectionRecorded {
                scope: ObjectionScope::Purpose(purpose.clone()),
            },
            EventKind::ObjectionRecorded {
                scope: ObjectionScope::DirectMarketing,
            },
            EventKind::ProfileUpdated(ProfileChange {
                country: None,
                region: None,
                relationship: Some(Relationship {
                    audience: Audience::B2b,
                    lifecycle: Lifecycle::Customer,
                }),
                suppression_override: None,
            }),
        ]);
        let bytes = encode_state(&state);
        assert_eq!(bytes[0], STATE_FORMAT_BINARY);
        assert_eq!(decode_state::<ContactState>(&bytes), Ok(state.clone()));
        // The same state as format 2 wrote it (evidence field by field) still reads.
        let format_2 = hex::decode(FORMAT_2_RECORD).unwrap();
        assert_eq!(decode_state::<ContactState>(&format_2), Ok(state.clone()));
        let head: ChainHead = decode_state(&format_2).unwrap();
        assert_eq!(head.head_contact_seq, state.head_contact_seq);
        // Evidence cut short or with bytes left over is refused, not misread: the
        // registration's length comes after the format, the head's contact seq (one
        // byte) and its hash (a length byte and 32 bytes).
        let at = 1 + 1 + 1 + 32;
        for change in [-1i8, 1] {
            let mut changed = bytes.clone();
            changed[at] = changed[at].wrapping_add_signed(change);
            assert!(decode_state::<ContactState>(&changed).is_err(), "{change}");
        }
        // Every evidence field round-trips at its extremes.
        for (seq, occurred, recorded) in [
            (0, i64::MIN, i64::MAX),
            (u64::MAX, i64::MAX, i64::MIN),
            (
                1 << 35,
                1_700_000_000_123_456_789,
                1_699_999_999_000_000_000,
            ),
        ] {
            let evidence = EvidenceRef {
                seq,
                contact_seq: u64::MAX - seq,
                hash: [seq as u8; 32],
                occurred_at: UtcNanos(occurred),
                recorded_at: UtcNanos(recorded),
            };
            let bytes = postcard::to_allocvec(&evidence).unwrap();
            assert_eq!(postcard::from_bytes::<EvidenceRef>(&bytes), Ok(evidence));
        }
        let head: ChainHead = decode_state(&bytes).unwrap();
        assert_eq!(
            (head.head_contact_seq, head.head_hash),
            (state.head_contact_seq, state.head_hash)
        );
        assert_eq!(decode_state::<ChainHead>(&encode_state(&head)), Ok(head));
        assert!(decode_state::<ContactState>(&bytes[..bytes.len() / 2]).is_err());
        assert!(decode_state::<ContactState>(b"{}").is_err());
    }

    #[test]
    fn a_late_recorded_fact_takes_its_place_by_when_it_happened() {
        let registry = Registry::default();
        let purpose = registry.purpose("p", "email_marketing").unwrap();
        let channel = registry.channel("c", "email").unwrap();
        let withdrawal = EventKind::ConsentWithdrawn {
            purpose: purpose.clone(),
            channel: channel.clone(),
            method: crate::model::ConsentMethod::UnsubscribeLink,
            form_url: None,
        };
        let mut state = fold(vec![withdrawal]);
        // A consent collected before the withdrawal, recorded after it.
        let mut entry = sample();
        entry.seq = 100;
        entry.contact_seq = state.head_contact_seq + 1;
        entry.body.event = email_grant(crate::model::ConsentMethod::Written, None);
        state = apply(Some(&state), &entry, [2; 32]).unwrap();
        let consent = &state.consents[0];
        let (grant, withdrawn) = (
            consent.granted.as_ref().unwrap(),
            consent.withdrawn.unwrap(),
        );
        assert!(happened_after(&withdrawn, &grant.evidence));
    }
}
