//! Timestamps serialized byte for byte as chrono's `Serialize` writes them (RFC 3339 in
//! UTC, `Z`, as many fractional digits as the value needs: none, 3, 6 or 9), without its
//! route through `core::fmt` and a per-character escaping writer.
//!
//! The bytes matter: an entry's body is hashed as first written, and bodies written by
//! either route must stay identical. The one writer of entries formats two or three
//! timestamps per entry, and chrono's route was about a seventh of its time. Values
//! outside what this writes (years before 0 or after 9999, a leap second) go through
//! chrono itself. Reading is chrono's.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

/// Longest form: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const MAX_LEN: usize = 30;

/// Serializes `at` as chrono does (for `#[serde(serialize_with = ...)]`).
pub(crate) fn serialize<S: Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; MAX_LEN];
    match format(at, &mut buf) {
        Some(text) => serializer.serialize_str(text),
        None => at.serialize(serializer),
    }
}

/// [`serialize`] for an optional timestamp.
pub(crate) mod option {
    use super::*;

    /// Serializes `at` as chrono does, or a null.
    pub(crate) fn serialize<S: Serializer>(
        at: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        struct Timestamp<'a>(&'a DateTime<Utc>);
        impl Serialize for Timestamp<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                super::serialize(self.0, serializer)
            }
        }
        match at {
            Some(at) => serializer.serialize_some(&Timestamp(at)),
            None => serializer.serialize_none(),
        }
    }
}

/// Writes `at` into `buf`, or `None` for a value chrono writes differently (a signed
/// or five-digit year, a leap second).
fn format<'b>(at: &DateTime<Utc>, buf: &'b mut [u8; MAX_LEN]) -> Option<&'b str> {
    let year = at.year();
    let nano = at.nanosecond();
    if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
        return None;
    }
    let year = year as u32;
    put_digits(&mut buf[0..4], year);
    buf[4] = b'-';
    put_digits(&mut buf[5..7], at.month());
    buf[7] = b'-';
    put_digits(&mut buf[8..10], at.day());
    buf[10] = b'T';
    put_digits(&mut buf[11..13], at.hour());
    buf[13] = b':';
    put_digits(&mut buf[14..16], at.minute());
    buf[16] = b':';
    put_digits(&mut buf[17..19], at.second());
    let mut len = 19;
    let fraction = if nano == 0 {
        None
    } else if nano % 1_000_000 == 0 {
        Some((nano / 1_000_000, 3))
    } else if nano % 1_000 == 0 {
        Some((nano / 1_000, 6))
    } else {
        Some((nano, 9))
    };
    if let Some((value, digits)) = fraction {
        buf[len] = b'.';
        put_digits(&mut buf[len + 1..len + 1 + digits], value);
        len += 1 + digits;
    }
    buf[len] = b'Z';
    len += 1;
    // Only ASCII digits and separators were written.
    std::str::from_utf8(&buf[..len]).ok()
}

/// Writes `value` into `out` in decimal, zero-padded to its length.
fn put_digits(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Ours {
        #[serde(serialize_with = "serialize")]
        at: DateTime<Utc>,
        #[serde(serialize_with = "option::serialize")]
        maybe: Option<DateTime<Utc>>,
    }

    #[derive(Serialize)]
    struct Chrono {
        at: DateTime<Utc>,
        maybe: Option<DateTime<Utc>>,
    }

    fn assert_same(at: DateTime<Utc>) {
        let ours = serde_json::to_string(&Ours {
            at,
            maybe: Some(at),
        })
        .unwrap();
        let chrono = serde_json::to_string(&Chrono {
            at,
            maybe: Some(at),
        })
        .unwrap();
        assert_eq!(ours, chrono, "{at:?}");
    }

    #[test]
    fn writes_what_chrono_writes_for_every_fraction_length() {
        for nanos in [
            0,
            1,
            999_999_999,
            123_000_000,
            120_000_000,
            100_000_000,
            123_456_000,
            100_000,
            1_000,
            123_456_789,
            5,
        ] {
            for secs in [0, 1_700_000_000, 1_699_999_999, 951_782_400] {
                assert_same(DateTime::from_timestamp(secs, nanos).unwrap());
            }
        }
    }

    #[test]
    fn writes_what_chrono_writes_across_the_four_digit_years() {
        // 0000-01-01 to 9999-12-31, in steps that visit every month, day, hour, minute
        // and second position with varied fractions.
        let (first, last) = (-62_167_219_200i64, 253_402_300_799i64);
        let mut secs = first;
        let mut nanos = 7u32;
        while secs <= last {
            assert_same(DateTime::from_timestamp(secs, nanos).unwrap());
            secs += 86_400 * 29 + 3_607 + 13;
            nanos = nanos.wrapping_mul(2_654_435_761) % 1_000_000_000;
            if nanos % 3 == 0 {
                nanos -= nanos % 1_000_000;
            } else if nanos % 3 == 1 {
                nanos -= nanos % 1_000;
            }
        }
        assert_same(DateTime::from_timestamp(first, 0).unwrap());
        assert_same(DateTime::from_timestamp(last, 999_999_999).unwrap());
    }

    #[test]
    fn leaves_what_it_does_not_write_to_chrono() {
        // Before year 0, after year 9999, and a leap second.
        assert_same(DateTime::from_timestamp(-62_167_219_201, 0).unwrap());
        assert_same(DateTime::from_timestamp(253_402_300_800, 5_000).unwrap());
        assert_same(DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap());
        let none = serde_json::to_string(&Ours {
            at: DateTime::UNIX_EPOCH,
            maybe: None,
        })
        .unwrap();
        assert_eq!(none, r#"{"at":"1970-01-01T00:00:00Z","maybe":null}"#);
    }
}
