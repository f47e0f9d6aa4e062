//! proto <-> domain conversion for the ledger API. Converting a request validates it:
//! every error names the field (as a path in the request) and the rule.

use std::net::IpAddr;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use prost_types::Timestamp;

use crate::audit::bundle::{Bundle, BundleEntry};
use crate::audit::chain::{ChainBreak, ChainProblem};
use crate::crypto::{CryptoError, Entropy};
use crate::ledger::entry::EntryBody;
use crate::ledger::projection::RequestRecord;
use crate::ledger::{ContactState, Hash, UtcNanos};
use crate::model::{
    self, ContactId, Country, Event, EventKind, IdempotencyKey, PersonalRecord, ProfileChange,
    Region, Registry, Submission, ValidationError,
};
use crate::proto::v1 as pb;
use crate::rights::RequestStatus;
use crate::store::{
    ChainReport, Damage, DamageKind, LedgerReport, Receipt, StoredCheckpoint, StoredEntry,
};

/// How far in the future a client-supplied time may be (clock skew allowance).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

const MAX_TEXT: usize = 1024;
const MAX_URL: usize = 2048;
const MAX_NOTES: usize = 8192;

/// Validates a submitted event into a domain event and the personal data it carries
/// (with the randomness that seals it). `now` is the receive time, for the "not in the
/// future" rule.
pub fn submission_from_proto(
    event: pb::Event,
    registry: &Registry,
    now: DateTime<Utc>,
) -> Result<Submission, SubmissionError> {
    let contact_id = client_contact_id("contact_id", &event.contact_id)?;
    let idempotency_key = non_empty(&event.idempotency_key)
        .map(|k| IdempotencyKey::parse("idempotency_key", k))
        .transpose()?;
    let occurred_at = event
        .occurred_at
        .map(|t| past_time("occurred_at", t, now))
        .transpose()?;
    let kind = event
        .kind
        .ok_or_else(|| ValidationError::new("kind", "exactly one event kind must be set"))?;
    let mut personal = PersonalRecord::default();
    let kind = kind_from_proto(kind, registry, now, occurred_at, &mut personal)?;
    let personal = (!personal.is_empty()).then_some(personal);
    let entropy = match personal {
        Some(_) => Some(Entropy::draw()?.into_bytes()),
        None => None,
    };
    Ok(Submission {
        event: Event {
            contact_id,
            idempotency_key,
            occurred_at,
            kind,
        },
        personal,
        entropy,
    })
}

/// Why a submitted event could not become a submission.
#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    /// The event breaks a rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No randomness to seal its personal data with.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

