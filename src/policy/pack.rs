//! Policy packs: the TOML file that declares purposes, channels, how each purpose is
//! decided, and each country's email-marketing regime. Parsing rejects anything malformed
//! or contradictory with the line and the problem. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::model::{Country, Registry};

/// Longest policy version accepted, in bytes.
const MAX_VERSION_LEN: usize = 64;
/// Longest implied-consent period accepted, in months.
const MAX_IMPLIED_MONTHS: u32 = 120;

/// How a purpose is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurposeRule {
    /// Allowed when a lawful basis is recorded for the purpose (e.g. storage).
    LegalBasis,
    /// Decided by the contact's country regime for email marketing.
    CountryRegime,
    /// Needs an explicit (not implied) consent, whatever the country.
    ExplicitConsent,
    /// Consent, or a recorded legitimate-interests basis with no objection.
    ConsentOrLegitimateInterests,
}

impl PurposeRule {
    /// The rule's name as written in the pack.
    pub fn name(self) -> &'static str {
        match self {
            Self::LegalBasis => "legal_basis",
            Self::CountryRegime => "country_regime",
            Self::ExplicitConsent => "explicit_consent",
            Self::ConsentOrLegitimateInterests => "consent_or_legitimate_interests",
        }
    }
}

/// An email-marketing regime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// May be sent unless the person opted out.
    OptOut,
    /// Needs the person's consent.
    OptIn,
    /// Needs consent confirmed by a second step.
    DoubleOptIn,
    /// Never sent under this policy.
    Excluded,
}

impl Regime {
    /// The regime's name as written in the pack.
    pub fn name(self) -> &'static str {
        match self {
            Self::OptOut => "opt_out",
            Self::OptIn => "opt_in",
            Self::DoubleOptIn => "double_opt_in",
            Self::Excluded => "excluded",
        }
    }

    fn needs_consent(self) -> bool {
        matches!(self, Self::OptIn | Self::DoubleOptIn)
    }
}

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How one purpose is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposePolicy {
    /// The rule.
    pub rule: PurposeRule,
    /// Channels the purpose may be checked on.
    pub channels: BTreeSet<String>,
    /// Whether an objection to direct marketing covers it.
    pub direct_marketing: bool,
    /// Whether an objection to profiling covers it.
    pub profiling: bool,
}

/// Implied consent accepted in a country, and how long it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpliedConsent {
    /// Months after a purchase or contract.
    pub relationship_months: u32,
    /// Months after an inquiry.
    pub inquiry_months: u32,
}

/// One country's email-marketing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryPolicy {
    /// Regime for consumers.
    pub b2c: Regime,
    /// Regime for business contacts.
    pub b2b: Regime,
    /// Existing customers may receive direct marketing for similar products without
    /// consent ("soft opt-in"), unless they objected or opted out.
    pub existing_customer_exception: bool,
    /// Implied consent accepted here, if it is.
    pub implied_consent: Option<ImpliedConsent>,
    /// What a person must check when the B2B regime allows a send.
    pub b2b_condition: Option<String>,
    /// The legal source of the rule.
    pub source: String,
}

/// A parsed and validated policy pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPack {
    /// The pack's version, as declared in it.
    pub version: String,
    /// One-line description.
    pub description: Option<String>,
    /// SHA-256 of the pack's text, exactly as loaded.
    pub sha256: [u8; 32],
    /// Purposes and channels events may name.
    pub registry: Registry,
    /// How each purpose is decided.
    pub purposes: BTreeMap<String, PurposePolicy>,
    /// Regime for countries the pack does not list.
    pub unknown_country: Regime,
    /// Rules per country.
    pub countries: BTreeMap<Country, CountryPolicy>,
}

