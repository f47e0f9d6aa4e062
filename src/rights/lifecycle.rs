//! The lifecycle of one rights request as a pure state machine: a projection folds the
//! request's events into a [`RequestState`], and every illegal step is refused with the rule
//! and the legal provision it breaks. No I/O, no clock reads: every time is a parameter.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::deadline::{deadlines, extended_due};
use super::{Regime, RequestKind};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Received and not yet answered.
    Open,
    /// The response period was extended; not yet answered.
    Extended,
    /// Refused with reasons; closed.
    Rejected,
    /// Answered; closed.
    Completed,
}

impl RequestStatus {
    /// The status's snake_case name, as serialized.
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Extended => "extended",
            Self::Rejected => "rejected",
            Self::Completed => "completed",
        }
    }

    /// Whether the request has been answered (completed or rejected): no transition is
    /// accepted after that.
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Rejected | Self::Completed)
    }
}

/// A transition the law or the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {message}")]
pub struct TransitionError {
    /// Stable machine-readable name of the rule broken, e.g. `extend_once`.
    pub rule: &'static str,
    /// What was refused and why, for a DPO, naming the legal provision.
    pub message: String,
}

impl TransitionError {
    fn new(rule: &'static str, message: String) -> Self {
        Self { rule, message }
    }
}

/// The state of one rights request, folded from its events.
///
/// Dates are UTC calendar dates: a time's date is `time.date_naive()`. Every transition either
/// succeeds or returns a [`TransitionError`] and leaves the state exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestState {
    /// The right exercised.
    pub kind: RequestKind,
    /// The law whose deadlines apply.
    pub regime: Regime,
    /// Where the request stands.
    pub status: RequestStatus,
    /// UTC date the request was received; the response period runs from it.
    pub received_on: NaiveDate,
    /// When the request was entered in the ledger (may be later than its receipt).
    pub opened_at: DateTime<Utc>,
    /// Last day on which the response is on time, extension and UK verification included.
    pub due: NaiveDate,
    /// Last day of the first, unextended period: the limit for notifying an extension. Fixed
    /// at receipt, except under UK GDPR where identity verification restarts it (Art. 12A).
    pub original_due: NaiveDate,
    /// Last day to confirm receipt (CCPA only).
    pub ack_due: Option<NaiveDate>,
    /// When receipt was acknowledged to the subject.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When the identity information the controller asked for was received.
    pub identity_verified_at: Option<DateTime<Utc>>,
    /// When the extension was recorded.
    pub extended_at: Option<DateTime<Utc>>,
    /// When the request was completed or rejected.
    pub closed_at: Option<DateTime<Utc>>,
}

impl RequestState {
    /// A new open request received at `received_at` and entered at `opened_at`, with the
    /// deadlines of `regime` counted from the receipt date.
    ///
    /// Refuses a receipt later than the opening (`received_in_future`).
    pub fn open(
        kind: RequestKind,
        regime: Regime,
        received_at: DateTime<Utc>,
        opened_at: DateTime<Utc>,
    ) -> Result<Self, TransitionError> {
        if received_at > opened_at {
            return Err(TransitionError::new(
                "received_in_future",
                format!(
                    "the request is said to be received at {received_at}, after it was entered \
                     at {opened_at}; the response period under {} runs from the actual receipt, \
                     so record when it really arrived",
                    regime.deadline_provision()
                ),
            ));
        }
        let received_on = received_at.date_naive();
        let deadlines = deadlines(regime, received_on);
        Ok(Self {
            kind,
            regime,
            status: RequestStatus::Open,
            received_on,
            opened_at,
            due: deadlines.due,
            original_due: deadlines.due,
            ack_due: deadlines.ack_due,
            acknowledged_at: None,
            identity_verified_at: None,
            extended_at: None,
            closed_at: None,
        })
    }

    /// Records that receipt was confirmed to the subject at `at`.
    ///
    /// Refused when the request is closed (`closed`), when `at` is before the receipt date
    /// (`before_receipt`) or when receipt was already acknowledged (`acknowledge_once`).
    pub fn acknowledge(&mut self, at: DateTime<Utc>) -> Result<(), TransitionError> {
        self.ensure_not_closed("acknowledged")?;
        self.ensure_not_before_receipt(at.date_naive(), "the acknowledgement")?;
        if let Some(earlier) = self.acknowledged_at {
            return Err(TransitionError::new(
                "acknowledge_once",
                format!(
                    "receipt of this request was already acknowledged at {earlier}; one \
                     confirmation of receipt is recorded per request (the CCPA's, due within 10 \
                     business days under Cal. Code Regs. tit. 11 §7021(a), is met by the first)"
                ),
            ));
        }
        self.acknowledged_at = Some(at);
        Ok(())
    }