fn kind_from_proto(
    kind: pb::event::Kind,
    registry: &Registry,
    now: DateTime<Utc>,
    occurred_at: Option<DateTime<Utc>>,
    personal: &mut PersonalRecord,
) -> Result<EventKind, ValidationError> {
    use pb::event::Kind;
    Ok(match kind {
        Kind::ContactRegistered(m) => {
            let at = "contact_registered";
            let country = Country::parse(&format!("{at}.country"), &m.country)?;
            let region = non_empty(&m.region)
                .map(|r| Region::parse(&format!("{at}.region"), r, country))
                .transpose()?;
            let relationship = relationship(m.relationship, &format!("{at}.relationship"))?
                .ok_or_else(|| {
                    ValidationError::new(
                        format!("{at}.relationship"),
                        "is required (audience and lifecycle)",
                    )
                })?;
            if let Some(data) = m.personal {
                personal_data(data, personal).map_err(|e| e.within(at))?;
            }
            EventKind::ContactRegistered {
                country,
                region,
                relationship,
                suppression_override: suppression_override(m.suppression_override, at)?,
            }
        }
        Kind::ProfileUpdated(m) => {
            let at = "profile_updated";
            let country = non_empty(&m.country)
                .map(|c| Country::parse(&format!("{at}.country"), c))
                .transpose()?;
            // A region is checked against the country here when both are given, and
            // against the contact's current country when it is applied.
            let region = match (non_empty(&m.region), country) {
                (None, _) => None,
                (Some(r), Some(country)) => {
                    Some(Region::parse(&format!("{at}.region"), r, country)?)
                }
                (Some(r), None) => {
                    let prefix = r.split('-').next().unwrap_or_default();
                    let country =
                        Country::parse(&format!("{at}.region"), prefix).map_err(|_| {
                            ValidationError::new(
                                format!("{at}.region"),
                                format!("{r:?} is not an ISO 3166-2 code (e.g. \"US-CA\")"),
                            )
                        })?;
                    Some(Region::parse(&format!("{at}.region"), r, country)?)
                }
            };
            let relationship = relationship(m.relationship, &format!("{at}.relationship"))?;
            let has_personal = match m.personal {
                Some(data) => {
                    personal_data(data, personal).map_err(|e| e.within(at))?;
                    !personal.is_empty()
                }
                None => false,
            };
            if country.is_none() && region.is_none() && relationship.is_none() && !has_personal {
                return Err(ValidationError::new(
                    at,
                    "must change something: set country, region, relationship or personal",
                ));
            }
            EventKind::ProfileUpdated(ProfileChange {
                country,
                region,
                relationship,
                suppression_override: suppression_override(m.suppression_override, at)?,
            })
        }
        Kind::LegalBasisRecorded(m) => {
            let at = "legal_basis_recorded";
            EventKind::LegalBasisRecorded {
                purpose: registry.purpose(&format!("{at}.purpose"), &m.purpose)?,
                basis: legal_basis(m.basis, &format!("{at}.basis"))?,
                justification: required_text(&m.justification, &format!("{at}.justification"))?,
            }
        }
        Kind::AcquisitionRecorded(m) => {
            let at = "acquisition_recorded";
            let source_kind = source_kind(m.source_kind, &format!("{at}.source_kind"))?;
            let supplier = optional_text(&m.supplier, &format!("{at}.supplier"))?;
            if supplier.is_none() && source_kind.needs_supplier() {
                return Err(ValidationError::new(
                    format!("{at}.supplier"),
                    "is required when the source is a purchased list or a data vendor export",
                ));
            }
            EventKind::AcquisitionRecorded {
                source_kind,
                supplier,
                source_reference: required_text(
                    &m.source_reference,
                    &format!("{at}.source_reference"),
                )?,
                notice_sent_at: m
                    .notice_sent_at
                    .map(|t| past_time(&format!("{at}.notice_sent_at"), t, now))
                    .transpose()?,
            }
        }
        Kind::ConsentGranted(m) => {
            let at = "consent_granted";
            let notice = m.notice.ok_or_else(|| {
                ValidationError::new(
                    format!("{at}.notice"),
                    "is required: what the person was shown",
                )
            })?;
            let expires_at = m
                .expires_at
                .map(|t| timestamp(&format!("{at}.expires_at"), t))
                .transpose()?;
            if let (Some(expires), Some(collected)) = (expires_at, occurred_at) {
                if expires <= collected {
                    return Err(ValidationError::new(
                        format!("{at}.expires_at"),
                        "must be after occurred_at (when the consent was collected)",
                    ));
                }
            }
            EventKind::ConsentGranted {
                purpose: registry.purpose(&format!("{at}.purpose"), &m.purpose)?,
                channel: registry.channel(&format!("{at}.channel"), &m.channel)?,
                method: consent_method(m.method, &format!("{at}.method"))?,
                notice: notice_from_proto(notice).map_err(|e| e.within(&format!("{at}.notice")))?,
                form_url: evidence(m.evidence, personal).map_err(|e| e.within(at))?,
                expires_at,
            }
        }
        Kind::ConsentWithdrawn(m) => {
            let at = "consent_withdrawn";
            EventKind::ConsentWithdrawn {
                purpose: registry.purpose(&format!("{at}.purpose"), &m.purpose)?,
                channel: registry.channel(&format!("{at}.channel"), &m.channel)?,
                method: consent_method(m.method, &format!("{at}.method"))?,
                form_url: evidence(m.evidence, personal).map_err(|e| e.within(at))?,
            }
        }
        Kind::DoubleOptInRequested(m) => {
            let at = "double_opt_in_requested";
            EventKind::DoubleOptInRequested {
                purpose: registry.purpose(&format!("{at}.purpose"), &m.purpose)?,
                channel: registry.channel(&format!("{at}.channel"), &m.channel)?,
                token_sha256: sha256_hex(&m.token_sha256, &format!("{at}.token_sha256"))?,
                form_url: evidence(m.evidence, personal).map_err(|e| e.within(at))?,
            }
        }
        Kind::DoubleOptInConfirmed(m) => {
            let at = "double_opt_in_confirmed";
            EventKind::DoubleOptInConfirmed {
                purpose: registry.purpose(&format!("{at}.purpose"), &m.purpose)?,
                channel: registry.channel(&format!("{at}.channel"), &m.channel)?,
                token_sha256: sha256_hex(&m.token_sha256, &format!("{at}.token_sha256"))?,
                form_url: evidence(m.evidence, personal).map_err(|e| e.within(at))?,
            }
        }
        Kind::ObjectionRecorded(m) => EventKind::ObjectionRecorded {
            scope: objection_scope(
                m.scope,
                &m.purpose,
                ("objection_recorded.scope", "objection_recorded.purpose"),
                registry,
            )?,
        },
        Kind::RestrictionApplied(m) => {
            let at = "restriction_applied";
            EventKind::RestrictionApplied {
                ground: restriction_ground(m.ground, &format!("{at}.ground"))?,
                reference: required_text(&m.reference, &format!("{at}.reference"))?,
            }
        }
        Kind::RestrictionLifted(m) => {
            let at = "restriction_lifted";
            if m.restriction_contact_seq == 0 {
                return Err(ValidationError::new(
                    format!("{at}.restriction_contact_seq"),
                    "is required: the contact seq of the restriction_applied entry",
                ));
            }
            EventKind::RestrictionLifted {
                restriction_contact_seq: m.restriction_contact_seq,
                reason: required_text(&m.reason, &format!("{at}.reason"))?,
            }
        }
        Kind::PolicyActivated(_) => {
            return Err(ValidationError::new(
                "policy_activated",
                "is written only by the ledger itself; activate a policy pack with EligibilityService.ActivatePolicy",
            ))
        }
        Kind::ErasureExecuted(_) => {
            return Err(ValidationError::new(
                "erasure_executed",
                "is written only by the ledger itself; erase a contact with RightsService.EraseContact",
            ))
        }
        Kind::RequestOpened(_)
        | Kind::RequestIdentityVerified(_)
        | Kind::RequestAcknowledged(_)
        | Kind::RequestExtended(_)
        | Kind::RequestRejected(_)
        | Kind::RequestCompleted(_) => {
            return Err(ValidationError::new(
                "kind",
                "data-subject request steps are written only through RightsService",
            ))
        }
    })
}

/// What an objection covers, from its scope and the purpose that scope
/// `OBJECTION_SCOPE_PURPOSE` needs; `fields` names the two fields in the request.
fn objection_scope(
    scope: i32,
    purpose: &str,
    (scope_field, purpose_field): (&str, &str),
    registry: &Registry,
) -> Result<model::ObjectionScope, ValidationError> {
    let given = pb::ObjectionScope::try_from(scope).unwrap_or_default();
    Ok(match (given, non_empty(purpose)) {
        (pb::ObjectionScope::DirectMarketing, None) => model::ObjectionScope::DirectMarketing,
        (pb::ObjectionScope::Profiling, None) => model::ObjectionScope::Profiling,
        (pb::ObjectionScope::Purpose, Some(p)) => {
            model::ObjectionScope::Purpose(registry.purpose(purpose_field, p)?)
        }
        (pb::ObjectionScope::Purpose, None) => {
            return Err(ValidationError::new(
                purpose_field,
                "is required when the scope is OBJECTION_SCOPE_PURPOSE",
            ))
        }
        (pb::ObjectionScope::Unspecified, _) => return Err(unspecified(scope_field, scope)),
        (_, Some(_)) => {
            return Err(ValidationError::new(
                purpose_field,
                "must be empty unless the scope is OBJECTION_SCOPE_PURPOSE",
            ))
        }
    })
}

