//! The decision: may purpose P be carried out on channel C for a contact in a given state,
//! at a given time, under a policy pack — with the rule that decided, reasons a person can
//! read, and the entries relied on. Pure: a function of its arguments.

use chrono::{DateTime, Months, Utc};

use super::pack::{CountryPolicy, PolicyPack, PurposePolicy, PurposeRule, Regime};
use crate::ledger::projection::{
    happened_after, ConsentState, EvidenceRef, Grant, Objection, UtcNanos,
};
use crate::ledger::ContactState;
use crate::model::{Audience, ConsentMethod, Country, LegalBasis, Lifecycle, ObjectionScope};

/// Why an entry is cited by a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceRole {
    /// The contact's country (registration or move).
    Country,
    /// The contact's relationship (B2B/B2C, customer).
    Relationship,
    /// A lawful basis recorded for a purpose.
    LegalBasis,
    /// A consent grant.
    Consent,
    /// A consent withdrawal (opt-out).
    Withdrawal,
    /// A double opt-in confirmation.
    DoubleOptInConfirmation,
    /// An objection.
    Objection,
    /// A restriction of processing.
    Restriction,
    /// An acquisition record.
    Acquisition,
    /// The erasure of the contact's personal data.
    Erasure,
}

impl EvidenceRole {
    /// The role's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Self::Country => "country",
            Self::Relationship => "relationship",
            Self::LegalBasis => "legal_basis",
            Self::Consent => "consent",
            Self::Withdrawal => "withdrawal",
            Self::DoubleOptInConfirmation => "double_opt_in_confirmation",
            Self::Objection => "objection",
            Self::Restriction => "restriction",
            Self::Acquisition => "acquisition",
            Self::Erasure => "erasure",
        }
    }
}

/// An entry a decision relied on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// Why it is cited.
    pub role: EvidenceRole,
    /// The entry.
    pub entry: EvidenceRef,
}

/// An explained answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the purpose may be carried out.
    pub allowed: bool,
    /// Stable id of the rule that decided, e.g. `double_opt_in.unconfirmed`.
    pub rule_id: &'static str,
    /// The email-marketing regime applied, for purposes decided by country.
    pub regime: Option<Regime>,
    /// The contact's country at the time decided for.
    pub country: Country,
    /// B2B or B2C at that time.
    pub audience: Audience,
    /// Why, in words, most important first.
    pub reasons: Vec<String>,
    /// Conditions a person must still check, or gaps in the record that did not decide.
    pub warnings: Vec<String>,
    /// The entries relied on.
    pub evidence: Vec<Evidence>,
    /// Whether reasons, warnings and evidence are gathered (see [`Detail`]).
    explained: bool,
}

/// How much of a decision to write out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// With reasons, warnings and the evidence relied on (`Check`, full `Screen`).
    Explained,
    /// Outcome, rule and regime only: the same decision with no reasons, warnings or
    /// evidence built. What a screened campaign list asks for, contact after contact.
    Brief,
}

/// Decides `purpose` on `channel` for a contact in `state` at time `at` under `pack`.
/// `purpose` and `channel` must already be checked against the pack with
/// [`PolicyPack::check_target`]; an id the pack does not know is denied.
pub fn decide(
    pack: &PolicyPack,
    state: &ContactState,
    purpose: &str,
    channel: &str,
    at: DateTime<Utc>,
    detail: Detail,
) -> Decision {
    let mut decision = Decision {
        allowed: false,
        rule_id: "",
        regime: None,
        country: state.country,
        audience: state.relationship.audience,
        reasons: Vec::new(),
        warnings: Vec::new(),
        evidence: Vec::new(),
        explained: detail == Detail::Explained,
    };
    let Some(policy) = pack.purposes.get(purpose) else {
        return decision.deny("purpose.unknown", || {
            format!("policy {} does not define purpose {purpose}", pack.version)
        });
    };
    let ctx = Context {
        pack,
        state,
        purpose,
        channel,
        at,
        policy,
    };
    if policy.rule != PurposeRule::LegalBasis && ctx.storage_basis().is_none() {
        decision.warn(|| storage_basis_warning(pack));
    }
    ctx.decide(decision)
}

struct Context<'a> {
    pack: &'a PolicyPack,
    state: &'a ContactState,
    purpose: &'a str,
    channel: &'a str,
    at: DateTime<Utc>,
    policy: &'a PurposePolicy,
}