/// Why a policy file was refused: the line (1-based) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct PolicyError {
    /// The line at fault, 1-based (0 when the problem is the file as a whole).
    pub line: usize,
    /// What is wrong, naming the key.
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    version: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    registry: Spanned<RawRegistry>,
    purposes: Spanned<BTreeMap<Spanned<String>, Spanned<RawPurpose>>>,
    unknown_country: RawUnknownCountry,
    #[serde(default, rename = "country")]
    countries: Vec<Spanned<RawCountry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    purposes: Vec<Spanned<String>>,
    channels: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    rule: PurposeRule,
    channels: Vec<Spanned<String>>,
    #[serde(default)]
    direct_marketing: bool,
    #[serde(default)]
    profiling: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnknownCountry {
    regime: Regime,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCountry {
    code: Spanned<String>,
    b2c: Regime,
    b2b: Regime,
    #[serde(default)]
    existing_customer_exception: Option<Spanned<bool>>,
    #[serde(default)]
    implied_consent: Option<Spanned<ImpliedConsent>>,
    #[serde(default)]
    b2b_condition: Option<Spanned<String>>,
    source: Spanned<String>,
}

impl PolicyPack {
    /// Parses and validates a policy file. The whole text is hashed as given, so the
    /// digest recorded in the ledger identifies exactly this text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let at = |span: Range<usize>, problem: String| PolicyError {
            line: line_of(text, span.start),
            problem,
        };
        let raw: RawPack = toml::from_str(text).map_err(|err| PolicyError {
            line: err.span().map_or(0, |span| line_of(text, span.start)),
            problem: err.message().trim_end().to_owned(),
        })?;

        let version = raw.version.get_ref();
        if version.is_empty()
            || version.len() > MAX_VERSION_LEN
            || !version.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(at(
                raw.version.span(),
                format!(
                    "version must be 1-{MAX_VERSION_LEN} visible ASCII characters without spaces"
                ),
            ));
        }

        let purposes_known =
            unique_ids(&raw.registry.get_ref().purposes, "registry.purposes", text)?;
        let channels_known =
            unique_ids(&raw.registry.get_ref().channels, "registry.channels", text)?;
        if purposes_known.is_empty() || channels_known.is_empty() {
            return Err(at(
                raw.registry.span(),
                "registry.purposes and registry.channels must each name at least one id".into(),
            ));
        }

        let mut purposes = BTreeMap::new();
        for (id, purpose) in raw.purposes.get_ref() {
            if !purposes_known.contains(id.get_ref()) {
                return Err(at(
                    id.span(),
                    format!(
                        "purposes.{}: the purpose is not in registry.purposes",
                        id.get_ref()
                    ),
                ));
            }
            let purpose_ref = purpose.get_ref();
            let mut channels = BTreeSet::new();
            for channel in &purpose_ref.channels {
                if !channels_known.contains(channel.get_ref()) {
                    return Err(at(
                        channel.span(),
                        format!(
                            "purposes.{}.channels: {:?} is not in registry.channels",
                            id.get_ref(),
                            channel.get_ref()
                        ),
                    ));
                }
                if !channels.insert(channel.get_ref().clone()) {
                    return Err(at(
                        channel.span(),
                        format!(
                            "purposes.{}.channels: {:?} is listed twice",
                            id.get_ref(),
                            channel.get_ref()
                        ),
                    ));
                }
            }
            if channels.is_empty() {
                return Err(at(
                    purpose.span(),
                    format!(
                        "purposes.{}.channels must name at least one channel",
                        id.get_ref()
                    ),
                ));
            }
            purposes.insert(
                id.get_ref().clone(),
                PurposePolicy {
                    rule: purpose_ref.rule,
                    channels,
                    direct_marketing: purpose_ref.direct_marketing,
                    profiling: purpose_ref.profiling,
                },
            );
        }
        if let Some(missing) = purposes_known.iter().find(|p| !purposes.contains_key(*p)) {
            return Err(at(
                raw.purposes.span(),
                format!("registry purpose {missing:?} has no [purposes.{missing}] table saying how it is decided"),
            ));
        }

        let mut countries = BTreeMap::new();
        for country in &raw.countries {
            let (code, rule) = country_policy(country.get_ref(), text)?;
            if countries.insert(code, rule).is_some() {
                return Err(at(
                    country.get_ref().code.span(),
                    format!("country {code} has a second [[country]] table; each country is declared once"),
                ));
            }
        }

        Ok(Self {
            version: version.clone(),
            description: raw.description,
            sha256: Sha256::digest(text.as_bytes()).into(),
            registry: Registry::new(purposes_known, channels_known),
            purposes,
            unknown_country: raw.unknown_country.regime,
            countries,
        })
    }

    /// The rule of a country, if the pack lists it.
    pub fn country(&self, country: Country) -> Option<&CountryPolicy> {
        self.countries.get(&country)
    }
}