/// Validates a request to open a data-subject request into the submission that records
/// it under `request_id` (requester details go to the sealed personal record).
pub fn open_request_from_proto(
    request: pb::OpenRequestRequest,
    request_id: String,
    registry: &Registry,
    now: DateTime<Utc>,
) -> Result<Submission, SubmissionError> {
    let contact_id = client_contact_id("contact_id", &request.contact_id)?;
    let kind = request_kind_from_proto(request.kind, "kind")?;
    let regime = request_regime(request.regime, "regime")?;
    let received_at = request
        .received_at
        .map(|t| past_time("received_at", t, now))
        .transpose()?;
    let channel = required_text(&request.channel, "channel")?;
    if !REQUEST_CHANNELS.contains(&channel.as_str()) {
        return Err(ValidationError::new(
            "channel",
            format!("must be one of {}", REQUEST_CHANNELS.join(", ")),
        )
        .into());
    }
    let objection = match (kind, request.objection_scope) {
        (model::RequestKind::Objection, scope) => Some(objection_scope(
            scope,
            &request.objection_purpose,
            ("objection_scope", "objection_purpose"),
            registry,
        )?),
        (_, 0) if request.objection_purpose.is_empty() => None,
        _ => {
            return Err(ValidationError::new(
                "objection_scope",
                "is set only for objection requests",
            )
            .into())
        }
    };
    let restriction_ground = match (kind, request.restriction_ground) {
        (model::RequestKind::Restriction, ground) => {
            Some(restriction_ground(ground, "restriction_ground")?)
        }
        (_, 0) => None,
        _ => {
            return Err(ValidationError::new(
                "restriction_ground",
                "is set only for restriction requests",
            )
            .into())
        }
    };
    let mut personal = PersonalRecord::default();
    if let Some(requester) = request.requester {
        personal_data(requester, &mut personal).map_err(|e| e.within("requester"))?;
    }
    let personal = (!personal.is_empty()).then_some(personal);
    let idempotency_key = non_empty(&request.idempotency_key)
        .map(|k| IdempotencyKey::parse("idempotency_key", k))
        .transpose()?;
    Ok(Submission {
        entropy: personal
            .as_ref()
            .map(|_| Entropy::draw().map(Entropy::into_bytes))
            .transpose()?,
        event: Event {
            contact_id,
            idempotency_key,
            occurred_at: received_at,
            kind: EventKind::RequestOpened {
                request_id,
                kind,
                regime,
                channel,
                objection,
                restriction_ground,
            },
        },
        personal,
    })
}

/// How a data-subject request may arrive.
const REQUEST_CHANNELS: [&str; 6] = ["email", "web_form", "letter", "phone", "in_person", "other"];

/// A day written as `YYYY-MM-DD`.
pub fn calendar_day(text: &str, field: &str) -> Result<NaiveDate, ValidationError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| ValidationError::new(field, "must be a day written YYYY-MM-DD"))
}

/// A contact id a client may name (in `field`): valid, and not one of the ledger's own
/// chains.
pub(crate) fn client_contact_id(field: &str, id: &str) -> Result<ContactId, ValidationError> {
    let contact = ContactId::parse(field, id)?;
    if contact.is_reserved() {
        return Err(ValidationError::new(
            field,
            "contact ids starting with '~' are reserved for the ledger's own chains",
        ));
    }
    Ok(contact)
}

fn suppression_override(
    given: Option<pb::SuppressionOverride>,
    at: &str,
) -> Result<Option<String>, ValidationError> {
    given
        .map(|o| {
            required_text(&o.reason, &format!("{at}.suppression_override.reason")).map_err(|_| {
                ValidationError::new(
                    format!("{at}.suppression_override.reason"),
                    "is required: say why the suppressed identity may be recorded again",
                )
            })
        })
        .transpose()
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

fn required_text(text: &str, field: &str) -> Result<String, ValidationError> {
    optional_text(text, field)?.ok_or_else(|| ValidationError::new(field, "is required"))
}

/// Trimmed-empty is `None`; otherwise at most 1 KiB without control characters.
pub(crate) fn optional_text(text: &str, field: &str) -> Result<Option<String>, ValidationError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_TEXT {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_TEXT} bytes (got {})", text.len()),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(Some(text.to_owned()))
}

fn sha256_hex(text: &str, field: &str) -> Result<String, ValidationError> {
    if text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(text.to_owned())
    } else {
        Err(ValidationError::new(
            field,
            "must be a SHA-256 digest as 64 lowercase hex characters",
        ))
    }
}

/// A protobuf timestamp as a UTC time.
pub fn timestamp(field: &str, t: Timestamp) -> Result<DateTime<Utc>, ValidationError> {
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000);
    let time = nanos.and_then(|n| DateTime::from_timestamp(t.seconds, n));
    // Records keep times as nanoseconds since the epoch, which end in 2262.
    match time {
        Some(time) if t.seconds >= 0 && UtcNanos::from_datetime(time).is_some() => Ok(time),
        _ => Err(ValidationError::new(
            field,
            "must be a valid timestamp from 1970-01-01T00:00:00Z to 2262-04-11T23:47:16Z (nanos in 0..1e9)",
        )),
    }
}

