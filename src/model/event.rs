//! The event kinds a contact's ledger records, as validated domain values.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ChannelId, ContactId, Country, IdempotencyKey, PurposeId, Region, RequestKind, RequestRegime,
};

/// One validated event about one contact, without its personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The contact the event is about.
    pub contact_id: ContactId,
    /// Client key for safe retries.
    pub idempotency_key: Option<IdempotencyKey>,
    /// When it happened in the world; `None` means "when the ledger records it".
    #[serde(serialize_with = "super::rfc3339::option::serialize")]
    pub occurred_at: Option<DateTime<Utc>>,
    /// What happened.
    pub kind: EventKind,
}

/// An event together with the personal data it carried, which is stored apart from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The event; never holds personal data.
    pub event: Event,
    /// Personal data carried by the event, sealed and kept beside the entry.
    pub personal: Option<PersonalRecord>,
    /// Randomness drawn by the caller for sealing `personal` (see `crypto::Entropy`);
    /// required when `personal` is set. Not part of the request for idempotency.
    pub entropy: Option<[u8; 32]>,
}

/// Identifying data that may come with an event. Kept beside the entry, never inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalRecord {
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// IP address the event was collected from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// User agent the event was collected with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Free-text notes about the person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl PersonalRecord {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What happened to a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The contact's first entry.
    ContactRegistered {
        /// Country of residence.
        country: Country,
        /// Optional subdivision of `country`.
        region: Option<Region>,
        /// B2B/B2C and prospect/customer.
        relationship: Relationship,
        /// Why a DPO let an identity that an erasure suppressed be registered again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suppression_override: Option<String>,
    },
    /// A change of country, region or relationship (or of personal data only).
    ProfileUpdated(ProfileChange),
    /// The lawful basis relied on for a purpose.
    LegalBasisRecorded {
        /// The purpose.
        purpose: PurposeId,
        /// The Art. 6(1) basis.
        basis: LegalBasis,
        /// Why the basis holds.
        justification: String,
    },
    /// Where and when the contact was acquired.
    AcquisitionRecorded {
        /// Kind of source.
        source_kind: SourceKind,
        /// Who supplied the data.
        supplier: Option<String>,
        /// Form, list or campaign id at the source.
        source_reference: String,
        /// When the Art. 14 notice was sent, if it was.
        #[serde(serialize_with = "super::rfc3339::option::serialize")]
        notice_sent_at: Option<DateTime<Utc>>,
    },
    /// Consent given for a purpose on a channel.
    ConsentGranted {
        /// The purpose.
        purpose: PurposeId,
        /// The channel.
        channel: ChannelId,
        /// How consent was expressed.
        method: ConsentMethod,
        /// What the person was shown.
        notice: Notice,
        /// Page or form of collection.
        form_url: Option<String>,
        /// Fixed end of validity, if any.
        #[serde(serialize_with = "super::rfc3339::option::serialize")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// Consent taken back for a purpose on a channel.
    ConsentWithdrawn {
        /// The purpose.
        purpose: PurposeId,
        /// The channel.
        channel: ChannelId,
        /// How the withdrawal was expressed.
        method: ConsentMethod,
        /// Page or form of collection.
        form_url: Option<String>,
    },
    /// A double opt-in confirmation was requested.
    DoubleOptInRequested {
        /// The purpose.
        purpose: PurposeId,
        /// The channel.
        channel: ChannelId,
        /// Lowercase hex SHA-256 of the confirmation token.
        token_sha256: String,
        /// Page or form of the sign-up.
        form_url: Option<String>,
    },
    /// A double opt-in was confirmed.
    DoubleOptInConfirmed {
        /// The purpose.
        purpose: PurposeId,
        /// The channel.
        channel: ChannelId,
        /// Lowercase hex SHA-256 of the token, matching a request.
        token_sha256: String,
        /// Page of the confirmation.
        form_url: Option<String>,
    },
    /// The person objected to processing.
    ObjectionRecorded {
        /// What the objection covers.
        scope: ObjectionScope,
    },
    /// Processing restricted to storage.
    RestrictionApplied {
        /// Art. 18(1) ground.
        ground: RestrictionGround,
        /// Case or ticket reference.
        reference: String,
    },
    /// A restriction ended.
    RestrictionLifted {
        /// Contact sequence number of the restriction lifted.
        restriction_contact_seq: u64,
        /// Why it was lifted.
        reason: String,
    },
    /// A data-subject request was received (`occurred_at` is the receipt). Written by the
    /// rights service only, which assigns the id; the requester's details are personal
    /// data, sealed beside the entry.
    RequestOpened {
        /// Server-assigned request id.
        request_id: String,
        /// The right exercised.
        kind: RequestKind,
        /// The law whose deadlines apply.
        regime: RequestRegime,
        /// How the request arrived (email, web form, letter, phone…).
        channel: String,
        /// For an objection request: what it objects to; it takes effect at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        objection: Option<ObjectionScope>,
        /// For a restriction request: the Art. 18(1) ground; it takes effect at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restriction_ground: Option<RestrictionGround>,
    },
    /// The requester's identity was verified.
    RequestIdentityVerified {
        /// The request.
        request_id: String,
        /// How it was verified.
        method: String,
    },
    /// Receipt of the request was confirmed to the requester.
    RequestAcknowledged {
        /// The request.
        request_id: String,
    },
    /// The response period was extended, and the subject told.
    RequestExtended {
        /// The request.
        request_id: String,
        /// Why (complexity, number of requests).
        reason: String,
        /// When the subject was told of the extension and its reasons.
        subject_notified_on: NaiveDate,
    },
    /// The request was refused.
    RequestRejected {
        /// The request.
        request_id: String,
        /// Why, as told to the subject.
        reason: String,
    },
    /// The request was fulfilled.
    RequestCompleted {
        /// The request.
        request_id: String,
        /// What was done.
        outcome: String,
    },
    /// The contact's personal data was erased: its data key and every sealed record are
    /// destroyed, its identities are suppressed. Written by the rights service only.
    ErasureExecuted {
        /// The erasure request fulfilled, if the erasure answers one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        /// Why the data was erased (e.g. "Art. 17 request", "retention period ended").
        reason: String,
    },
    /// A policy pack became the active policy (ledger-internal: written on the policy
    /// chain by the server itself, never by a client).
    PolicyActivated {
        /// The pack's declared version.
        version: String,
        /// Lowercase hex SHA-256 of the pack's text.
        text_sha256: String,
    },
}

