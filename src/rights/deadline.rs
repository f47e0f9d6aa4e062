//! Deadline arithmetic for rights requests on UTC calendar dates: calendar months (clamped to
//! month ends), calendar days and business days. Pure: chrono only, no clock reads.

use chrono::{Datelike, Days, Months, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

use super::Regime;

/// GDPR / UK GDPR Art. 12(3): one month to respond.
const GDPR_PERIOD_MONTHS: u32 = 1;
/// GDPR / UK GDPR Art. 12(3): extendable by two further months.
const GDPR_EXTENSION_MONTHS: u32 = 2;
/// Cal. Civ. Code §1798.130(a)(2): 45 calendar days to respond.
const CCPA_PERIOD_DAYS: u64 = 45;
/// Cal. Civ. Code §1798.130(a)(2): extendable once by 45 further days.
const CCPA_EXTENSION_DAYS: u64 = 45;
/// Cal. Code Regs. tit. 11 §7021(a): confirm receipt within 10 business days.
const CCPA_ACK_BUSINESS_DAYS: u32 = 10;
/// LGPD Art. 19(II): a complete statement within 15 days.
const LGPD_PERIOD_DAYS: u64 = 15;

/// The deadlines a request gets from its regime and the day its period starts.
///
/// Every date is the last day on which the action is on time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// Last day for the response when the period is not extended.
    pub due: NaiveDate,
    /// Last day to confirm receipt; `Some` only for the CCPA.
    pub ack_due: Option<NaiveDate>,
    /// Last day an extension may be recorded and notified to the subject: the unextended due
    /// date. `None` when the regime allows no extension (LGPD).
    pub extension_allowed_until: Option<NaiveDate>,
    /// What the due date becomes if the period is extended; `None` for LGPD.
    pub extended_due: Option<NaiveDate>,
}

/// The same day of the month `months` months after `date`, or the last day of that month when
/// it has no such day (31 Jan + 1 = 28 Feb, or 29 Feb in a leap year; 31 Mar + 1 = 30 Apr).
///
/// This is how the EU (Regulation 1182/71 Art. 3(2)(c)) and the ICO count a period of months.
/// The roll-forward of a period ending on a weekend or holiday (Art. 3(4)) is deliberately not
/// applied: the date returned is never later than the legal one.
/// A result past chrono's last representable date saturates at [`NaiveDate::MAX`].
pub fn add_months_clamped(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_add_months(Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}

/// The `n`th business day after `date`, counting Monday to Friday only; the day of `date`
/// itself is never counted, so after a receipt on Friday, Saturday or Sunday the following
/// Monday is business day 1. `n == 0` returns `date`.
///
/// Public holidays are not modelled: every Monday to Friday counts, so the result is never
/// later than a holiday-aware count would give (it errs on the side of answering early).
/// Saturates at [`NaiveDate::MAX`].
pub fn add_business_days(date: NaiveDate, n: u32) -> NaiveDate {
    if n == 0 {
        return date;
    }
    // Counting after a weekend day is the same as counting after the Friday before it.
    let mut day = match date.weekday() {
        Weekday::Sat => days_before(date, 1),
        Weekday::Sun => days_before(date, 2),
        _ => date,
    };
    // From a weekday, every 5 business days are exactly one calendar week.
    day = add_days(day, u64::from(n / 5) * 7);
    for _ in 0..n % 5 {
        day = add_days(day, 1);
        while matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            day = add_days(day, 1);
        }
    }
    day
}

