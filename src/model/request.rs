//! The data-subject rights a request exercises and the laws whose deadlines govern it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The right a data subject exercises (GDPR Chapter III).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Right of access (GDPR Art. 15).
    Access,
    /// Right to rectification (GDPR Art. 16).
    Rectification,
    /// Right to erasure (GDPR Art. 17).
    Erasure,
    /// Right to restriction of processing (GDPR Art. 18).
    Restriction,
    /// Right to data portability (GDPR Art. 20).
    Portability,
    /// Right to object (GDPR Art. 21).
    Objection,
}

impl RequestKind {
    /// The kind's snake_case name, as serialized.
    pub fn name(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Rectification => "rectification",
            Self::Erasure => "erasure",
            Self::Restriction => "restriction",
            Self::Portability => "portability",
            Self::Objection => "objection",
        }
    }

    /// The GDPR article that grants the right, e.g. "GDPR Art. 15".
    pub fn article(self) -> &'static str {
        match self {
            Self::Access => "GDPR Art. 15",
            Self::Rectification => "GDPR Art. 16",
            Self::Erasure => "GDPR Art. 17",
            Self::Restriction => "GDPR Art. 18",
            Self::Portability => "GDPR Art. 20",
            Self::Objection => "GDPR Art. 21",
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The law whose response deadlines govern a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestRegime {
    /// EU GDPR: one month from receipt, extendable by two months (Art. 12(3)).
    Gdpr,
    /// UK GDPR: one month from the "relevant time", extendable by two months (Art. 12A).
    UkGdpr,
    /// CCPA/CPRA: 45 days from receipt, extendable once by 45 (Cal. Civ. Code §1798.130).
    Ccpa,
    /// LGPD: 15 days from the request for a complete statement, no extension (Art. 19).
    Lgpd,
}

impl RequestRegime {
    /// The regime's snake_case name, as serialized.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gdpr => "gdpr",
            Self::UkGdpr => "uk_gdpr",
            Self::Ccpa => "ccpa",
            Self::Lgpd => "lgpd",
        }
    }

    /// The provision that sets the response period and any extension of it, for messages
    /// shown to a DPO.
    pub fn deadline_provision(self) -> &'static str {
        match self {
            Self::Gdpr => "GDPR Art. 12(3)",
            Self::UkGdpr => "UK GDPR Art. 12(3) and Art. 12A",
            Self::Ccpa => "CCPA §1798.130(a)(2)",
            Self::Lgpd => "LGPD Art. 19",
        }
    }
}

impl fmt::Display for RequestRegime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