impl EventKind {
    /// The snake_case name of the kind, as used in the API's `oneof` and in metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ContactRegistered { .. } => "contact_registered",
            Self::ProfileUpdated(_) => "profile_updated",
            Self::LegalBasisRecorded { .. } => "legal_basis_recorded",
            Self::AcquisitionRecorded { .. } => "acquisition_recorded",
            Self::ConsentGranted { .. } => "consent_granted",
            Self::ConsentWithdrawn { .. } => "consent_withdrawn",
            Self::DoubleOptInRequested { .. } => "double_opt_in_requested",
            Self::DoubleOptInConfirmed { .. } => "double_opt_in_confirmed",
            Self::ObjectionRecorded { .. } => "objection_recorded",
            Self::RestrictionApplied { .. } => "restriction_applied",
            Self::RestrictionLifted { .. } => "restriction_lifted",
            Self::ErasureExecuted { .. } => "erasure_executed",
            Self::RequestOpened { .. } => "request_opened",
            Self::RequestIdentityVerified { .. } => "request_identity_verified",
            Self::RequestAcknowledged { .. } => "request_acknowledged",
            Self::RequestExtended { .. } => "request_extended",
            Self::RequestRejected { .. } => "request_rejected",
            Self::RequestCompleted { .. } => "request_completed",
            Self::PolicyActivated { .. } => "policy_activated",
        }
    }

    /// Whether only the ledger itself writes this kind, on its own chains.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::PolicyActivated { .. })
    }

    /// The reason a DPO gave to record a suppressed identity again, if the event has one.
    pub fn suppression_override(&self) -> Option<&str> {
        match self {
            Self::ContactRegistered {
                suppression_override,
                ..
            } => suppression_override.as_deref(),
            Self::ProfileUpdated(change) => change.suppression_override.as_deref(),
            _ => None,
        }
    }

    /// Whether the kind may still be recorded for an erased contact: the person's wishes
    /// (withdrawals, objections, restrictions) and their requests are always accepted,
    /// without personal data.
    pub fn allowed_after_erasure(&self) -> bool {
        matches!(
            self,
            Self::ConsentWithdrawn { .. }
                | Self::ObjectionRecorded { .. }
                | Self::RestrictionApplied { .. }
                | Self::RestrictionLifted { .. }
        ) || self.request_id().is_some()
    }

    /// The data-subject request the event is a step of, if it is one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::RequestOpened { request_id, .. }
            | Self::RequestIdentityVerified { request_id, .. }
            | Self::RequestAcknowledged { request_id }
            | Self::RequestExtended { request_id, .. }
            | Self::RequestRejected { request_id, .. }
            | Self::RequestCompleted { request_id, .. } => Some(request_id),
            _ => None,
        }
    }
}