fn past_time(
    field: &str,
    t: Timestamp,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ValidationError> {
    let time = timestamp(field, t)?;
    if time > now + MAX_FUTURE_SKEW {
        return Err(ValidationError::new(
            field,
            format!(
                "is more than {} minutes in the future ({} > {})",
                MAX_FUTURE_SKEW.num_minutes(),
                time.to_rfc3339(),
                now.to_rfc3339()
            ),
        ));
    }
    Ok(time)
}

/// A time from a state record as a protobuf timestamp, with no calendar in between.
pub fn record_timestamp(at: UtcNanos) -> Timestamp {
    const NANOS: i64 = 1_000_000_000;
    Timestamp {
        seconds: at.nanos().div_euclid(NANOS),
        nanos: at.nanos().rem_euclid(NANOS) as i32,
    }
}

/// A UTC time as a protobuf timestamp.
pub fn to_timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn unspecified(field: &str, value: i32) -> ValidationError {
    if value == 0 {
        ValidationError::new(field, "is required")
    } else {
        ValidationError::new(field, format!("unknown enum value {value}"))
    }
}

macro_rules! enum_from_proto {
    ($vis:vis $name:ident, $pb:ty, $domain:ty, { $($from:ident => $to:ident),+ $(,)? }) => {
        $vis fn $name(value: i32, field: &str) -> Result<$domain, ValidationError> {
            match <$pb>::try_from(value) {
                $(Ok(<$pb>::$from) => Ok(<$domain>::$to),)+
                _ => Err(unspecified(field, value)),
            }
        }
    };
}

macro_rules! enum_to_proto {
    ($name:ident, $domain:ty, $pb:ty, { $($from:ident => $to:ident),+ $(,)? }) => {
        fn $name(value: $domain) -> i32 {
            match value {
                $(<$domain>::$from => <$pb>::$to as i32,)+
            }
        }
    };
}

enum_from_proto!(legal_basis, pb::LegalBasis, model::LegalBasis, {
    Consent => Consent, Contract => Contract, LegalObligation => LegalObligation,
    VitalInterests => VitalInterests, PublicTask => PublicTask,
    LegitimateInterests => LegitimateInterests,
});
enum_to_proto!(legal_basis_to_proto, model::LegalBasis, pb::LegalBasis, {
    Consent => Consent, Contract => Contract, LegalObligation => LegalObligation,
    VitalInterests => VitalInterests, PublicTask => PublicTask,
    LegitimateInterests => LegitimateInterests,
});
enum_from_proto!(source_kind, pb::SourceKind, model::SourceKind, {
    WebForm => WebForm, Event => Event, PurchasedList => PurchasedList,
    DataVendorExport => DataVendorExport, Referral => Referral, Import => Import, Other => Other,
});
enum_to_proto!(source_kind_to_proto, model::SourceKind, pb::SourceKind, {
    WebForm => WebForm, Event => Event, PurchasedList => PurchasedList,
    DataVendorExport => DataVendorExport, Referral => Referral, Import => Import, Other => Other,
});
enum_from_proto!(consent_method, pb::ConsentMethod, model::ConsentMethod, {
    Checkbox => Checkbox, DoubleOptIn => DoubleOptIn, Verbal => Verbal, Written => Written,
    ImpliedByRelationship => ImpliedByRelationship, ImpliedByInquiry => ImpliedByInquiry,
    PreferenceCenter => PreferenceCenter, UnsubscribeLink => UnsubscribeLink, Other => Other,
});
enum_to_proto!(consent_method_to_proto, model::ConsentMethod, pb::ConsentMethod, {
    Checkbox => Checkbox, DoubleOptIn => DoubleOptIn, Verbal => Verbal, Written => Written,
    ImpliedByRelationship => ImpliedByRelationship, ImpliedByInquiry => ImpliedByInquiry,
    PreferenceCenter => PreferenceCenter, UnsubscribeLink => UnsubscribeLink, Other => Other,
});
enum_from_proto!(restriction_ground, pb::RestrictionGround, model::RestrictionGround, {
    AccuracyContested => AccuracyContested, UnlawfulProcessing => UnlawfulProcessing,
    LegalClaims => LegalClaims, ObjectionPending => ObjectionPending,
});
enum_to_proto!(restriction_ground_to_proto, model::RestrictionGround, pb::RestrictionGround, {
    AccuracyContested => AccuracyContested, UnlawfulProcessing => UnlawfulProcessing,
    LegalClaims => LegalClaims, ObjectionPending => ObjectionPending,
});
enum_from_proto!(pub(crate) request_kind_from_proto, pb::RequestKind, model::RequestKind, {
    Access => Access, Rectification => Rectification, Erasure => Erasure,
    Restriction => Restriction, Portability => Portability, Objection => Objection,
});
enum_to_proto!(request_kind_to_proto, model::RequestKind, pb::RequestKind, {
    Access => Access, Rectification => Rectification, Erasure => Erasure,
    Restriction => Restriction, Portability => Portability, Objection => Objection,
});
enum_from_proto!(request_regime, pb::RequestRegime, model::RequestRegime, {
    Gdpr => Gdpr, UkGdpr => UkGdpr, Ccpa => Ccpa, Lgpd => Lgpd,
});
enum_to_proto!(request_regime_to_proto, model::RequestRegime, pb::RequestRegime, {
    Gdpr => Gdpr, UkGdpr => UkGdpr, Ccpa => Ccpa, Lgpd => Lgpd,
});
enum_from_proto!(audience, pb::Audience, model::Audience, { B2b => B2b, B2c => B2c });
enum_to_proto!(audience_to_proto, model::Audience, pb::Audience, { B2b => B2b, B2c => B2c });
enum_from_proto!(lifecycle, pb::Lifecycle, model::Lifecycle, {
    Prospect => Prospect, Customer => Customer,
});
enum_to_proto!(lifecycle_to_proto, model::Lifecycle, pb::Lifecycle, {
    Prospect => Prospect, Customer => Customer,
});

fn relationship(
    message: Option<pb::Relationship>,
    field: &str,
) -> Result<Option<model::Relationship>, ValidationError> {
    message
        .map(|r| {
            Ok(model::Relationship {
                audience: audience(r.audience, &format!("{field}.audience"))?,
                lifecycle: lifecycle(r.lifecycle, &format!("{field}.lifecycle"))?,
            })
        })
        .transpose()
}

fn notice_from_proto(notice: pb::Notice) -> Result<model::Notice, ValidationError> {
    let id = required_text(&notice.id, "id")?;
    let version = optional_text(&notice.version, "version")?;
    let text_sha256 = non_empty(&notice.text_sha256)
        .map(|d| sha256_hex(d, "text_sha256"))
        .transpose()?;
    if version.is_none() && text_sha256.is_none() {
        return Err(ValidationError::new(
            "version",
            "a notice needs a version or a text_sha256 so what was shown can be proven",
        ));
    }
    Ok(model::Notice {
        id,
        version,
        text_sha256,
        language: optional_text(&notice.language, "language")?,
    })
}

fn personal_data(data: pb::PersonalData, into: &mut PersonalRecord) -> Result<(), ValidationError> {
    if let Some(email) = non_empty(&data.email) {
        let well_formed = email.len() <= 254
            && !email.chars().any(char::is_whitespace)
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.contains('@')
            });
        if !well_formed {
            return Err(ValidationError::new(
                "personal.email",
                "must be an email address (local@domain, at most 254 characters)",
            ));
        }
        into.email = Some(email.to_owned());
    }
    into.name = optional_text(&data.name, "personal.name")?;
    if let Some(phone) = non_empty(&data.phone) {
        let digits = phone.chars().filter(char::is_ascii_digit).count();
        let allowed = phone
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
        if !allowed || !(5..=15).contains(&digits) {
            return Err(ValidationError::new(
                "personal.phone",
                "must be a phone number: 5-15 digits with optional + - ( ) . and spaces",
            ));
        }
        into.phone = Some(phone.to_owned());
    }
    if !data.notes.trim().is_empty() {
        if data.notes.len() > MAX_NOTES {
            return Err(ValidationError::new(
                "personal.notes",
                format!(
                    "must be at most {MAX_NOTES} bytes (got {})",
                    data.notes.len()
                ),
            ));
        }
        if data
            .notes
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(ValidationError::new(
                "personal.notes",
                "must not contain control characters other than newlines and tabs",
            ));
        }
        into.notes = Some(data.notes);
    }
    Ok(())
}

