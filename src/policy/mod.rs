//! Eligibility policy: policy packs (which purposes exist, how each is decided, each
//! country's email-marketing regime), the history of packs activated in the ledger, and
//! the decision itself. Pure: depends on `model` and `ledger` only.

mod decide;
mod pack;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use decide::{decide, Decision, Detail, Evidence, EvidenceRole};
pub use pack::{
    CountryPolicy, ImpliedConsent, PolicyError, PolicyPack, PurposePolicy, PurposeRule, Regime,
};

use crate::model::ValidationError;

/// The pack used when no policy file is configured: each country's own regime.
pub const DEFAULT_PACK: &str = include_str!("../../deploy/policy/per-country.toml");

impl PolicyPack {
    /// Checks that `purpose` on `channel` is something this pack decides; the error names
    /// the request field (`purpose_field`, `channel_field`) and what the pack allows.
    pub fn check_target(
        &self,
        purpose_field: &str,
        purpose: &str,
        channel_field: &str,
        channel: &str,
    ) -> Result<(), ValidationError> {
        self.registry.purpose(purpose_field, purpose)?;
        self.registry.channel(channel_field, channel)?;
        let decided_on = &self.purposes[purpose].channels;
        if decided_on.contains(channel) {
            return Ok(());
        }
        Err(ValidationError::new(
            channel_field,
            format!(
                "policy {} decides {purpose} on {} only, not on {channel:?}",
                self.version,
                decided_on
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }
}

/// A pack as activated in the ledger.
#[derive(Debug, Clone)]
pub struct Activation {
    /// The pack.
    pub pack: Arc<PolicyPack>,
    /// Global seq of the `policy_activated` entry.
    pub seq: u64,
    /// When the ledger recorded the activation: the pack is in force from then on.
    pub recorded_at: DateTime<Utc>,
}

/// Every pack ever activated, in ledger order.
#[derive(Debug, Clone, Default)]
pub struct PolicyBook {
    activations: Vec<Activation>,
}

impl PolicyBook {
    /// Adds the latest activation. Activations must come in ledger order.
    pub fn push(&mut self, activation: Activation) {
        debug_assert!(self
            .activations
            .last()
            .is_none_or(|a| a.seq < activation.seq));
        self.activations.push(activation);
    }

    /// The pack in force now.
    pub fn current(&self) -> Option<&Activation> {
        self.activations.last()
    }

    /// The pack in force at `at`, and whether one was: before the first activation, the
    /// first pack is returned with `false`.
    pub fn in_force_at(&self, at: DateTime<Utc>) -> Option<(&Activation, bool)> {
        let after = self.activations.partition_point(|a| a.recorded_at <= at);
        match after {
            0 => self.activations.first().map(|a| (a, false)),
            n => Some((&self.activations[n - 1], true)),
        }
    }

    /// Every activation, oldest first.
    pub fn activations(&self) -> &[Activation] {
        &self.activations
    }
}