/// Fields of a profile update; `None` leaves the value unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileChange {
    /// New country; a country change without a region clears the region.
    pub country: Option<Country>,
    /// New region (must belong to the resulting country).
    pub region: Option<Region>,
    /// New relationship.
    pub relationship: Option<Relationship>,
    /// Why a DPO let an identity that an erasure suppressed be recorded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppression_override: Option<String>,
}

/// B2B or B2C, and prospect or customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    /// Business or consumer.
    pub audience: Audience,
    /// Prospect or customer.
    pub lifecycle: Lifecycle,
}

/// Business or consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// A business or someone contacted in a business capacity.
    B2b,
    /// A consumer.
    B2c,
}

impl Audience {
    /// The audience's name in the API: `b2b` or `b2c`.
    pub fn name(self) -> &'static str {
        match self {
            Self::B2b => "b2b",
            Self::B2c => "b2c",
        }
    }
}

/// Prospect or customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// No purchase or contract yet.
    Prospect,
    /// Has bought or holds a contract.
    Customer,
}

/// The six lawful bases of GDPR Art. 6(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    /// Art. 6(1)(a).
    Consent,
    /// Art. 6(1)(b).
    Contract,
    /// Art. 6(1)(c).
    LegalObligation,
    /// Art. 6(1)(d).
    VitalInterests,
    /// Art. 6(1)(e).
    PublicTask,
    /// Art. 6(1)(f).
    LegitimateInterests,
}

/// How a contact came to be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A web form.
    WebForm,
    /// An event (fair, webinar).
    Event,
    /// A bought list.
    PurchasedList,
    /// An export from a data vendor.
    DataVendorExport,
    /// A referral.
    Referral,
    /// An import from another system.
    Import,
    /// Anything else.
    Other,
}

impl SourceKind {
    /// Whether a supplier must be named for this source.
    pub fn needs_supplier(self) -> bool {
        matches!(self, Self::PurchasedList | Self::DataVendorExport)
    }
}

/// How consent (or its withdrawal) was expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMethod {
    /// A ticked box.
    Checkbox,
    /// A confirmed double opt-in.
    DoubleOptIn,
    /// Said aloud (record the call reference in the notice).
    Verbal,
    /// On paper or in a signed document.
    Written,
    /// Implied by a purchase or contract.
    ImpliedByRelationship,
    /// Implied by an inquiry.
    ImpliedByInquiry,
    /// A preference centre.
    PreferenceCenter,
    /// An unsubscribe link.
    UnsubscribeLink,
    /// Anything else.
    Other,
}

/// The notice the person was shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Notice id.
    pub id: String,
    /// Version of the notice.
    pub version: Option<String>,
    /// Lowercase hex SHA-256 of its text.
    pub text_sha256: Option<String>,
    /// BCP 47 language tag.
    pub language: Option<String>,
}

/// What an objection covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", content = "purpose", rename_all = "snake_case")]
pub enum ObjectionScope {
    /// Direct marketing, absolutely, with related profiling.
    DirectMarketing,
    /// Profiling.
    Profiling,
    /// One purpose.
    Purpose(PurposeId),
}

/// Art. 18(1) grounds for restriction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestrictionGround {
    /// (a) accuracy contested.
    AccuracyContested,
    /// (b) processing unlawful, erasure opposed.
    UnlawfulProcessing,
    /// (c) needed for legal claims.
    LegalClaims,
    /// (d) objection pending verification.
    ObjectionPending,
}
