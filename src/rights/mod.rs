//! Data-subject rights requests: what was asked, under which law, by when it must be answered,
//! and the lifecycle a projection folds request events into. Pure domain logic: chrono and
//! serde only — no I/O, no tonic, no RocksDB, no clock reads (every time is a parameter).

mod deadline;
mod lifecycle;

pub use crate::model::{RequestKind, RequestRegime as Regime};
pub use deadline::{add_business_days, add_months_clamped, deadlines, Deadlines};
pub use lifecycle::{RequestState, RequestStatus, TransitionError};

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