/// Moves the personal parts of collection evidence into `personal`; returns the form URL.
fn evidence(
    evidence: Option<pb::CollectionEvidence>,
    personal: &mut PersonalRecord,
) -> Result<Option<String>, ValidationError> {
    let Some(evidence) = evidence else {
        return Ok(None);
    };
    if let Some(ip) = non_empty(&evidence.ip_address) {
        let ip: IpAddr = ip.parse().map_err(|_| {
            ValidationError::new("evidence.ip_address", "must be an IPv4 or IPv6 address")
        })?;
        personal.ip_address = Some(ip.to_string());
    }
    personal.user_agent = optional_text(&evidence.user_agent, "evidence.user_agent")?;
    let form_url = optional_text(&evidence.form_url, "evidence.form_url")?;
    if let Some(url) = &form_url {
        if url.len() > MAX_URL || !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ValidationError::new(
                "evidence.form_url",
                format!("must be an http(s) URL of at most {MAX_URL} bytes"),
            ));
        }
    }
    Ok(form_url)
}

/// A receipt as the API returns it.
pub fn receipt_to_proto(receipt: &Receipt) -> pb::Receipt {
    pb::Receipt {
        seq: receipt.seq,
        contact_seq: receipt.contact_seq,
        contact_id: receipt.contact_id.to_string(),
        entry_hash: receipt.entry_hash.to_vec(),
        tree_size: receipt.tree_size,
        tree_root: receipt.tree_root.to_vec(),
        recorded_at: Some(to_timestamp(receipt.recorded_at)),
        replayed: receipt.replayed,
    }
}

/// A stored entry as the API returns it (personal fields empty).
pub fn entry_to_proto(stored: &StoredEntry) -> pb::Entry {
    let entry = &stored.entry;
    let body: &EntryBody = &entry.body;
    pb::Entry {
        seq: entry.seq,
        contact_seq: entry.contact_seq,
        contact_id: entry.contact_id.to_string(),
        prev_hash: entry.prev_hash.to_vec(),
        entry_hash: stored.hash.to_vec(),
        recorded_at: Some(to_timestamp(body.recorded_at)),
        actor: body.actor.clone(),
        event: Some(pb::Event {
            contact_id: entry.contact_id.to_string(),
            idempotency_key: body
                .idempotency_key
                .as_ref()
                .map(|k| k.as_str().to_owned())
                .unwrap_or_default(),
            occurred_at: Some(to_timestamp(body.occurred_at)),
            kind: Some(kind_to_proto(&body.event)),
        }),
        personal_data_sha256: body
            .personal_data_sha256
            .as_deref()
            .and_then(|d| hex::decode(d).ok())
            .unwrap_or_default(),
        stored_bytes: stored.bytes.clone(),
    }
}

fn suppression_override_to_proto(reason: &Option<String>) -> Option<pb::SuppressionOverride> {
    reason.as_ref().map(|reason| pb::SuppressionOverride {
        reason: reason.clone(),
    })
}