    /// Records that the identity information the controller asked for was received at `at`.
    ///
    /// Under UK GDPR this is the "relevant time" of Art. 12A when it is later than receipt:
    /// the first period restarts from its date (`original_due` and `due` become that date + 1
    /// month, never earlier than before), and an extension already recorded keeps its due
    /// date if that is later. Under GDPR, CCPA and LGPD the clock keeps running from receipt.
    ///
    /// Refused when the request is closed (`closed`), when `at` is before the receipt date
    /// (`before_receipt`) or when identity was already verified (`verify_once`).
    pub fn verify_identity(&mut self, at: DateTime<Utc>) -> Result<(), TransitionError> {
        self.ensure_not_closed("verified")?;
        self.ensure_not_before_receipt(at.date_naive(), "the identity verification")?;
        if let Some(earlier) = self.identity_verified_at {
            return Err(TransitionError::new(
                "verify_once",
                format!(
                    "the requester's identity was already verified at {earlier}; {}",
                    verification_effect(self.regime)
                ),
            ));
        }
        if self.regime == Regime::UkGdpr {
            let restarted = deadlines(Regime::UkGdpr, at.date_naive()).due;
            self.original_due = self.original_due.max(restarted);
            self.due = self.due.max(restarted);
        }
        self.identity_verified_at = Some(at);
        Ok(())
    }

    /// Records at `at` an extension of the response period that the subject was told of, with
    /// reasons, on `subject_notified_on`; the due date becomes the extended one.
    ///
    /// Refused when the request is closed (`closed`); when `at` or the notice is before the
    /// receipt date (`before_receipt`); under LGPD (`no_extension`); when already extended
    /// (`extend_once`); when the notice is dated after `at` (`notified_in_future`); when `at`
    /// or the notice falls after the first period, `original_due` (`extend_within_first_period`).
    pub fn extend(
        &mut self,
        at: DateTime<Utc>,
        subject_notified_on: NaiveDate,
    ) -> Result<(), TransitionError> {
        self.ensure_not_closed("extended")?;
        let recorded_on = at.date_naive();
        self.ensure_not_before_receipt(recorded_on, "the extension")?;
        self.ensure_not_before_receipt(subject_notified_on, "the notice of extension")?;
        let Some(new_due) = extended_due(self.regime, self.original_due) else {
            return Err(TransitionError::new(
                "no_extension",
                format!(
                    "LGPD Art. 19 requires a complete statement within 15 days of the request \
                     (due {}) and provides no extension",
                    self.original_due
                ),
            ));
        };
        if let Some(earlier) = self.extended_at {
            return Err(TransitionError::new(
                "extend_once",
                format!(
                    "the response period was already extended at {earlier}, to {}; {} allows a \
                     single extension",
                    self.due,
                    self.regime.deadline_provision()
                ),
            ));
        }
        if subject_notified_on > recorded_on {
            return Err(TransitionError::new(
                "notified_in_future",
                format!(
                    "the subject is said to be notified on {subject_notified_on}, after the \
                     extension was recorded on {recorded_on}; record the extension once the \
                     subject has been told of it and the reasons ({})",
                    self.regime.deadline_provision()
                ),
            ));
        }
        let late = if subject_notified_on > self.original_due {
            Some(format!("the subject was notified on {subject_notified_on}"))
        } else if recorded_on > self.original_due {
            Some(format!("the extension is recorded on {recorded_on}"))
        } else {
            None
        };
        if let Some(late) = late {
            return Err(TransitionError::new(
                "extend_within_first_period",
                format!(
                    "{late}, after the first period ended on {}; {} allows an extension only if \
                     the subject is told of it, with reasons, within {}",
                    self.original_due,
                    self.regime.deadline_provision(),
                    first_period(self.regime)
                ),
            ));
        }
        self.status = RequestStatus::Extended;
        self.extended_at = Some(at);
        self.due = new_due;
        Ok(())
    }

