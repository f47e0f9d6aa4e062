//! Domain types of the ledger: contacts, purposes, bases, consent and the event kinds.
//! Pure: depends on nothing but serde, chrono and std.

mod country;
mod event;
mod request;
pub(crate) mod rfc3339;

use std::collections::BTreeSet;
use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

pub use country::{Country, Region};
pub use event::{
    Audience, ConsentMethod, Event, EventKind, LegalBasis, Lifecycle, Notice, ObjectionScope,
    PersonalRecord, ProfileChange, Relationship, RestrictionGround, SourceKind, Submission,
};
pub use request::{RequestKind, RequestRegime};

/// Input that breaks a rule: names the field (as a path in the API message) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct ValidationError {
    /// Path of the offending field, e.g. `consent_granted.purpose`.
    pub field: String,
    /// The rule that was broken, in words.
    pub rule: String,
}

impl ValidationError {
    /// An error for `field` breaking `rule`.
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// The same error with its field nested under `parent` (`parent.field`).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

/// Longest contact id or idempotency key accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// A pseudonymous contact id: 1-128 visible ASCII characters that do not look like an
/// email address or a phone number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContactId(String);

impl ContactId {
    /// Validates a contact id.
    pub fn parse(field: &str, id: &str) -> Result<Self, ValidationError> {
        check_visible_ascii(field, id)?;
        if id.contains('@') {
            return Err(ValidationError::new(
                field,
                "contact ids must be pseudonymous: this one contains '@' and looks like an email address",
            ));
        }
        if looks_like_phone_number(id) {
            return Err(ValidationError::new(
                field,
                "contact ids must be pseudonymous: this one looks like a phone number (7-15 digits); prefix it, e.g. \"crm-1234567\"",
            ));
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ledger's own chain of policy activations.
    pub fn policy_chain() -> Self {
        Self(POLICY_CHAIN.to_owned())
    }

    /// Whether the id names one of the ledger's own chains (it starts with `~`); clients
    /// may read those chains but never append to them.
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with('~')
    }
}

/// Contact id of the chain that records every policy activation.
pub const POLICY_CHAIN: &str = "~policy";

impl fmt::Display for ContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ContactId {
    type Error = ValidationError;
    fn try_from(id: String) -> Result<Self, Self::Error> {
        Self::parse("contact_id", &id)
    }
}

impl From<ContactId> for String {
    fn from(id: ContactId) -> Self {
        id.0
    }
}

/// A client-chosen key that makes a retried append safe: 1-128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates an idempotency key.
    pub fn parse(field: &str, key: &str) -> Result<Self, ValidationError> {
        check_visible_ascii(field, key)?;
        Ok(Self(key.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_visible_ascii(field: &str, text: &str) -> Result<(), ValidationError> {
    if text.is_empty() || text.len() > MAX_ID_LEN {
        return Err(ValidationError::new(
            field,
            format!(
                "must be 1-{MAX_ID_LEN} characters long (got {})",
                text.len()
            ),
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ValidationError::new(
            field,
            "must contain only visible ASCII characters (no spaces or control characters)",
        ));
    }
    Ok(())
}

/// Digits with optional phone punctuation, 7 to 15 digits long (E.164 allows at most 15).
fn looks_like_phone_number(id: &str) -> bool {
    let mut digits = 0;
    for (i, c) in id.chars().enumerate() {
        match c {
            '0'..='9' => digits += 1,
            '+' if i == 0 => {}
            '-' | '.' | '(' | ')' | '/' => {}
            _ => return false,
        }
    }
    (7..=15).contains(&digits)
}

/// A purpose of processing, e.g. `email_marketing`; valid only if the registry knows it.
/// Held inline up to 24 bytes: a contact's state names purposes and channels a dozen times,
/// and reading one should not allocate for each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PurposeId(CompactString);

impl PurposeId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PurposeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A channel of communication, e.g. `email`; valid only if the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChannelId(CompactString);

impl ChannelId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The purposes and channels events may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    purposes: BTreeSet<String>,
    channels: BTreeSet<String>,
}

/// Purposes every deployment knows unless its policy says otherwise.
pub const DEFAULT_PURPOSES: [&str; 5] = [
    "email_marketing",
    "email_tracking",
    "sales_outreach",
    "profiling",
    "storage",
];

/// Channels every deployment knows unless its policy says otherwise.
pub const DEFAULT_CHANNELS: [&str; 5] = ["email", "phone", "sms", "post", "web"];

impl Default for Registry {
    fn default() -> Self {
        Self {
            purposes: DEFAULT_PURPOSES.iter().map(|p| (*p).to_owned()).collect(),
            channels: DEFAULT_CHANNELS.iter().map(|c| (*c).to_owned()).collect(),
        }
    }
}

impl Registry {
    /// A registry of exactly these purposes and channels.
    pub fn new(purposes: BTreeSet<String>, channels: BTreeSet<String>) -> Self {
        Self { purposes, channels }
    }
    /// Validates a purpose id against the registry.
    pub fn purpose(&self, field: &str, id: &str) -> Result<PurposeId, ValidationError> {
        if self.purposes.contains(id) {
            Ok(PurposeId(id.into()))
        } else {
            Err(ValidationError::new(
                field,
                format!(
                    "unknown purpose {id:?}; known purposes: {}",
                    join(&self.purposes)
                ),
            ))
        }
    }

    /// Validates a channel id against the registry.
    pub fn channel(&self, field: &str, id: &str) -> Result<ChannelId, ValidationError> {
        if self.channels.contains(id) {
            Ok(ChannelId(id.into()))
        } else {
            Err(ValidationError::new(
                field,
                format!(
                    "unknown channel {id:?}; known channels: {}",
                    join(&self.channels)
                ),
            ))
        }
    }
}

fn join(ids: &BTreeSet<String>) -> String {
    ids.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_ids_must_be_pseudonymous() {
        assert!(ContactId::parse("contact_id", "crm-000123").is_ok());
        assert!(ContactId::parse("contact_id", "c_9f86d081884c7d65").is_ok());
        assert!(
            ContactId::parse("contact_id", "12345").is_ok(),
            "short numeric ids are not phone numbers"
        );
        for bad in [
            "",
            "jane@example.com",
            "+49 170 1234567",
            "+491701234567",
            "(555) 123-4567",
            "555-123-4567",
            "has space",
            "tab\there",
            "naïve",
        ] {
            let err = ContactId::parse("contact_id", bad).unwrap_err();
            assert_eq!(err.field, "contact_id", "{bad:?}");
        }
        assert!(ContactId::parse("contact_id", &"x".repeat(128)).is_ok());
        assert!(ContactId::parse("contact_id", &"x".repeat(129)).is_err());
    }

    #[test]
    fn registry_names_the_unknown_id() {
        let registry = Registry::default();
        assert!(registry.purpose("p", "email_marketing").is_ok());
        let err = registry
            .purpose("consent_granted.purpose", "spam")
            .unwrap_err();
        assert_eq!(err.field, "consent_granted.purpose");
        assert!(err.rule.contains("\"spam\""), "{}", err.rule);
        assert!(registry.channel("c", "pigeon").is_err());
    }
}