fn kind_to_proto(kind: &EventKind) -> pb::event::Kind {
    use pb::event::Kind;
    let text = |t: &Option<String>| t.clone().unwrap_or_default();
    let relationship = |r: &model::Relationship| pb::Relationship {
        audience: audience_to_proto(r.audience),
        lifecycle: lifecycle_to_proto(r.lifecycle),
    };
    let evidence = |form_url: &Option<String>| {
        form_url.as_ref().map(|url| pb::CollectionEvidence {
            form_url: url.clone(),
            ..Default::default()
        })
    };
    match kind {
        EventKind::ContactRegistered {
            country,
            region,
            relationship: r,
            suppression_override,
        } => Kind::ContactRegistered(pb::ContactRegistered {
            country: country.to_string(),
            region: region
                .as_ref()
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
            relationship: Some(relationship(r)),
            personal: None,
            suppression_override: suppression_override_to_proto(suppression_override),
        }),
        EventKind::ProfileUpdated(change) => Kind::ProfileUpdated(pb::ProfileUpdated {
            country: change.country.map(|c| c.to_string()).unwrap_or_default(),
            region: change
                .region
                .as_ref()
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
            relationship: change.relationship.as_ref().map(relationship),
            personal: None,
            suppression_override: suppression_override_to_proto(&change.suppression_override),
        }),
        EventKind::LegalBasisRecorded {
            purpose,
            basis,
            justification,
        } => Kind::LegalBasisRecorded(pb::LegalBasisRecorded {
            purpose: purpose.to_string(),
            basis: legal_basis_to_proto(*basis),
            justification: justification.clone(),
        }),
        EventKind::AcquisitionRecorded {
            source_kind,
            supplier,
            source_reference,
            notice_sent_at,
        } => Kind::AcquisitionRecorded(pb::AcquisitionRecorded {
            source_kind: source_kind_to_proto(*source_kind),
            supplier: text(supplier),
            source_reference: source_reference.clone(),
            notice_sent_at: notice_sent_at.map(to_timestamp),
        }),
        EventKind::ConsentGranted {
            purpose,
            channel,
            method,
            notice,
            form_url,
            expires_at,
        } => Kind::ConsentGranted(pb::ConsentGranted {
            purpose: purpose.to_string(),
            channel: channel.to_string(),
            method: consent_method_to_proto(*method),
            notice: Some(pb::Notice {
                id: notice.id.clone(),
                version: text(&notice.version),
                text_sha256: text(&notice.text_sha256),
                language: text(&notice.language),
            }),
            evidence: evidence(form_url),
            expires_at: expires_at.map(to_timestamp),
        }),
        EventKind::ConsentWithdrawn {
            purpose,
            channel,
            method,
            form_url,
        } => Kind::ConsentWithdrawn(pb::ConsentWithdrawn {
            purpose: purpose.to_string(),
            channel: channel.to_string(),
            method: consent_method_to_proto(*method),
            evidence: evidence(form_url),
        }),
        EventKind::DoubleOptInRequested {
            purpose,
            channel,
            token_sha256,
            form_url,
        } => Kind::DoubleOptInRequested(pb::DoubleOptInRequested {
            purpose: purpose.to_string(),
            channel: channel.to_string(),
            token_sha256: token_sha256.clone(),
            evidence: evidence(form_url),
        }),
        EventKind::DoubleOptInConfirmed {
            purpose,
            channel,
            token_sha256,
            form_url,
        } => Kind::DoubleOptInConfirmed(pb::DoubleOptInConfirmed {
            purpose: purpose.to_string(),
            channel: channel.to_string(),
            token_sha256: token_sha256.clone(),
            evidence: evidence(form_url),
        }),
        EventKind::ObjectionRecorded { scope } => {
            let (scope, purpose) = objection_scope_to_proto(scope);
            Kind::ObjectionRecorded(pb::ObjectionRecorded { scope, purpose })
        }
        EventKind::RestrictionApplied { ground, reference } => {
            Kind::RestrictionApplied(pb::RestrictionApplied {
                ground: restriction_ground_to_proto(*ground),
                reference: reference.clone(),
            })
        }
        EventKind::RestrictionLifted {
            restriction_contact_seq,
            reason,
        } => Kind::RestrictionLifted(pb::RestrictionLifted {
            restriction_contact_seq: *restriction_contact_seq,
            reason: reason.clone(),
        }),
        EventKind::PolicyActivated {
            version,
            text_sha256,
        } => Kind::PolicyActivated(pb::PolicyActivated {
            version: version.clone(),
            text_sha256: text_sha256.clone(),
        }),
        EventKind::ErasureExecuted { request_id, reason } => {
            Kind::ErasureExecuted(pb::ErasureExecuted {
                request_id: text(request_id),
                reason: reason.clone(),
            })
        }
        EventKind::RequestOpened {
            request_id,
            kind,
            regime,
            channel,
            objection,
            restriction_ground,
        } => {
            let (objection_scope, objection_purpose) = objection
                .as_ref()
                .map(objection_scope_to_proto)
                .unwrap_or_default();
            Kind::RequestOpened(pb::RequestOpened {
                request_id: request_id.clone(),
                kind: request_kind_to_proto(*kind),
                regime: request_regime_to_proto(*regime),
                channel: channel.clone(),
                objection_scope,
                objection_purpose,
                restriction_ground: restriction_ground.map_or(0, restriction_ground_to_proto),
            })
        }
        EventKind::RequestIdentityVerified { request_id, method } => {
            Kind::RequestIdentityVerified(pb::RequestIdentityVerified {
                request_id: request_id.clone(),
                method: method.clone(),
            })
        }
        EventKind::RequestAcknowledged { request_id } => {
            Kind::RequestAcknowledged(pb::RequestAcknowledged {
                request_id: request_id.clone(),
            })
        }
        EventKind::RequestExtended {
            request_id,
            reason,
            subject_notified_on,
        } => Kind::RequestExtended(pb::RequestExtended {
            request_id: request_id.clone(),
            reason: reason.clone(),
            subject_notified_on: subject_notified_on.to_string(),
        }),
        EventKind::RequestRejected { request_id, reason } => {
            Kind::RequestRejected(pb::RequestRejected {
                request_id: request_id.clone(),
                reason: reason.clone(),
            })
        }
        EventKind::RequestCompleted {
            request_id,
            outcome,
        } => Kind::RequestCompleted(pb::RequestCompleted {
            request_id: request_id.clone(),
            outcome: outcome.clone(),
        }),
    }
}

/// A decrypted personal-data record for an export.
pub fn personal_record_to_proto(record: PersonalRecord) -> pb::PersonalRecord {
    pb::PersonalRecord {
        email: record.email.unwrap_or_default(),
        name: record.name.unwrap_or_default(),
        phone: record.phone.unwrap_or_default(),
        ip_address: record.ip_address.unwrap_or_default(),
        user_agent: record.user_agent.unwrap_or_default(),
        notes: record.notes.unwrap_or_default(),
    }
}

/// The erasure a contact's state records, with the entry that executed it.
pub fn erasure_to_proto(entry: &StoredEntry) -> pb::Erasure {
    let (request_id, reason) = match &entry.entry.body.event {
        EventKind::ErasureExecuted { request_id, reason } => {
            (request_id.clone().unwrap_or_default(), reason.clone())
        }
        _ => Default::default(),
    };
    pb::Erasure {
        seq: entry.entry.seq,
        contact_seq: entry.entry.contact_seq,
        recorded_at: Some(to_timestamp(entry.entry.body.recorded_at)),
        reason,
        request_id,
    }
}

/// A data-subject request as the API shows it on `today`.
pub fn request_to_proto(
    contact: &ContactId,
    record: &RequestRecord,
    today: NaiveDate,
) -> pb::DataSubjectRequest {
    let state = &record.state;
    let closed = state.status.is_closed();
    pb::DataSubjectRequest {
        request_id: record.id.clone(),
        contact_id: contact.to_string(),
        kind: request_kind_to_proto(state.kind),
        regime: request_regime_to_proto(state.regime),
        status: match state.status {
            RequestStatus::Open => pb::RequestStatus::Open,
            RequestStatus::Extended => pb::RequestStatus::Extended,
            RequestStatus::Rejected => pb::RequestStatus::Rejected,
            RequestStatus::Completed => pb::RequestStatus::Completed,
        } as i32,
        received_on: state.received_on.to_string(),
        due_on: state.due.to_string(),
        original_due_on: state.original_due.to_string(),
        acknowledgement_due_on: state.ack_due.map(|d| d.to_string()).unwrap_or_default(),
        acknowledged_at: state.acknowledged_at.map(to_timestamp),
        identity_verified_at: state.identity_verified_at.map(to_timestamp),
        extended_at: state.extended_at.map(to_timestamp),
        closed_at: state.closed_at.map(to_timestamp),
        overdue: state.is_overdue(today),
        days_left: if closed { 0 } else { state.days_left(today) },
        closed_late: state.completed_late().unwrap_or(false),
        opened_contact_seq: record.opened.contact_seq,
        last_step_contact_seq: record.last_step.contact_seq,
        acknowledgement_overdue: !closed
            && state.acknowledged_at.is_none()
            && state.ack_due.is_some_and(|due| today > due),
    }
}