    /// Records at `at` the refusal of the request for `reason`; the request is closed.
    ///
    /// Refused when the request is closed (`closed`), when `at` is before the receipt date
    /// (`before_receipt`) or when the reason is empty or only whitespace (`reason_required`).
    pub fn reject(&mut self, at: DateTime<Utc>, reason: &str) -> Result<(), TransitionError> {
        self.ensure_not_closed("rejected")?;
        self.ensure_not_before_receipt(at.date_naive(), "the refusal")?;
        if reason.trim().is_empty() {
            return Err(TransitionError::new(
                "reason_required",
                format!(
                    "a refusal must give the subject its reasons ({}); state why the request is \
                     not acted on",
                    refusal_provision(self.regime)
                ),
            ));
        }
        self.status = RequestStatus::Rejected;
        self.closed_at = Some(at);
        Ok(())
    }

    /// Records at `at` that the request was answered; the request is closed.
    ///
    /// Refused when the request is closed (`closed`) or when `at` is before the receipt date
    /// (`before_receipt`).
    pub fn complete(&mut self, at: DateTime<Utc>) -> Result<(), TransitionError> {
        self.ensure_not_closed("completed")?;
        self.ensure_not_before_receipt(at.date_naive(), "the completion")?;
        self.status = RequestStatus::Completed;
        self.closed_at = Some(at);
        Ok(())
    }

    /// Whether the request is still unanswered (open or extended) after its due date.
    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        !self.status.is_closed() && today > self.due
    }

    /// For a closed request, whether it was closed after its deadline; `None` while open.
    ///
    /// The deadline is `due`, except for an EU GDPR refusal: Art. 12(4) requires a refusal
    /// and its reasons within one month of receipt, which an extension does not lengthen, so
    /// a refusal is late after `original_due`.
    pub fn completed_late(&self) -> Option<bool> {
        let closed_on = self.closed_at?.date_naive();
        let deadline = match (self.status, self.regime) {
            (RequestStatus::Rejected, Regime::Gdpr) => self.original_due,
            (RequestStatus::Rejected | RequestStatus::Completed, _) => self.due,
            (RequestStatus::Open | RequestStatus::Extended, _) => return None,
        };
        Some(closed_on > deadline)
    }

    /// Calendar days from `today` to the due date: 0 on the due date, negative once past it.
    pub fn days_left(&self, today: NaiveDate) -> i64 {
        (self.due - today).num_days()
    }

    /// Refuses any transition on a closed request.
    fn ensure_not_closed(&self, verb: &str) -> Result<(), TransitionError> {
        let closed_on = self.closed_at.map_or_else(
            || "an unrecorded date".to_owned(),
            |t| t.date_naive().to_string(),
        );
        let message = match self.status {
            RequestStatus::Open | RequestStatus::Extended => return Ok(()),
            RequestStatus::Rejected => format!(
                "a rejected request cannot be {verb}: it was refused on {closed_on}, and that \
                 refusal with its reasons was the response ({}); a new request from the subject \
                 opens a new case",
                refusal_provision(self.regime)
            ),
            RequestStatus::Completed => format!(
                "the request was already completed on {closed_on}, so it cannot be {verb}: the \
                 response ({}) has been given; a new request from the subject opens a new case",
                self.regime.deadline_provision()
            ),
        };
        Err(TransitionError::new("closed", message))
    }

    /// Refuses a step dated before the request was received.
    fn ensure_not_before_receipt(&self, on: NaiveDate, what: &str) -> Result<(), TransitionError> {
        if on >= self.received_on {
            return Ok(());
        }
        Err(TransitionError::new(
            "before_receipt",
            format!(
                "{what} is dated {on}, before the request was received on {}; the response \
                 period under {} starts at receipt, so nothing can be done on the request before it",
                self.received_on,
                self.regime.deadline_provision()
            ),
        ))
    }
}

/// The first period an extension must be notified within, in words.
fn first_period(regime: Regime) -> &'static str {
    match regime {
        Regime::Gdpr => "one month of receipt",
        Regime::UkGdpr => {
            "one month of the relevant time (receipt, or receipt of the identity information \
             asked for, whichever is later)"
        }
        Regime::Ccpa => "the first 45 days",
        Regime::Lgpd => "the 15 days (no extension exists)",
    }
}