fn country_policy(raw: &RawCountry, text: &str) -> Result<(Country, CountryPolicy), PolicyError> {
    let at = |span: Range<usize>, problem: String| PolicyError {
        line: line_of(text, span.start),
        problem,
    };
    let code = Country::parse("code", raw.code.get_ref())
        .map_err(|err| at(raw.code.span(), format!("country.code: {}", err.rule)))?;
    if raw.source.get_ref().trim().is_empty() {
        return Err(at(
            raw.source.span(),
            format!("country {code}: source must name the legal source of the rule"),
        ));
    }
    let existing_customer_exception = raw
        .existing_customer_exception
        .as_ref()
        .filter(|flag| *flag.get_ref());
    if let Some(flag) =
        existing_customer_exception.filter(|_| !raw.b2c.needs_consent() && !raw.b2b.needs_consent())
    {
        return Err(at(
            flag.span(),
            format!(
                "country {code}: existing_customer_exception contradicts the regimes (b2c {}, b2b {}): it is an exception to a consent requirement, and neither regime requires consent",
                raw.b2c, raw.b2b
            ),
        ));
    }
    if let Some(condition) = &raw.b2b_condition {
        if raw.b2b == Regime::Excluded {
            return Err(at(
                condition.span(),
                format!("country {code}: b2b_condition contradicts b2b = \"excluded\": nothing is ever allowed under it"),
            ));
        }
        if condition.get_ref().trim().is_empty() {
            return Err(at(
                condition.span(),
                format!("country {code}: b2b_condition is empty"),
            ));
        }
    }
    if let Some(implied) = &raw.implied_consent {
        let months = implied.get_ref();
        for (key, value) in [
            ("relationship_months", months.relationship_months),
            ("inquiry_months", months.inquiry_months),
        ] {
            if !(1..=MAX_IMPLIED_MONTHS).contains(&value) {
                return Err(at(
                    implied.span(),
                    format!("country {code}: implied_consent.{key} must be 1-{MAX_IMPLIED_MONTHS} (got {value})"),
                ));
            }
        }
        if !raw.b2c.needs_consent() && !raw.b2b.needs_consent() {
            return Err(at(
                implied.span(),
                format!("country {code}: implied_consent contradicts the regimes (b2c {}, b2b {}): neither requires consent", raw.b2c, raw.b2b),
            ));
        }
    }
    Ok((
        code,
        CountryPolicy {
            b2c: raw.b2c,
            b2b: raw.b2b,
            existing_customer_exception: existing_customer_exception.is_some(),
            implied_consent: raw.implied_consent.as_ref().map(|i| *i.get_ref()),
            b2b_condition: raw.b2b_condition.as_ref().map(|c| c.get_ref().clone()),
            source: raw.source.get_ref().clone(),
        },
    ))
}

/// Purpose and channel ids: lower-case letters, digits and '_', 1-64 long, each once.
fn unique_ids(
    ids: &[Spanned<String>],
    key: &str,
    text: &str,
) -> Result<BTreeSet<String>, PolicyError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        let name = id.get_ref();
        let well_formed = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let problem = if !well_formed {
            format!("{key}: {name:?} must be 1-64 lower-case letters, digits or '_'")
        } else if !seen.insert(name.clone()) {
            format!("{key}: {name:?} is listed twice")
        } else {
            continue;
        };
        return Err(PolicyError {
            line: line_of(text, id.span().start),
            problem,
        });
    }
    Ok(seen)
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_COUNTRY: &str = include_str!("../../deploy/policy/per-country.toml");
    const CONSERVATIVE: &str = include_str!("../../deploy/policy/conservative.toml");

    const SMALL: &str = r#"version = "test-1"

[registry]
purposes = ["storage", "email_marketing"]
channels = ["email", "sms"]

[purposes.storage]
rule = "legal_basis"
channels = ["email"]

[purposes.email_marketing]
rule = "country_regime"
channels = ["email"]
direct_marketing = true

[unknown_country]
regime = "excluded"