/// A contact's folded state, for an export.
pub fn contact_summary_to_proto(
    contact: &ContactId,
    state: &ContactState,
    today: NaiveDate,
) -> pb::ContactSummary {
    let confirmed = |purpose: &model::PurposeId, channel: &model::ChannelId| {
        state
            .double_opt_ins
            .iter()
            .find(|d| d.purpose == *purpose && d.channel == *channel)
            .and_then(|d| d.confirmed)
            .map_or(0, |e| e.contact_seq)
    };
    pb::ContactSummary {
        country: state.country.to_string(),
        region: state
            .region
            .as_ref()
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
        relationship: Some(pb::Relationship {
            audience: audience_to_proto(state.relationship.audience),
            lifecycle: lifecycle_to_proto(state.relationship.lifecycle),
        }),
        legal_bases: state
            .bases
            .iter()
            .map(|b| pb::BasisSummary {
                purpose: b.purpose.to_string(),
                basis: legal_basis_to_proto(b.basis),
                contact_seq: b.evidence.contact_seq,
            })
            .collect(),
        consents: state
            .consents
            .iter()
            .map(|c| pb::ConsentSummary {
                purpose: c.purpose.to_string(),
                channel: c.channel.to_string(),
                granted_contact_seq: c.granted.as_ref().map_or(0, |g| g.evidence.contact_seq),
                method: c
                    .granted
                    .as_ref()
                    .map_or(0, |g| consent_method_to_proto(g.method)),
                expires_at: c
                    .granted
                    .as_ref()
                    .and_then(|g| g.expires_at)
                    .map(record_timestamp),
                withdrawn_contact_seq: c.withdrawn.map_or(0, |w| w.contact_seq),
                confirmed_contact_seq: confirmed(&c.purpose, &c.channel),
            })
            .collect(),
        objections: state
            .objections
            .iter()
            .map(|o| {
                let (scope, purpose) = objection_scope_to_proto(&o.scope);
                pb::ObjectionSummary {
                    scope,
                    purpose,
                    contact_seq: o.evidence.contact_seq,
                }
            })
            .collect(),
        restrictions: state
            .restrictions
            .iter()
            .map(|r| pb::RestrictionSummary {
                ground: restriction_ground_to_proto(r.ground),
                contact_seq: r.evidence.contact_seq,
            })
            .collect(),
        acquisition_contact_seqs: state.acquisitions.iter().map(|a| a.contact_seq).collect(),
        erased_contact_seq: state.erased.map_or(0, |e| e.contact_seq),
        requests: state
            .requests
            .iter()
            .map(|r| request_to_proto(contact, r, today))
            .collect(),
    }
}

fn objection_scope_to_proto(scope: &model::ObjectionScope) -> (i32, String) {
    match scope {
        model::ObjectionScope::DirectMarketing => {
            (pb::ObjectionScope::DirectMarketing as i32, String::new())
        }
        model::ObjectionScope::Profiling => (pb::ObjectionScope::Profiling as i32, String::new()),
        model::ObjectionScope::Purpose(p) => (pb::ObjectionScope::Purpose as i32, p.to_string()),
    }
}

/// A chain report as the API returns it.
pub fn chain_report_to_proto(report: &ChainReport) -> pb::VerifyContactResponse {
    pb::VerifyContactResponse {
        ok: report.first_break.is_none(),
        entries_checked: report.entries_checked,
        head_hash: if report.first_break.is_none() {
            report.head_hash.to_vec()
        } else {
            Vec::new()
        },
        first_break: report.first_break.as_ref().map(chain_break_to_proto),
    }
}

fn chain_break_to_proto(broken: &ChainBreak) -> pb::ChainBreak {
    let problem = match broken.problem {
        ChainProblem::Undecodable => pb::ChainProblem::Undecodable,
        ChainProblem::HashMismatch => pb::ChainProblem::HashMismatch,
        ChainProblem::PrevHashMismatch => pb::ChainProblem::PrevHashMismatch,
        ChainProblem::Misplaced => pb::ChainProblem::Misplaced,
        ChainProblem::Missing => pb::ChainProblem::Missing,
        ChainProblem::PersonalDataDigestMismatch => pb::ChainProblem::PersonalDataDigestMismatch,
        ChainProblem::HeadMismatch => pb::ChainProblem::HeadMismatch,
    };
    pb::ChainBreak {
        seq: broken.seq,
        contact_seq: broken.contact_seq,
        problem: problem as i32,
        detail: broken.detail.clone(),
    }
}

/// A stored checkpoint as the API returns it.
pub fn checkpoint_to_proto(checkpoint: &StoredCheckpoint) -> pb::Checkpoint {
    pb::Checkpoint {
        note: checkpoint.note.clone(),
        tree_size: checkpoint.size,
        root: checkpoint.root.to_vec(),
        issued_at: Some(to_timestamp(checkpoint.issued_at)),
    }
}

/// An inclusion proof as the API returns it.
pub fn inclusion_proof_to_proto(
    leaf_index: u64,
    tree_size: u64,
    hashes: &[Hash],
) -> pb::InclusionProof {
    pb::InclusionProof {
        leaf_index,
        tree_size,
        hashes: hashes.iter().map(|h| h.to_vec()).collect(),
    }
}

/// A full verification report as the API returns it.
pub fn ledger_report_to_proto(report: &LedgerReport, seconds: f64) -> pb::VerifyResult {
    pb::VerifyResult {
        ok: report.is_ok(),
        entries_verified: report.entries,
        bytes_hashed: report.bytes,
        tree_size: report.tree_size,
        root: report.root.to_vec(),
        checkpoints_checked: report.checkpoints_checked,
        damage: report.damage.iter().map(damage_to_proto).collect(),
        more_damage: report.more_damage,
        seconds,
    }
}