/// The provision requiring a refusal to give reasons.
fn refusal_provision(regime: Regime) -> &'static str {
    match regime {
        Regime::Gdpr => "GDPR Art. 12(4)",
        Regime::UkGdpr => "UK GDPR Art. 12(4)",
        Regime::Ccpa => "CCPA regulations, Cal. Code Regs. tit. 11 §§7022-7024",
        Regime::Lgpd => "LGPD Art. 18 §4",
    }
}

/// What a (second) identity verification would do to the deadline, in words.
fn verification_effect(regime: Regime) -> &'static str {
    match regime {
        Regime::UkGdpr => {
            "under UK GDPR Art. 12A the period restarts once, when the identity information \
             asked for is received, and a second verification cannot move it again"
        }
        Regime::Gdpr => {
            "one verification is recorded per request, and under GDPR Art. 12(3) the period \
             runs from receipt whatever the verification date"
        }
        Regime::Ccpa => {
            "one verification is recorded per request, and under CCPA §1798.130(a)(2) the 45 \
             days run from receipt whatever the verification date"
        }
        Regime::Lgpd => {
            "one verification is recorded per request, and under LGPD Art. 19 the 15 days run \
             from the request whatever the verification date"
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    /// Noon UTC on the given day.
    fn at(y: i32, m: u32, day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, day, 12, 0, 0).unwrap()
    }

    fn opened(regime: Regime, y: i32, m: u32, day: u32) -> RequestState {
        RequestState::open(RequestKind::Access, regime, at(y, m, day), at(y, m, day)).unwrap()
    }

    /// Asserts that `step` is refused under `rule`, that the message contains `says`, and that
    /// the state is unchanged.
    fn assert_refused(
        state: &RequestState,
        rule: &str,
        says: &str,
        step: impl FnOnce(&mut RequestState) -> Result<(), TransitionError>,
    ) {
        let mut after = state.clone();
        let err = step(&mut after).unwrap_err();
        assert_eq!(err.rule, rule, "{err}");
        assert!(err.message.contains(says), "{err:?} should say {says:?}");
        assert_eq!(
            &after, state,
            "a refused step must leave the state unchanged"
        );
    }

    #[test]
    fn opening_sets_the_regime_deadlines_from_the_receipt_date() {
        // Received by email late on 31 Jan, entered the next morning: the clock runs from 31 Jan.
        let received = Utc.with_ymd_and_hms(2026, 1, 31, 23, 30, 0).unwrap();
        let entered = Utc.with_ymd_and_hms(2026, 2, 1, 9, 0, 0).unwrap();
        let state =
            RequestState::open(RequestKind::Erasure, Regime::Gdpr, received, entered).unwrap();
        assert_eq!(state.status, RequestStatus::Open);
        assert_eq!(state.received_on, d(2026, 1, 31));
        assert_eq!(state.opened_at, entered);
        assert_eq!(
            (state.due, state.original_due),
            (d(2026, 2, 28), d(2026, 2, 28))
        );
        assert_eq!(state.ack_due, None);

        let ccpa = opened(Regime::Ccpa, 2026, 1, 2);
        assert_eq!(ccpa.due, d(2026, 2, 16));
        assert_eq!(ccpa.ack_due, Some(d(2026, 1, 16)));
        assert_eq!(opened(Regime::Lgpd, 2025, 12, 20).due, d(2026, 1, 4));
    }

    #[test]
    fn a_request_cannot_be_received_after_it_was_opened() {
        let err = RequestState::open(
            RequestKind::Access,
            Regime::Gdpr,
            at(2026, 3, 2),
            at(2026, 3, 1),
        )
        .unwrap_err();
        assert_eq!(err.rule, "received_in_future");
        assert!(err.message.contains("GDPR Art. 12(3)"), "{err}");
        assert!(err.to_string().starts_with("received_in_future: "));
    }

    #[test]
    fn acknowledging_is_recorded_once() {
        let mut state = opened(Regime::Ccpa, 2026, 1, 2);
        state.acknowledge(at(2026, 1, 5)).unwrap();
        assert_eq!(state.acknowledged_at, Some(at(2026, 1, 5)));
        assert_refused(&state, "acknowledge_once", "§7021(a)", |s| {
            s.acknowledge(at(2026, 1, 6))
        });
    }

    #[test]
    fn nothing_is_accepted_after_closing() {
        let mut completed = opened(Regime::Gdpr, 2026, 1, 10);
        completed.complete(at(2026, 2, 1)).unwrap();
        let mut rejected = opened(Regime::Gdpr, 2026, 1, 10);
        rejected
            .reject(at(2026, 2, 1), "manifestly unfounded")
            .unwrap();
        for state in [&completed, &rejected] {
            assert_refused(state, "closed", "2026-02-01", |s| {
                s.acknowledge(at(2026, 2, 2))
            });
            assert_refused(state, "closed", "GDPR Art. 12", |s| {
                s.verify_identity(at(2026, 2, 2))
            });
            assert_refused(state, "closed", "cannot be extended", |s| {
                s.extend(at(2026, 2, 2), d(2026, 2, 2))
            });
        }
        assert_refused(
            &rejected,
            "closed",
            "a rejected request cannot be completed",
            |s| s.complete(at(2026, 2, 3)),
        );
        assert_refused(&rejected, "closed", "GDPR Art. 12(4)", |s| {
            s.reject(at(2026, 2, 3), "again")
        });
        assert_refused(&completed, "closed", "already completed", |s| {
            s.complete(at(2026, 2, 3))
        });
        assert_refused(&completed, "closed", "cannot be rejected", |s| {
            s.reject(at(2026, 2, 3), "too late")
        });
    }

    #[test]
    fn steps_dated_before_receipt_are_refused() {
        let state = opened(Regime::Gdpr, 2026, 1, 10);
        assert_refused(&state, "before_receipt", "2026-01-10", |s| {
            s.acknowledge(at(2026, 1, 9))
        });
        assert_refused(&state, "before_receipt", "notice of extension", |s| {
            s.extend(at(2026, 1, 20), d(2026, 1, 9))
        });
        assert_refused(&state, "before_receipt", "completion", |s| {
            s.complete(at(2026, 1, 9))
        });
        // The same day is fine.
        let mut same_day = state.clone();
        same_day.complete(at(2026, 1, 10)).unwrap();
    }

    #[test]
    fn identity_is_verified_once() {
        let mut state = opened(Regime::Gdpr, 2026, 1, 10);
        state.verify_identity(at(2026, 1, 12)).unwrap();
        assert_eq!(state.identity_verified_at, Some(at(2026, 1, 12)));
        assert_refused(&state, "verify_once", "GDPR Art. 12(3)", |s| {
            s.verify_identity(at(2026, 1, 13))
        });
        let mut uk = opened(Regime::UkGdpr, 2026, 1, 10);
        uk.verify_identity(at(2026, 1, 20)).unwrap();
        assert_refused(&uk, "verify_once", "Art. 12A", |s| {
            s.verify_identity(at(2026, 1, 25))
        });
    }

    #[test]
    fn uk_verification_restarts_the_period_from_the_verification_date() {
        let mut state = opened(Regime::UkGdpr, 2026, 1, 10);
        assert_eq!(state.due, d(2026, 2, 10));
        state.verify_identity(at(2026, 1, 31)).unwrap();
        assert_eq!(
            (state.due, state.original_due),
            (d(2026, 2, 28), d(2026, 2, 28))
        );
        assert_eq!(state.status, RequestStatus::Open);

        // Verified on the day of receipt: nothing moves, and never earlier.
        let mut same_day = opened(Regime::UkGdpr, 2026, 1, 10);
        same_day.verify_identity(at(2026, 1, 10)).unwrap();
        assert_eq!(
            (same_day.due, same_day.original_due),
            (d(2026, 2, 10), d(2026, 2, 10))
        );
    }

    #[test]
    fn uk_extension_is_allowed_within_the_restarted_first_period() {
        let mut state = opened(Regime::UkGdpr, 2026, 1, 10);
        state.verify_identity(at(2026, 2, 5)).unwrap();
        // 1 Mar is after the receipt-based due date (10 Feb) but within one month of the
        // relevant time (5 Mar).
        state.extend(at(2026, 3, 1), d(2026, 3, 1)).unwrap();
        assert_eq!(state.due, d(2026, 5, 5));
        assert_refused(&state, "extend_once", "Art. 12A", |s| {
            s.extend(at(2026, 3, 2), d(2026, 3, 2))
        });

        let mut unverified = opened(Regime::UkGdpr, 2026, 1, 10);
        assert_refused(&unverified, "extend_within_first_period", "Art. 12A", |s| {
            s.extend(at(2026, 2, 11), d(2026, 2, 11))
        });
        unverified.verify_identity(at(2026, 2, 11)).unwrap();
        unverified.extend(at(2026, 2, 11), d(2026, 2, 11)).unwrap();
        assert_eq!(unverified.due, d(2026, 5, 11));
    }

    #[test]
    fn uk_verification_after_an_extension_keeps_the_later_due_date() {
        let mut early = opened(Regime::UkGdpr, 2026, 1, 10);
        early.extend(at(2026, 1, 15), d(2026, 1, 15)).unwrap();
        assert_eq!(early.due, d(2026, 4, 10));
        early.verify_identity(at(2026, 1, 20)).unwrap();
        assert_eq!(early.due, d(2026, 4, 10), "the extended due date is later");
        assert_eq!(early.original_due, d(2026, 2, 20));
        assert_eq!(early.status, RequestStatus::Extended);

        let mut late = opened(Regime::UkGdpr, 2026, 1, 10);
        late.extend(at(2026, 1, 15), d(2026, 1, 15)).unwrap();
        late.verify_identity(at(2026, 3, 20)).unwrap();
        assert_eq!(
            late.due,
            d(2026, 4, 20),
            "one month from verification is later"
        );
    }

    #[test]
    fn verification_does_not_move_the_deadline_outside_the_uk() {
        for regime in [Regime::Gdpr, Regime::Ccpa, Regime::Lgpd] {
            let mut state = opened(regime, 2026, 1, 10);
            let before = (state.due, state.original_due, state.ack_due);
            state.verify_identity(at(2026, 1, 30)).unwrap();
            assert_eq!(
                (state.due, state.original_due, state.ack_due),
                before,
                "{regime}"
            );
        }
    }

    #[test]
    fn gdpr_extension_adds_two_months_to_the_original_due_date() {
        let mut state = opened(Regime::Gdpr, 2026, 1, 31);
        // Notified and recorded on the last day of the first period: still in time.
        state.extend(at(2026, 2, 28), d(2026, 2, 28)).unwrap();
        assert_eq!(state.status, RequestStatus::Extended);
        assert_eq!(state.extended_at, Some(at(2026, 2, 28)));
        assert_eq!(
            (state.due, state.original_due),
            (d(2026, 4, 28), d(2026, 2, 28))
        );
    }

    #[test]
    fn a_request_is_extended_once() {
        let mut state = opened(Regime::Gdpr, 2026, 1, 31);
        state.extend(at(2026, 2, 10), d(2026, 2, 10)).unwrap();
        assert_refused(&state, "extend_once", "GDPR Art. 12(3)", |s| {
            s.extend(at(2026, 2, 11), d(2026, 2, 11))
        });
        let mut ccpa = opened(Regime::Ccpa, 2025, 12, 20);
        ccpa.extend(at(2026, 2, 3), d(2026, 2, 3)).unwrap();
        assert_eq!(ccpa.due, d(2026, 3, 20));
        assert_refused(&ccpa, "extend_once", "§1798.130(a)(2)", |s| {
            s.extend(at(2026, 2, 3), d(2026, 2, 3))
        });
    }

    #[test]
    fn an_extension_must_be_notified_and_recorded_within_the_first_period() {
        let gdpr = opened(Regime::Gdpr, 2026, 1, 31);
        // Recorded after the first period, even though the notice was in time.
        assert_refused(
            &gdpr,
            "extend_within_first_period",
            "recorded on 2026-03-01",
            |s| s.extend(at(2026, 3, 1), d(2026, 2, 27)),
        );
        // Notified after the first period.
        assert_refused(
            &gdpr,
            "extend_within_first_period",
            "GDPR Art. 12(3)",
            |s| s.extend(at(2026, 3, 2), d(2026, 3, 1)),
        );
        let ccpa = opened(Regime::Ccpa, 2025, 12, 20);
        assert_refused(
            &ccpa,
            "extend_within_first_period",
            "CCPA §1798.130(a)(2)",
            |s| s.extend(at(2026, 2, 4), d(2026, 2, 4)),
        );
    }

    #[test]
    fn the_notice_cannot_postdate_the_record_of_the_extension() {
        let state = opened(Regime::Gdpr, 2026, 1, 10);
        assert_refused(&state, "notified_in_future", "2026-01-21", |s| {
            s.extend(at(2026, 1, 20), d(2026, 1, 21))
        });
    }

    #[test]
    fn lgpd_allows_no_extension() {
        let state = opened(Regime::Lgpd, 2026, 1, 10);
        assert_refused(&state, "no_extension", "LGPD Art. 19", |s| {
            s.extend(at(2026, 1, 12), d(2026, 1, 12))
        });
    }

    #[test]
    fn a_refusal_needs_a_reason() {
        let mut state = opened(Regime::Gdpr, 2026, 1, 10);
        for blank in ["", "   ", "\n\t"] {
            assert_refused(&state, "reason_required", "GDPR Art. 12(4)", |s| {
                s.reject(at(2026, 1, 20), blank)
            });
        }
        state
            .reject(at(2026, 1, 20), "identity could not be established")
            .unwrap();
        assert_eq!(state.status, RequestStatus::Rejected);
        assert_eq!(state.closed_at, Some(at(2026, 1, 20)));
    }

    #[test]
    fn an_extended_request_can_still_be_completed() {
        let mut state = opened(Regime::Ccpa, 2026, 1, 2);
        state.extend(at(2026, 2, 1), d(2026, 2, 1)).unwrap();
        state.complete(at(2026, 3, 1)).unwrap();
        assert_eq!(state.status, RequestStatus::Completed);
        assert_eq!(state.closed_at, Some(at(2026, 3, 1)));
        assert_eq!(state.completed_late(), Some(false));
    }

    #[test]
    fn overdue_only_while_unanswered_and_after_the_due_date() {
        let mut state = opened(Regime::Gdpr, 2026, 1, 31);
        assert!(
            !state.is_overdue(d(2026, 2, 28)),
            "the due date itself is on time"
        );
        assert!(state.is_overdue(d(2026, 3, 1)));
        assert_eq!(state.days_left(d(2026, 2, 20)), 8);
        assert_eq!(state.days_left(d(2026, 2, 28)), 0);
        assert_eq!(state.days_left(d(2026, 3, 2)), -2);

        state.extend(at(2026, 2, 20), d(2026, 2, 20)).unwrap();
        assert!(
            !state.is_overdue(d(2026, 3, 1)),
            "the extension moved the due date"
        );
        assert!(state.is_overdue(d(2026, 4, 29)));

        state.complete(at(2026, 5, 1)).unwrap();
        assert!(
            !state.is_overdue(d(2026, 6, 1)),
            "a closed request is never overdue"
        );
    }

    #[test]
    fn lateness_is_known_once_closed() {
        let mut on_time = opened(Regime::Lgpd, 2026, 1, 10);
        assert_eq!(on_time.completed_late(), None);
        on_time.complete(at(2026, 1, 25)).unwrap();
        assert_eq!(on_time.completed_late(), Some(false));

        let mut late = opened(Regime::Lgpd, 2026, 1, 10);
        late.complete(at(2026, 1, 26)).unwrap();
        assert_eq!(late.completed_late(), Some(true));

        let mut extended = opened(Regime::Gdpr, 2026, 1, 10);
        extended.extend(at(2026, 1, 20), d(2026, 1, 20)).unwrap();
        assert_eq!(extended.completed_late(), None);
    }

    #[test]
    fn a_gdpr_refusal_is_late_after_one_month_even_when_extended() {
        let mut gdpr = opened(Regime::Gdpr, 2026, 1, 10);
        gdpr.extend(at(2026, 1, 20), d(2026, 1, 20)).unwrap();
        gdpr.reject(at(2026, 3, 1), "manifestly excessive").unwrap();
        assert_eq!(gdpr.completed_late(), Some(true), "Art. 12(4): one month");

        let mut within = opened(Regime::Gdpr, 2026, 1, 10);
        within.extend(at(2026, 1, 20), d(2026, 1, 20)).unwrap();
        within
            .reject(at(2026, 2, 10), "manifestly excessive")
            .unwrap();
        assert_eq!(within.completed_late(), Some(false));

        let mut ccpa = opened(Regime::Ccpa, 2026, 1, 10);
        ccpa.extend(at(2026, 1, 20), d(2026, 1, 20)).unwrap();
        ccpa.reject(at(2026, 3, 1), "cannot verify the consumer")
            .unwrap();
        assert_eq!(
            ccpa.completed_late(),
            Some(false),
            "the CCPA extension covers denials"
        );
    }
}
