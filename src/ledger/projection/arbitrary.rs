//! Contact states of every shape, for property tests: evidence at the extremes of its
//! ranges, ids held inline and on the heap, every enum, requests.

use std::collections::BTreeSet;

use chrono::DateTime;
use proptest::prelude::*;

use super::{
    BasisState, ConsentState, ContactState, DoubleOptInState, EvidenceRef, Grant, Objection,
    RequestRecord, Restriction, UtcNanos,
};
use crate::model::{
    Audience, ChannelId, ConsentMethod, Country, LegalBasis, Lifecycle, ObjectionScope, PurposeId,
    Region, Registry, Relationship, RequestKind, RequestRegime, RestrictionGround,
};
use crate::rights::RequestState;

fn registry() -> Registry {
    let ids = |ids: &[&str]| {
        ids.iter()
            .map(|id| (*id).to_owned())
            .collect::<BTreeSet<_>>()
    };
    Registry::new(
        // The last is longer than the 24 bytes an id holds inline.
        ids(&[
            "email_marketing",
            "profiling",
            "a_purpose_named_at_some_length",
        ]),
        ids(&["email", "sms"]),
    )
}

fn purpose() -> impl Strategy<Value = PurposeId> {
    prop::sample::select(vec![
        "email_marketing",
        "profiling",
        "a_purpose_named_at_some_length",
    ])
    .prop_map(|id| registry().purpose("purpose", id).unwrap())
}

fn channel() -> impl Strategy<Value = ChannelId> {
    prop::sample::select(vec!["email", "sms"])
        .prop_map(|id| registry().channel("channel", id).unwrap())
}

fn evidence() -> impl Strategy<Value = EvidenceRef> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(|(seq, contact_seq, hash, occurred, recorded)| EvidenceRef {
            seq,
            contact_seq,
            hash,
            occurred_at: UtcNanos(occurred),
            recorded_at: UtcNanos(recorded),
        })
}

fn small_evidence() -> impl Strategy<Value = EvidenceRef> {
    (0u64..200, 1u64..40, any::<u8>(), 0i64..2_000_000_000).prop_map(
        |(seq, contact_seq, byte, secs)| EvidenceRef {
            seq,
            contact_seq,
            hash: [byte; 32],
            occurred_at: UtcNanos(secs * 1_000_000_000),
            recorded_at: UtcNanos(secs * 1_000_000_000 + 7),
        },
    )
}

fn request() -> impl Strategy<Value = RequestRecord> {
    (
        "[a-z0-9-]{1,30}",
        0usize..6,
        0usize..4,
        0i64..2_000_000_000,
        small_evidence(),
    )
        .prop_map(|(id, kind, regime, secs, evidence)| {
            let kinds = [
                RequestKind::Access,
                RequestKind::Rectification,
                RequestKind::Erasure,
                RequestKind::Restriction,
                RequestKind::Portability,
                RequestKind::Objection,
            ];
            let regimes = [
                RequestRegime::Gdpr,
                RequestRegime::UkGdpr,
                RequestRegime::Ccpa,
                RequestRegime::Lgpd,
            ];
            let at = DateTime::from_timestamp(secs, 0).unwrap();
            RequestRecord {
                id,
                state: RequestState::open(kinds[kind], regimes[regime], at, at).unwrap(),
                opened: evidence,
                last_step: evidence,
            }
        })
}