/// Why the record holds no consent in force for one purpose on one channel.
enum Refusal<'a> {
    Missing,
    Withdrawn(&'a Grant, EvidenceRef),
    OptedOutWithoutGrant(EvidenceRef),
    Expired(&'a Grant, DateTime<Utc>),
    ImpliedNotAccepted(&'a Grant),
    NotExplicit(&'a Grant),
}

impl Context<'_> {
    fn decide(&self, mut d: Decision) -> Decision {
        if let Some(erasure) = self.state.erased {
            d.cite(EvidenceRole::Erasure, erasure);
            return d.deny(
                "erased",
                || format!(
                    "the person's data was erased (GDPR Art. 17) at contact seq {}: no purpose may be carried out, and the identity is suppressed",
                    erasure.contact_seq
                ),
            );
        }
        if self.policy.rule != PurposeRule::LegalBasis {
            if let Some(restriction) = self.state.restrictions.first() {
                d.cite(EvidenceRole::Restriction, restriction.evidence);
                return d.deny(
                    "restriction",
                    || format!(
                        "processing is restricted (GDPR Art. 18) since contact seq {}: only storage is allowed until the restriction is lifted",
                        restriction.evidence.contact_seq
                    ),
                );
            }
        }
        if let Some(objection) = self.objection() {
            d.cite(EvidenceRole::Objection, objection.evidence);
            return d.deny("objection", || self.objection_reason(objection));
        }
        match self.policy.rule {
            PurposeRule::LegalBasis => self.legal_basis(d),
            PurposeRule::CountryRegime => self.country_regime(d),
            PurposeRule::ExplicitConsent => self.explicit_consent(d),
            PurposeRule::ConsentOrLegitimateInterests => self.consent_or_legitimate_interests(d),
        }
    }

    /// The objection in force that covers this purpose, unless the person gave explicit
    /// consent for it afterwards.
    fn objection(&self) -> Option<&Objection> {
        let consent = self.consent(self.country_policy());
        let regranted_after = |objection: &EvidenceRef| match &consent {
            Ok(grant) => is_explicit(grant.method) && happened_after(&grant.evidence, objection),
            _ => false,
        };
        self.state.objections.iter().rev().find(|o| {
            let covers = match &o.scope {
                ObjectionScope::DirectMarketing => self.policy.direct_marketing,
                ObjectionScope::Profiling => self.policy.profiling,
                ObjectionScope::Purpose(p) => p.as_str() == self.purpose,
            };
            covers && !regranted_after(&o.evidence)
        })
    }

    /// Why `objection` (one [`Context::objection`] found) denies this purpose.
    fn objection_reason(&self, objection: &Objection) -> String {
        let at = objection.evidence.contact_seq;
        match &objection.scope {
            ObjectionScope::DirectMarketing => format!(
                "the person objected to direct marketing (GDPR Art. 21(2)-(3), absolute) at contact seq {at}; it covers {} and related profiling",
                self.purpose
            ),
            ObjectionScope::Profiling => {
                format!("the person objected to profiling (GDPR Art. 21) at contact seq {at}")
            }
            ObjectionScope::Purpose(_) => format!(
                "the person objected to processing for {} (GDPR Art. 21(1)) at contact seq {at}",
                self.purpose
            ),
        }
    }

    fn legal_basis(&self, mut d: Decision) -> Decision {
        let Some(basis) = self
            .state
            .bases
            .iter()
            .find(|b| b.purpose.as_str() == self.purpose)
        else {
            return d.deny(
                "legal_basis.missing",
                || format!(
                    "no lawful basis (GDPR Art. 6(1)) is recorded for {}: record one with legal_basis_recorded",
                    self.purpose
                ),
            );
        };
        d.cite(EvidenceRole::LegalBasis, basis.evidence);
        if basis.basis == LegalBasis::Consent {
            return match self.consent(self.country_policy()) {
                Ok(grant) => {
                    d.cite(EvidenceRole::Consent, grant.evidence);
                    d.allow("legal_basis.recorded", || {
                        format!(
                            "the basis recorded for {} is consent, and it is in force",
                            self.purpose
                        )
                    })
                }
                Err(status) => self.deny_consent(d, status),
            };
        }
        d.allow("legal_basis.recorded", || {
            format!(
                "{} rests on {} (GDPR Art. 6(1)), recorded at contact seq {}",
                self.purpose,
                basis_name(basis.basis),
                basis.evidence.contact_seq
            )
        })
    }

    fn country_regime(&self, mut d: Decision) -> Decision {
        d.cite(EvidenceRole::Country, self.state.country_evidence);
        d.cite(EvidenceRole::Relationship, self.state.relationship_evidence);
        let country = self.state.country;
        let country_policy = self.country_policy();
        let regime = match country_policy {
            Some(rule) => match self.state.relationship.audience {
                Audience::B2b => rule.b2b,
                Audience::B2c => rule.b2c,
            },
            None => {
                if self.pack.unknown_country == Regime::Excluded {
                    return d.deny(
                        "country.unknown",
                        || format!(
                            "policy {} has no rule for country {country}, and countries without a rule are excluded",
                            self.pack.version
                        ),
                    );
                }
                d.warn(|| format!(
                    "policy {} has no rule for country {country}; its default for unknown countries ({}) applies",
                    self.pack.version, self.pack.unknown_country
                ));
                self.pack.unknown_country
            }
        };
        d.regime = Some(regime);
        let audience = audience_name(self.state.relationship.audience);
        if let (Some(condition), Audience::B2b) = (
            country_policy.and_then(|c| c.b2b_condition.as_ref()),
            self.state.relationship.audience,
        ) {
            d.warn(|| format!("B2B condition in {country}: {condition}"));
        }
        let consent = self.consent(country_policy);
        match regime {
            Regime::Excluded => d.deny("regime.excluded", || {
                format!(
                    "policy {} excludes {audience} contacts in {country} from {}",
                    self.pack.version, self.purpose
                )
            }),
            Regime::OptOut => match consent {
                Err(
                    Refusal::Withdrawn(_, withdrawal) | Refusal::OptedOutWithoutGrant(withdrawal),
                ) => {
                    d.cite(EvidenceRole::Withdrawal, withdrawal);
                    d.deny(
                        "opt_out.opted_out",
                        || format!(
                            "{country} is an opt-out country for {audience} contacts, and the person opted out of {} on {} at contact seq {}",
                            self.purpose, self.channel, withdrawal.contact_seq
                        ),
                    )
                }
                // Consent is more than the regime asks, and a basis for this purpose.
                Ok(grant) => {
                    d.cite(EvidenceRole::Consent, grant.evidence);
                    d.allow(
                        "consent.granted",
                        || format!(
                            "{country} is an opt-out country for {audience} contacts ({}), and consent to {} on {} was given at contact seq {}",
                            source(country_policy), self.purpose, self.channel, grant.evidence.contact_seq
                        ),
                    )
                }
                Err(_) => {
                    let Some(basis) = self.storage_basis() else {
                        return d.deny(
                            "opt_out.no_basis",
                            || format!(
                                "{country} is an opt-out country for {audience} contacts, but the contact may be emailed only once a lawful basis for holding it is recorded"
                            ),
                        );
                    };
                    d.cite(EvidenceRole::LegalBasis, basis);
                    if let Some(acquisition) = self.state.acquisitions.last() {
                        d.cite(EvidenceRole::Acquisition, *acquisition);
                    }
                    d.allow(
                        "opt_out.allowed",
                        || format!(
                            "{country} is an opt-out country for {audience} contacts ({}), the contact is held on a recorded basis, and the person has not opted out of {} on {}",
                            source(country_policy), self.purpose, self.channel
                        ),
                    )
                }
            },
            Regime::OptIn | Regime::DoubleOptIn => {
                let double = regime == Regime::DoubleOptIn;
                match consent {
                    Ok(grant) => {
                        d.cite(EvidenceRole::Consent, grant.evidence);
                        if !double {
                            return d.allow(
                                "consent.granted",
                                || format!(
                                    "{country} is an opt-in country for {audience} contacts ({}), and consent to {} on {} was given at contact seq {}",
                                    source(country_policy), self.purpose, self.channel, grant.evidence.contact_seq
                                ),
                            );
                        }
                        match self.confirmation() {
                            Some(confirmed) => {
                                d.cite(EvidenceRole::DoubleOptInConfirmation, confirmed);
                                d.allow(
                                    "double_opt_in.confirmed",
                                    || format!(
                                        "{country} requires double opt-in for {audience} contacts ({}): consent given at contact seq {} and confirmed at contact seq {}",
                                        source(country_policy), grant.evidence.contact_seq, confirmed.contact_seq
                                    ),
                                )
                            }
                            None => self.existing_customer(d, country_policy).unwrap_or_else(|d| {
                                d.deny(
                                    "double_opt_in.unconfirmed",
                                    || format!(
                                        "{country} requires double opt-in for {audience} contacts ({}): consent was given at contact seq {} but no confirmation of it is recorded",
                                        source(country_policy), grant.evidence.contact_seq
                                    ),
                                )
                            }),
                        }
                    }
                    Err(refusal @ (Refusal::Withdrawn(..) | Refusal::OptedOutWithoutGrant(_))) => {
                        self.deny_consent(d, refusal)
                    }
                    Err(other) => match self.existing_customer(d, country_policy) {
                        Ok(allowed) => allowed,
                        Err(mut d) => {
                            d.reason(|| {
                                format!(
                                    "{country} is {} country for {audience} contacts ({})",
                                    if double {
                                        "a double-opt-in"
                                    } else {
                                        "an opt-in"
                                    },
                                    source(country_policy)
                                )
                            });
                            self.deny_consent(d, other)
                        }
                    },
                }
            }
        }
    }

    /// The existing-customer ("soft opt-in") exception, when the country has it and the
    /// contact is a customer; `Err` gives the decision back unchanged otherwise.
    fn existing_customer(
        &self,
        mut d: Decision,
        country_policy: Option<&CountryPolicy>,
    ) -> Result<Decision, Decision> {
        let applies = country_policy.is_some_and(|c| c.existing_customer_exception)
            && self.policy.direct_marketing
            && self.state.relationship.lifecycle == Lifecycle::Customer;
        if !applies {
            return Err(d);
        }
        d.cite(EvidenceRole::Relationship, self.state.relationship_evidence);
        d.warn(|| {
            "existing-customer exception: only for the company's own similar products or services, and every message must offer an easy opt-out".into()
        });
        Ok(d.allow(
            "existing_customer",
            || format!(
                "the contact is an existing customer (contact seq {}) and {} allows direct marketing to existing customers without consent ({})",
                self.state.relationship_evidence.contact_seq,
                self.state.country,
                source(country_policy)
            ),
        ))
    }

    fn explicit_consent(&self, mut d: Decision) -> Decision {
        match self.consent(self.country_policy()) {
            Ok(grant) if is_explicit(grant.method) => {
                d.cite(EvidenceRole::Consent, grant.evidence);
                d.allow("consent.granted", || {
                    format!(
                        "{} needs explicit consent everywhere, and it was given at contact seq {}",
                        self.purpose, grant.evidence.contact_seq
                    )
                })
            }
            Ok(grant) => self.deny_consent(d, Refusal::NotExplicit(grant)),
            Err(status) => self.deny_consent(d, status),
        }
    }

    fn consent_or_legitimate_interests(&self, mut d: Decision) -> Decision {
        match self.consent(self.country_policy()) {
            Ok(grant) => {
                d.cite(EvidenceRole::Consent, grant.evidence);
                d.allow("consent.granted", || {
                    format!(
                        "consent to {} was given at contact seq {}",
                        self.purpose, grant.evidence.contact_seq
                    )
                })
            }
            Err(status @ (Refusal::Withdrawn(..) | Refusal::OptedOutWithoutGrant(_))) => {
                self.deny_consent(d, status)
            }
            Err(status) => {
                let interests = self.state.bases.iter().find(|b| {
                    b.purpose.as_str() == self.purpose && b.basis == LegalBasis::LegitimateInterests
                });
                match interests {
                    Some(basis) => {
                        d.cite(EvidenceRole::LegalBasis, basis.evidence);
                        d.allow(
                            "legitimate_interests",
                            || format!(
                                "{} rests on legitimate interests (GDPR Art. 6(1)(f)) recorded at contact seq {}, and the person has not objected",
                                self.purpose, basis.evidence.contact_seq
                            ),
                        )
                    }
                    None => {
                        d.reason(|| format!(
                            "{} needs consent, or a recorded legitimate-interests basis with no objection; neither is recorded",
                            self.purpose
                        ));
                        self.deny_consent(d, status)
                    }
                }
            }
        }
    }

    fn deny_consent(&self, mut d: Decision, status: Refusal<'_>) -> Decision {
        let (purpose, channel) = (self.purpose, self.channel);
        match status {
            Refusal::Missing => d.deny("consent.missing", || {
                format!(
                    "no consent to {purpose} on {channel} is recorded (default: do not contact)"
                )
            }),
            Refusal::Withdrawn(grant, withdrawal) => {
                d.cite(EvidenceRole::Consent, grant.evidence);
                d.cite(EvidenceRole::Withdrawal, withdrawal);
                d.deny(
                    "consent.withdrawn",
                    || format!(
                        "consent to {purpose} on {channel} given at contact seq {} was withdrawn at contact seq {}",
                        grant.evidence.contact_seq, withdrawal.contact_seq
                    ),
                )
            }
            Refusal::OptedOutWithoutGrant(withdrawal) => {
                d.cite(EvidenceRole::Withdrawal, withdrawal);
                d.deny("consent.withdrawn", || {
                    format!(
                        "the person opted out of {purpose} on {channel} at contact seq {}",
                        withdrawal.contact_seq
                    )
                })
            }
            Refusal::Expired(grant, ended) => {
                d.cite(EvidenceRole::Consent, grant.evidence);
                d.deny("consent.expired", || {
                    format!(
                        "consent to {purpose} on {channel} given at contact seq {} expired at {}",
                        grant.evidence.contact_seq,
                        ended.to_rfc3339()
                    )
                })
            }
            Refusal::ImpliedNotAccepted(grant) => {
                d.cite(EvidenceRole::Consent, grant.evidence);
                d.deny(
                    "consent.implied_not_accepted",
                    || format!(
                        "the consent at contact seq {} is implied ({}), and policy {} does not accept implied consent in {}",
                        grant.evidence.contact_seq,
                        method_name(grant.method),
                        self.pack.version,
                        self.state.country
                    ),
                )
            }
            Refusal::NotExplicit(grant) => {
                d.cite(EvidenceRole::Consent, grant.evidence);
                d.deny(
                    "consent.not_explicit",
                    || format!(
                        "{purpose} needs explicit consent, and the consent at contact seq {} was {}",
                        grant.evidence.contact_seq,
                        method_name(grant.method)
                    ),
                )
            }
        }
    }

    fn country_policy(&self) -> Option<&CountryPolicy> {
        self.pack.country(self.state.country)
    }

    /// The state of consent to this purpose on this channel at `at`.
    fn consent(&self, country_policy: Option<&CountryPolicy>) -> Result<&Grant, Refusal<'_>> {
        let Some(ConsentState {
            granted, withdrawn, ..
        }) = self
            .state
            .consents
            .iter()
            .find(|c| c.purpose.as_str() == self.purpose && c.channel.as_str() == self.channel)
        else {
            return Err(Refusal::Missing);
        };
        let grant = match (granted, withdrawn) {
            (None, Some(withdrawal)) => return Err(Refusal::OptedOutWithoutGrant(*withdrawal)),
            (None, None) => return Err(Refusal::Missing),
            (Some(grant), Some(withdrawal)) if !happened_after(&grant.evidence, withdrawal) => {
                return Err(Refusal::Withdrawn(grant, *withdrawal))
            }
            (Some(grant), _) => grant,
        };
        let implied_months = match grant.method {
            ConsentMethod::ImpliedByRelationship => country_policy
                .and_then(|c| c.implied_consent)
                .map(|i| i.relationship_months),
            ConsentMethod::ImpliedByInquiry => country_policy
                .and_then(|c| c.implied_consent)
                .map(|i| i.inquiry_months),
            _ => None,
        };
        let implied = matches!(
            grant.method,
            ConsentMethod::ImpliedByRelationship | ConsentMethod::ImpliedByInquiry
        );
        if implied && implied_months.is_none() {
            return Err(Refusal::ImpliedNotAccepted(grant));
        }
        let implied_end = implied_months.and_then(|months| {
            grant
                .evidence
                .occurred_at
                .datetime()
                .checked_add_months(Months::new(months))
        });
        let end = match (grant.expires_at.map(UtcNanos::datetime), implied_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match end {
            Some(end) if end <= self.at => Err(Refusal::Expired(grant, end)),
            _ => Ok(grant),
        }
    }

    /// A double opt-in confirmation for this purpose and channel given after the latest
    /// withdrawal, so it confirms the consent in force.
    fn confirmation(&self) -> Option<EvidenceRef> {
        let confirmed = self
            .state
            .double_opt_ins
            .iter()
            .find(|d| d.purpose.as_str() == self.purpose && d.channel.as_str() == self.channel)?
            .confirmed?;
        let withdrawn = self
            .state
            .consents
            .iter()
            .find(|c| c.purpose.as_str() == self.purpose && c.channel.as_str() == self.channel)
            .and_then(|c| c.withdrawn);
        match withdrawn {
            Some(withdrawal) if !happened_after(&confirmed, &withdrawal) => None,
            _ => Some(confirmed),
        }
    }

    /// The entry recording a lawful basis for holding the contact (a purpose decided by
    /// `legal_basis`), if any.
    fn storage_basis(&self) -> Option<EvidenceRef> {
        self.state
            .bases
            .iter()
            .find(|b| {
                self.pack
                    .purposes
                    .get(b.purpose.as_str())
                    .is_some_and(|p| p.rule == PurposeRule::LegalBasis)
            })
            .map(|b| b.evidence)
            .or_else(|| {
                // A pack without storage purposes cannot require a storage basis.
                (!self
                    .pack
                    .purposes
                    .values()
                    .any(|p| p.rule == PurposeRule::LegalBasis))
                .then_some(self.state.registered)
            })
    }
}

impl Decision {
    fn cite(&mut self, role: EvidenceRole, entry: EvidenceRef) {
        if self.explained
            && !self
                .evidence
                .iter()
                .any(|e| e.role == role && e.entry.seq == entry.seq)
        {
            self.evidence.push(Evidence { role, entry });
        }
    }

    /// Adds a reason after the deciding one; `reason` is only written when explained.
    fn reason(&mut self, reason: impl FnOnce() -> String) {
        if self.explained {
            self.reasons.push(reason());
        }
    }

    fn warn(&mut self, warning: impl FnOnce() -> String) {
        if self.explained {
            self.warnings.push(warning());
        }
    }

    fn allow(mut self, rule_id: &'static str, reason: impl FnOnce() -> String) -> Self {
        self.allowed = true;
        self.rule_id = rule_id;
        if self.explained {
            self.reasons.insert(0, reason());
        }
        self
    }

    fn deny(mut self, rule_id: &'static str, reason: impl FnOnce() -> String) -> Self {
        self.allowed = false;
        self.rule_id = rule_id;
        if self.explained {
            self.reasons.insert(0, reason());
        }
        self
    }
}

fn storage_basis_warning(pack: &PolicyPack) -> String {
    let storage: Vec<&str> = pack
        .purposes
        .iter()
        .filter(|(_, p)| p.rule == PurposeRule::LegalBasis)
        .map(|(id, _)| id.as_str())
        .collect();
    format!(
        "no lawful basis for holding the contact is recorded (purpose {})",
        storage.join(" or ")
    )
}

fn is_explicit(method: ConsentMethod) -> bool {
    matches!(
        method,
        ConsentMethod::Checkbox
            | ConsentMethod::DoubleOptIn
            | ConsentMethod::Verbal
            | ConsentMethod::Written
            | ConsentMethod::PreferenceCenter
    )
}

fn source(country_policy: Option<&CountryPolicy>) -> &str {
    country_policy.map_or("policy default for unlisted countries", |c| {
        c.source.as_str()
    })
}

fn audience_name(audience: Audience) -> &'static str {
    match audience {
        Audience::B2b => "B2B",
        Audience::B2c => "B2C",
    }
}

fn basis_name(basis: LegalBasis) -> &'static str {
    match basis {
        LegalBasis::Consent => "consent",
        LegalBasis::Contract => "contract",
        LegalBasis::LegalObligation => "legal obligation",
        LegalBasis::VitalInterests => "vital interests",
        LegalBasis::PublicTask => "public task",
        LegalBasis::LegitimateInterests => "legitimate interests",
    }
}

fn method_name(method: ConsentMethod) -> &'static str {
    match method {
        ConsentMethod::Checkbox => "checkbox",
        ConsentMethod::DoubleOptIn => "double opt-in",
        ConsentMethod::Verbal => "verbal",
        ConsentMethod::Written => "written",
        ConsentMethod::ImpliedByRelationship => "implied by a business relationship",
        ConsentMethod::ImpliedByInquiry => "implied by an inquiry",
        ConsentMethod::PreferenceCenter => "preference centre",
        ConsentMethod::UnsubscribeLink => "unsubscribe link",
        ConsentMethod::Other => "other",
    }
}