fn damage_to_proto(damage: &Damage) -> pb::Damage {
    let kind = match damage.kind {
        DamageKind::Changed => pb::DamageKind::Changed,
        DamageKind::Missing => pb::DamageKind::Missing,
        DamageKind::Reordered => pb::DamageKind::Reordered,
        DamageKind::Undecodable => pb::DamageKind::Undecodable,
        DamageKind::ChainBreak => pb::DamageKind::ChainBreak,
        DamageKind::DigestMismatch => pb::DamageKind::DigestMismatch,
        DamageKind::TreeMismatch => pb::DamageKind::TreeMismatch,
        DamageKind::HeadMismatch => pb::DamageKind::HeadMismatch,
        DamageKind::IndexMismatch => pb::DamageKind::IndexMismatch,
        DamageKind::CheckpointMismatch => pb::DamageKind::CheckpointMismatch,
        DamageKind::Rollback => pb::DamageKind::Rollback,
    };
    pb::Damage {
        seq: damage.seq,
        kind: kind as i32,
        detail: damage.detail.clone(),
    }
}

/// A bundle as the API returns it.
pub fn bundle_to_proto(
    contact_id: &str,
    checkpoint: &StoredCheckpoint,
    entries: Vec<BundleEntry>,
) -> pb::Bundle {
    pb::Bundle {
        format: 1,
        contact_id: contact_id.to_owned(),
        checkpoint: Some(checkpoint_to_proto(checkpoint)),
        entries: entries
            .into_iter()
            .map(|entry| pb::BundleEntry {
                stored_bytes: entry.stored_bytes,
                inclusion_proof: entry.inclusion_proof.iter().map(|h| h.to_vec()).collect(),
            })
            .collect(),
    }
}

/// A bundle read from the API (or its JSON file) in domain form. Refuses hashes that
/// are not 32 bytes, naming the entry.
pub fn bundle_from_proto(bundle: pb::Bundle) -> Result<Bundle, ValidationError> {
    if bundle.format != 1 {
        return Err(ValidationError::new(
            "format",
            format!(
                "unknown bundle format {}; this version reads format 1",
                bundle.format
            ),
        ));
    }
    let checkpoint = bundle
        .checkpoint
        .ok_or_else(|| ValidationError::new("checkpoint", "is required"))?;
    let entries = bundle
        .entries
        .into_iter()
        .enumerate()
        .map(|(at, entry)| {
            let inclusion_proof = entry
                .inclusion_proof
                .iter()
                .map(|h| {
                    <Hash>::try_from(h.as_slice()).map_err(|_| {
                        ValidationError::new(
                            format!("entries[{at}].inclusion_proof"),
                            "every hash must be 32 bytes",
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(BundleEntry {
                stored_bytes: entry.stored_bytes,
                inclusion_proof,
            })
        })
        .collect::<Result<_, ValidationError>>()?;
    Ok(Bundle {
        contact_id: bundle.contact_id,
        checkpoint_note: checkpoint.note,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> pb::Event {
        pb::Event {
            contact_id: "crm-1".into(),
            kind: Some(pb::event::Kind::ContactRegistered(pb::ContactRegistered {
                country: "DE".into(),
                region: String::new(),
                relationship: Some(pb::Relationship {
                    audience: pb::Audience::B2c as i32,
                    lifecycle: pb::Lifecycle::Prospect as i32,
                }),
                personal: Some(pb::PersonalData {
                    email: "jane@example.com".into(),
                    name: "Jane".into(),
                    phone: String::new(),
                    notes: String::new(),
                }),
                suppression_override: None,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn personal_data_leaves_the_event() {
        let submission =
            submission_from_proto(registered(), &Registry::default(), Utc::now()).unwrap();
        assert_eq!(
            submission
                .personal
                .as_ref()
                .and_then(|p| p.email.as_deref()),
            Some("jane@example.com")
        );
        let json = serde_json::to_string(&submission.event).unwrap();
        assert!(!json.contains("jane"), "{json}");
    }

    #[test]
    fn future_times_are_refused() {
        let now = Utc::now();
        let mut event = registered();
        event.occurred_at = Some(to_timestamp(now + Duration::minutes(6)));
        let Err(SubmissionError::Invalid(err)) =
            submission_from_proto(event, &Registry::default(), now)
        else {
            panic!("a time 6 minutes ahead must be refused");
        };
        assert_eq!(err.field, "occurred_at");
        let mut event = registered();
        event.occurred_at = Some(to_timestamp(now + Duration::minutes(4)));
        assert!(submission_from_proto(event, &Registry::default(), now).is_ok());
    }

    #[test]
    fn times_a_record_cannot_hold_are_refused() {
        let grant = |seconds| pb::Event {
            contact_id: "crm-1".into(),
            kind: Some(pb::event::Kind::ConsentGranted(pb::ConsentGranted {
                purpose: "email_marketing".into(),
                channel: "email".into(),
                method: pb::ConsentMethod::Checkbox as i32,
                notice: Some(pb::Notice {
                    id: "privacy".into(),
                    version: "3".into(),
                    ..Default::default()
                }),
                expires_at: Some(Timestamp { seconds, nanos: 0 }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let now = Utc::now();
        // 2262-04-11T23:47:16Z is the last whole second a record holds; a year-3000 end
        // of validity once reached the state encoder and failed there.
        assert!(submission_from_proto(grant(9_223_372_036), &Registry::default(), now).is_ok());
        for seconds in [9_223_372_037, 32_503_680_000] {
            let Err(SubmissionError::Invalid(err)) =
                submission_from_proto(grant(seconds), &Registry::default(), now)
            else {
                panic!("an end of validity at {seconds} s must be refused");
            };
            assert_eq!(err.field, "consent_granted.expires_at");
            assert!(err.rule.contains("2262-04-11"), "{}", err.rule);
        }
    }

    #[test]
    fn unknown_enum_values_name_the_field() {
        let mut event = registered();
        if let Some(pb::event::Kind::ContactRegistered(m)) = &mut event.kind {
            m.relationship = Some(pb::Relationship {
                audience: 42,
                lifecycle: 1,
            });
        }
        let Err(SubmissionError::Invalid(err)) =
            submission_from_proto(event, &Registry::default(), Utc::now())
        else {
            panic!("an unknown audience must be refused");
        };
        assert_eq!(err.field, "contact_registered.relationship.audience");
        assert!(err.rule.contains("42"));
    }
}