/// The deadlines for a request under `regime` whose period starts on `start`: the day of
/// receipt, or for UK GDPR the "relevant time" of Art. 12A (the later of receipt and receipt
/// of the identity information the controller asked for).
///
/// - GDPR, UK GDPR: due `start` + 1 month (clamped); extended due = due + 2 months (clamped),
///   counted from the unextended due date, never from receipt (Art. 12(3)).
/// - CCPA: due `start` + 45 days; extended due = due + 45 days; acknowledgement within
///   10 business days (holidays not modelled, see [`add_business_days`]).
/// - LGPD: due `start` + 15 days; no extension (Art. 19(II)).
pub fn deadlines(regime: Regime, start: NaiveDate) -> Deadlines {
    let (due, ack_due) = match regime {
        Regime::Gdpr | Regime::UkGdpr => (add_months_clamped(start, GDPR_PERIOD_MONTHS), None),
        Regime::Ccpa => (
            add_days(start, CCPA_PERIOD_DAYS),
            Some(add_business_days(start, CCPA_ACK_BUSINESS_DAYS)),
        ),
        Regime::Lgpd => (add_days(start, LGPD_PERIOD_DAYS), None),
    };
    let extended_due = extended_due(regime, due);
    Deadlines {
        due,
        ack_due,
        extension_allowed_until: extended_due.map(|_| due),
        extended_due,
    }
}

/// The due date after extending a period whose unextended due date is `due`, or `None` when
/// the regime allows no extension. The single source of extension arithmetic.
pub(super) fn extended_due(regime: Regime, due: NaiveDate) -> Option<NaiveDate> {
    match regime {
        Regime::Gdpr | Regime::UkGdpr => Some(add_months_clamped(due, GDPR_EXTENSION_MONTHS)),
        Regime::Ccpa => Some(add_days(due, CCPA_EXTENSION_DAYS)),
        Regime::Lgpd => None,
    }
}

/// `date` + `days` calendar days, saturating at [`NaiveDate::MAX`].
fn add_days(date: NaiveDate, days: u64) -> NaiveDate {
    date.checked_add_days(Days::new(days))
        .unwrap_or(NaiveDate::MAX)
}

