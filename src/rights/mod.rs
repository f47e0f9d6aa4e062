//! Data-subject rights requests: what was asked, under which law, by when it must be answered,
//! and the lifecycle a projection folds request events into. Pure domain logic: chrono and
//! serde only — no I/O, no tonic, no RocksDB, no clock reads (every time is a parameter).

use std::fmt;

use serde::{Deserialize, Serialize};

mod deadline;
mod lifecycle;

pub use deadline::{add_business_days, add_months_clamped, deadlines, Deadlines};
pub use lifecycle::{RequestState, RequestStatus, TransitionError};

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
pub enum Regime {
    /// EU GDPR: one month from receipt, extendable by two months (Art. 12(3)).
    Gdpr,
    /// UK GDPR: one month from the "relevant time", extendable by two months (Art. 12A).
    UkGdpr,
    /// CCPA/CPRA: 45 days from receipt, extendable once by 45 (Cal. Civ. Code §1798.130).
    Ccpa,
    /// LGPD: 15 days from the request for a complete statement, no extension (Art. 19).
    Lgpd,
}

impl Regime {
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

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_articles_match_the_law_and_the_wire_format() {
        let kinds = [
            (RequestKind::Access, "access", "GDPR Art. 15"),
            (RequestKind::Rectification, "rectification", "GDPR Art. 16"),
            (RequestKind::Erasure, "erasure", "GDPR Art. 17"),
            (RequestKind::Restriction, "restriction", "GDPR Art. 18"),
            (RequestKind::Portability, "portability", "GDPR Art. 20"),
            (RequestKind::Objection, "objection", "GDPR Art. 21"),
        ];
        for (kind, name, article) in kinds {
            assert_eq!((kind.name(), kind.article()), (name, article));
            assert_eq!(kind.to_string(), name);
        }
        let regimes = [
            (Regime::Gdpr, "gdpr"),
            (Regime::UkGdpr, "uk_gdpr"),
            (Regime::Ccpa, "ccpa"),
            (Regime::Lgpd, "lgpd"),
        ];
        for (regime, name) in regimes {
            assert_eq!(regime.name(), name);
            assert_eq!(regime.to_string(), name);
        }
    }
}