/// States with every field filled in every way a record can hold it: evidence at the
/// extremes of its ranges, ids held inline and on the heap, every enum.
pub(crate) fn state() -> impl Strategy<Value = ContactState> {
    let basis =
        (purpose(), 0usize..6, evidence()).prop_map(|(purpose, basis, evidence)| BasisState {
            purpose,
            basis: [
                LegalBasis::Consent,
                LegalBasis::Contract,
                LegalBasis::LegalObligation,
                LegalBasis::VitalInterests,
                LegalBasis::PublicTask,
                LegalBasis::LegitimateInterests,
            ][basis],
            evidence,
        });
    let grant = (0usize..9, prop::option::of(any::<i64>()), evidence()).prop_map(
        |(method, expires, evidence)| Grant {
            method: [
                ConsentMethod::Checkbox,
                ConsentMethod::DoubleOptIn,
                ConsentMethod::Verbal,
                ConsentMethod::Written,
                ConsentMethod::ImpliedByRelationship,
                ConsentMethod::ImpliedByInquiry,
                ConsentMethod::PreferenceCenter,
                ConsentMethod::UnsubscribeLink,
                ConsentMethod::Other,
            ][method],
            expires_at: expires.map(UtcNanos),
            evidence,
        },
    );
    let consent = (
        purpose(),
        channel(),
        prop::option::of(grant),
        prop::option::of(evidence()),
    )
        .prop_map(|(purpose, channel, granted, withdrawn)| ConsentState {
            purpose,
            channel,
            granted,
            withdrawn,
        });
    let double_opt_in = (
        purpose(),
        channel(),
        prop::collection::vec(("\\PC{0,70}", evidence()), 0..3),
        prop::option::of(evidence()),
    )
        .prop_map(|(purpose, channel, pending, confirmed)| DoubleOptInState {
            purpose,
            channel,
            pending,
            confirmed,
        });
    let objection =
        (0u8..3, purpose(), evidence()).prop_map(|(kind, purpose, evidence)| Objection {
            scope: match kind {
                0 => ObjectionScope::DirectMarketing,
                1 => ObjectionScope::Profiling,
                _ => ObjectionScope::Purpose(purpose),
            },
            evidence,
        });
    let restriction = (0usize..4, evidence()).prop_map(|(ground, evidence)| Restriction {
        ground: [
            RestrictionGround::AccuracyContested,
            RestrictionGround::UnlawfulProcessing,
            RestrictionGround::LegalClaims,
            RestrictionGround::ObjectionPending,
        ][ground],
        evidence,
    });
    let place = prop::sample::select(vec![
        ("DE", None),
        ("US", Some("US-MI")),
        ("FR", None),
        ("CA", Some("CA-QC")),
    ])
    .prop_map(|(country, region)| {
        let country = Country::parse("country", country).unwrap();
        let region = region.map(|r| Region::parse("region", r, country).unwrap());
        (country, region)
    });
    let relationship = (any::<bool>(), any::<bool>()).prop_map(|(b2b, customer)| Relationship {
        audience: if b2b { Audience::B2b } else { Audience::B2c },
        lifecycle: if customer {
            Lifecycle::Customer
        } else {
            Lifecycle::Prospect
        },
    });
    (
        (
            any::<u64>(),
            any::<[u8; 32]>(),
            evidence(),
            place,
            relationship,
        ),
        (evidence(), evidence()),
        (
            prop::collection::vec(basis, 0..4),
            prop::collection::vec(consent, 0..6),
            prop::collection::vec(double_opt_in, 0..3),
            prop::collection::vec(objection, 0..3),
            prop::collection::vec(restriction, 0..3),
        ),
        (
            prop::collection::vec(evidence(), 0..3),
            prop::option::of(evidence()),
            prop::option::of(evidence()),
            prop::collection::vec(request(), 0..3),
        ),
    )
        .prop_map(
            |(
                (head_contact_seq, head_hash, registered, (country, region), relationship),
                (country_evidence, relationship_evidence),
                (bases, consents, double_opt_ins, objections, restrictions),
                (acquisitions, personal_data, erased, requests),
            )| ContactState {
                head_contact_seq,
                head_hash,
                registered,
                country,
                region,
                relationship,
                country_evidence,
                relationship_evidence,
                bases,
                consents,
                double_opt_ins,
                objections,
                restrictions,
                acquisitions,
                personal_data,
                erased,
                requests,
            },
        )
}