/// `date` − `days` calendar days, saturating at [`NaiveDate::MIN`].
fn days_before(date: NaiveDate, days: u64) -> NaiveDate {
    date.checked_sub_days(Days::new(days))
        .unwrap_or(NaiveDate::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn a_month_later_is_the_same_day_or_the_last_day_of_a_shorter_month() {
        let cases = [
            (d(2026, 1, 31), 1, d(2026, 2, 28)),
            (d(2028, 1, 31), 1, d(2028, 2, 29)),
            (d(2028, 2, 29), 1, d(2028, 3, 29)),
            (d(2026, 3, 31), 1, d(2026, 4, 30)),
            (d(2026, 1, 15), 1, d(2026, 2, 15)),
            (d(2025, 12, 31), 1, d(2026, 1, 31)),
            (d(2025, 11, 30), 3, d(2026, 2, 28)),
            (d(2027, 11, 30), 3, d(2028, 2, 29)),
            (d(2026, 2, 28), 2, d(2026, 4, 28)),
            (d(2026, 1, 31), 2, d(2026, 3, 31)),
            (d(2026, 5, 17), 0, d(2026, 5, 17)),
        ];
        for (start, months, expected) in cases {
            assert_eq!(
                add_months_clamped(start, months),
                expected,
                "{start} + {months} month(s)"
            );
        }
    }

    #[test]
    fn month_arithmetic_saturates_instead_of_panicking_at_the_end_of_time() {
        assert_eq!(add_months_clamped(NaiveDate::MAX, 1), NaiveDate::MAX);
        assert_eq!(deadlines(Regime::Ccpa, NaiveDate::MAX).due, NaiveDate::MAX);
        assert_eq!(add_business_days(NaiveDate::MAX, 10), NaiveDate::MAX);
    }

    #[test]
    fn gdpr_due_is_one_month_and_extension_two_more_months_from_the_original_due() {
        // Received 31 Jan 2026: due 28 Feb; the extension counts from 28 Feb, giving 28 Apr
        // (not 30 Apr, which counting three months from receipt would give).
        let late_january = deadlines(Regime::Gdpr, d(2026, 1, 31));
        assert_eq!(
            late_january,
            Deadlines {
                due: d(2026, 2, 28),
                ack_due: None,
                extension_allowed_until: Some(d(2026, 2, 28)),
                extended_due: Some(d(2026, 4, 28)),
            }
        );
        // Received 31 Dec: due 31 Jan, extended to 31 Mar.
        let new_year = deadlines(Regime::Gdpr, d(2025, 12, 31));
        assert_eq!(new_year.due, d(2026, 1, 31));
        assert_eq!(new_year.extended_due, Some(d(2026, 3, 31)));
    }

    #[test]
    fn uk_gdpr_counts_like_gdpr_from_the_start_it_is_given() {
        for start in [d(2026, 1, 31), d(2028, 1, 31), d(2026, 6, 10)] {
            assert_eq!(
                deadlines(Regime::UkGdpr, start),
                deadlines(Regime::Gdpr, start)
            );
        }
    }

    #[test]
    fn ccpa_gives_45_days_across_a_year_end_and_45_more_from_the_original_due() {
        // Saturday 20 Dec 2025.
        let deadlines = deadlines(Regime::Ccpa, d(2025, 12, 20));
        assert_eq!(
            deadlines,
            Deadlines {
                due: d(2026, 2, 3),
                // Business day 1 is Monday 22 Dec; 25 Dec and 1 Jan count (no holidays).
                ack_due: Some(d(2026, 1, 2)),
                extension_allowed_until: Some(d(2026, 2, 3)),
                extended_due: Some(d(2026, 3, 20)),
            }
        );
        // Across a month end only.
        assert_eq!(
            super::deadlines(Regime::Ccpa, d(2026, 1, 20)).due,
            d(2026, 3, 6)
        );
    }

    #[test]
    fn ccpa_acknowledgement_counts_ten_business_days_after_receipt() {
        // Friday 2 Jan 2026: Mon 5 Jan is day 1, Fri 16 Jan day 10.
        assert_eq!(add_business_days(d(2026, 1, 2), 10), d(2026, 1, 16));
        // Saturday and Sunday count from the following Monday too.
        assert_eq!(add_business_days(d(2026, 1, 3), 10), d(2026, 1, 16));
        assert_eq!(add_business_days(d(2026, 1, 4), 10), d(2026, 1, 16));
        // Monday 5 Jan: Tue 6 is day 1, Mon 19 day 10.
        assert_eq!(add_business_days(d(2026, 1, 5), 10), d(2026, 1, 19));
        // Wednesday 24 Dec 2025 across the year end: Wed 7 Jan 2026.
        assert_eq!(
            deadlines(Regime::Ccpa, d(2025, 12, 24)).ack_due,
            Some(d(2026, 1, 7))
        );
        // Remainders that cross a weekend: Thursday + 3 = Tuesday; Saturday + 1 = Monday.
        assert_eq!(add_business_days(d(2026, 1, 8), 3), d(2026, 1, 13));
        assert_eq!(add_business_days(d(2026, 1, 3), 1), d(2026, 1, 5));
        assert_eq!(add_business_days(d(2026, 1, 3), 0), d(2026, 1, 3));
    }

    #[test]
    fn business_days_agree_with_counting_one_day_at_a_time() {
        let mut start = d(2025, 12, 1);
        for _ in 0..21 {
            for n in 0..=23 {
                let mut day = start;
                for _ in 0..n {
                    day = day.succ_opt().unwrap();
                    while matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                        day = day.succ_opt().unwrap();
                    }
                }
                assert_eq!(add_business_days(start, n), day, "{start} + {n}");
            }
            start = start.succ_opt().unwrap();
        }
    }

    #[test]
    fn lgpd_gives_15_days_and_no_extension() {
        assert_eq!(
            deadlines(Regime::Lgpd, d(2025, 12, 20)),
            Deadlines {
                due: d(2026, 1, 4),
                ack_due: None,
                extension_allowed_until: None,
                extended_due: None,
            }
        );
    }

    #[test]
    fn only_ccpa_has_an_acknowledgement_deadline() {
        let start = d(2026, 3, 2);
        assert!(deadlines(Regime::Ccpa, start).ack_due.is_some());
        for regime in [Regime::Gdpr, Regime::UkGdpr, Regime::Lgpd] {
            assert_eq!(deadlines(regime, start).ack_due, None, "{regime}");
        }
    }
}