[[country]]
code = "DE"
b2c = "double_opt_in"
b2b = "double_opt_in"
existing_customer_exception = true
source = "UWG 7"

[[country]]
code = "US"
b2c = "opt_out"
b2b = "opt_out"
source = "CAN-SPAM"
"#;

    /// Parses `SMALL` with `from` replaced by `to` and returns the error.
    fn refused(from: &str, to: &str) -> PolicyError {
        assert!(SMALL.contains(from), "{from:?} is not in the test pack");
        let text = SMALL.replacen(from, to, 1);
        PolicyPack::parse(&text).expect_err("the pack should be refused")
    }

    /// The 1-based line of the first occurrence of `needle` in `text`.
    fn line(text: &str, needle: &str) -> usize {
        text[..text.find(needle).unwrap()].matches('\n').count() + 1
    }

    #[test]
    fn the_shipped_packs_parse_and_cover_the_required_countries() {
        let per_country = PolicyPack::parse(PER_COUNTRY).unwrap();
        let conservative = PolicyPack::parse(CONSERVATIVE).unwrap();
        for code in [
            "US", "CA", "AU", "GB", "IE", "FR", "DE", "AT", "CH", "NL", "BE", "ES", "IT", "PL",
            "SE", "DK", "GR", "BR", "JP", "IN", "SG",
        ] {
            let country = Country::parse("c", code).unwrap();
            let rule = per_country
                .country(country)
                .unwrap_or_else(|| panic!("{code}"));
            assert!(!rule.source.is_empty(), "{code} cites no source");
            let strict = conservative.country(country).unwrap();
            // Conservative: opt-in everywhere, double-opt-in countries excluded.
            for (theirs, ours) in [(rule.b2c, strict.b2c), (rule.b2b, strict.b2b)] {
                let expected = if theirs == Regime::DoubleOptIn {
                    Regime::Excluded
                } else {
                    Regime::OptIn
                };
                assert_eq!(ours, expected, "{code}");
            }
            assert!(!strict.existing_customer_exception && strict.implied_consent.is_none());
        }
        let de = per_country
            .country(Country::parse("c", "DE").unwrap())
            .unwrap();
        assert_eq!((de.b2c, de.b2b), (Regime::DoubleOptIn, Regime::DoubleOptIn));
        let us = per_country
            .country(Country::parse("c", "US").unwrap())
            .unwrap();
        assert_eq!(us.b2c, Regime::OptOut);
        let fr = per_country
            .country(Country::parse("c", "FR").unwrap())
            .unwrap();
        assert_eq!((fr.b2c, fr.b2b), (Regime::OptIn, Regime::OptOut));
        assert!(fr.b2b_condition.is_some());
        let ca = per_country
            .country(Country::parse("c", "CA").unwrap())
            .unwrap();
        assert_eq!(
            ca.implied_consent,
            Some(ImpliedConsent {
                relationship_months: 24,
                inquiry_months: 6
            })
        );
        assert_eq!(per_country.unknown_country, Regime::Excluded);
        assert_eq!(
            per_country.purposes["email_tracking"].rule,
            PurposeRule::ExplicitConsent
        );
        assert_ne!(per_country.sha256, conservative.sha256);
    }

    #[test]
    fn a_valid_pack_is_read_whole() {
        let pack = PolicyPack::parse(SMALL).unwrap();
        assert_eq!(pack.version, "test-1");
        assert!(pack.registry.purpose("p", "storage").is_ok());
        assert!(pack.registry.channel("c", "fax").is_err());
        assert_eq!(pack.countries.len(), 2);
        assert_eq!(
            pack.sha256,
            <[u8; 32]>::from(Sha256::digest(SMALL.as_bytes()))
        );
        // One changed byte is another pack.
        let other = PolicyPack::parse(&SMALL.replace("CAN-SPAM", "CAN-SPAM.")).unwrap();
        assert_ne!(other.sha256, pack.sha256);
    }

    #[test]
    fn malformed_packs_are_refused_with_the_line_and_the_problem() {
        let cases: [(&str, &str, &str, &str); 9] = [
            // (replace, with, line holding, problem mentions)
            (
                "rule = \"legal_basis\"",
                "rule = \"whatever\"",
                "rule = \"whatever\"",
                "whatever",
            ),
            (
                "b2c = \"opt_out\"",
                "b2c = \"opt_outt\"",
                "b2c = \"opt_outt\"",
                "opt_outt",
            ),
            (
                "source = \"CAN-SPAM\"",
                "source = \"CAN-SPAM\"\ncolour = \"red\"",
                "colour",
                "colour",
            ),
            ("code = \"US\"", "code = \"UK\"", "code = \"UK\"", "UK"),
            (
                "code = \"US\"",
                "code = \"DE\"",
                "code = \"DE\"\nb2c = \"opt_out\"",
                "second",
            ),
            (
                "channels = [\"email\"]\ndirect",
                "channels = [\"fax\"]\ndirect",
                "[\"fax\"]",
                "fax",
            ),
            (
                "version = \"test-1\"",
                "version = \"test 1\"",
                "version",
                "version",
            ),
            (
                "[purposes.storage]",
                "[purposes.storrage]",
                "[purposes.storrage]",
                "storrage",
            ),
            (
                "b2b = \"opt_out\"\nsource",
                "b2b = opt_out\nsource",
                "b2b = opt_out",
                "",
            ),
        ];
        for (from, to, at, mentions) in cases {
            let err = refused(from, to);
            let text = SMALL.replacen(from, to, 1);
            assert_eq!(err.line, line(&text, at), "{to:?}: {err}");
            assert!(err.problem.contains(mentions), "{to:?}: {err}");
        }
    }

    #[test]
    fn contradictory_packs_are_refused_with_the_line_and_the_rule() {
        // An exception to a consent requirement where no regime requires consent.
        let text = SMALL.replacen(
            "b2b = \"opt_out\"\nsource",
            "b2b = \"opt_out\"\nexisting_customer_exception = true\nsource",
            1,
        );
        let err = PolicyPack::parse(&text).unwrap_err();
        assert_eq!(
            err.line,
            line(&text, "existing_customer_exception = true\nsource = \"CAN")
        );
        assert!(err.problem.contains("contradicts"), "{err}");

        // A condition on a regime that never allows anything.
        let text = SMALL.replacen(
            "b2b = \"double_opt_in\"",
            "b2b = \"excluded\"\nb2b_condition = \"job-related only\"",
            1,
        );
        let err = PolicyPack::parse(&text).unwrap_err();
        assert_eq!(err.line, line(&text, "b2b_condition"));
        assert!(err.problem.contains("contradicts"), "{err}");

        // Implied consent in a country where nothing needs consent.
        let text = SMALL.replacen(
            "b2b = \"opt_out\"\nsource",
            "b2b = \"opt_out\"\nimplied_consent = { relationship_months = 24, inquiry_months = 6 }\nsource",
            1,
        );
        let err = PolicyPack::parse(&text).unwrap_err();
        assert_eq!(err.line, line(&text, "implied_consent"));

        // Out-of-range periods.
        let text = SMALL.replacen(
            "existing_customer_exception = true",
            "implied_consent = { relationship_months = 0, inquiry_months = 6 }",
            1,
        );
        let err = PolicyPack::parse(&text).unwrap_err();
        assert!(err.problem.contains("relationship_months"), "{err}");

        // A registry purpose nobody says how to decide.
        let err = refused(
            "purposes = [\"storage\", \"email_marketing\"]",
            "purposes = [\"storage\", \"email_marketing\", \"profiling\"]",
        );
        assert!(err.problem.contains("profiling"), "{err}");

        // A purpose listed twice.
        let err = refused(
            "purposes = [\"storage\", \"email_marketing\"]",
            "purposes = [\"storage\", \"storage\", \"email_marketing\"]",
        );
        assert!(err.problem.contains("twice"), "{err}");
        assert_eq!(err.line, line(SMALL, "purposes = ["));
    }

    #[test]
    fn a_missing_required_key_is_named() {
        let err = refused("[unknown_country]\nregime = \"excluded\"\n", "");
        assert!(err.problem.contains("unknown_country"), "{err}");
        let err = refused("source = \"CAN-SPAM\"", "source = \"  \"");
        assert!(err.problem.contains("source"), "{err}");
    }
}
