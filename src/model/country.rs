//! ISO 3166 country and subdivision codes. Pure: no I/O.

use std::fmt;

use serde::de::Visitor;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ValidationError;

/// Every officially assigned ISO 3166-1 alpha-2 code, sorted.
const ISO_3166_1_ALPHA_2: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// The same codes as a 26 × 26 bitmap (a row per first letter, a bit per second), so a
/// code is checked without a search: every stored state holds one, and a screened list
/// decodes one per contact.
const ASSIGNED: [u32; 26] = {
    let mut rows = [0u32; 26];
    let mut i = 0;
    while i < ISO_3166_1_ALPHA_2.len() {
        let code = ISO_3166_1_ALPHA_2[i].as_bytes();
        rows[(code[0] - b'A') as usize] |= 1 << (code[1] - b'A');
        i += 1;
    }
    rows
};

/// An assigned ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Country([u8; 2]);

impl Country {
    /// Parses an assigned alpha-2 code; `field` names the input in the error.
    pub fn parse(field: &str, code: &str) -> Result<Self, ValidationError> {
        match *code.as_bytes() {
            [first @ b'A'..=b'Z', second @ b'A'..=b'Z']
                if ASSIGNED[usize::from(first - b'A')] & 1 << (second - b'A') != 0 =>
            {
                Ok(Self([first, second]))
            }
            _ => Err(
ValidationError::new(
                field,
                format!("{code:?} is not an assigned ISO 3166-1 alpha-2 country code (upper case, e.g. \"DE\")"),
            )),
        }
    }

    /// The two-letter code.
    pub fn as_str(&self) -> &str {
        // Only ever built from an ASCII code in the table above.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// As the code, read from the input in place: every stored state holds a country, and a
// screened list decodes one per contact.
impl Serialize for Country {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Country {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Code;
        impl Visitor<'_> for Code {
            type Value = Country;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 3166-1 alpha-2 country code")
            }
            fn visit_str<E: serde::de::Error>(self, code: &str) -> Result<Country, E> {
                Country::parse("country", code).map_err(E::custom)
            }
        }
        d.deserialize_str(Code)
    }
}

/// An ISO 3166-2 subdivision code such as `US-CA` or `DE-BY`.
///
/// The form is checked (country prefix, 1-3 upper-case letters or digits); the subdivision
/// itself is not looked up in the ISO list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Region(String);

impl Region {
    /// Parses a subdivision code that must belong to `country`.
    pub fn parse(field: &str, code: &str, country: Country) -> Result<Self, ValidationError> {
        let rule = || {
            format!(
                "{code:?} is not an ISO 3166-2 code of {country}: expected \"{country}-\" followed by 1-3 upper-case letters or digits"
            )
        };
        let Some((prefix, subdivision)) = code.split_once('-') else {
            return Err(ValidationError::new(field, rule()));
        };
        let well_formed = prefix == country.as_str()
            && (1..=3).contains(&subdivision.len())
            && subdivision
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if well_formed {
            Ok(Self(code.to_owned()))
        } else {
            Err(ValidationError::new(field, rule()))
        }
    }

    /// The full code, e.g. `US-CA`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this subdivision belongs to `country`.
    pub fn belongs_to(&self, country: Country) -> bool {
        self.0.starts_with(country.as_str()) && self.0.as_bytes().get(2) == Some(&b'-')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(ISO_3166_1_ALPHA_2.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn accepts_assigned_codes_only() {
        assert_eq!(
            Country::parse("c", "DE").map(|c| c.to_string()).ok(),
            Some("DE".into())
        );
        for bad in ["de", "XX", "UK", "D", "DEU", ""] {
            let err = Country::parse("country", bad).unwrap_err();
            assert_eq!(err.field, "country");
        }
    }

    #[test]
    fn bitmap_holds_exactly_the_table() {
        for first in b'A'..=b'Z' {
            for second in b'A'..=b'Z' {
                let code = String::from_utf8(vec![first, second]).unwrap();
                let listed = ISO_3166_1_ALPHA_2.contains(&code.as_str());
                assert_eq!(Country::parse("c", &code).is_ok(), listed, "{code}");
            }
        }
    }

    #[test]
    fn region_must_match_country() {
        let us = Country::parse("c", "US").unwrap();
        assert!(Region::parse("region", "US-CA", us).is_ok());
        assert!(Region::parse("region", "DE-BY", us).is_err());
        assert!(Region::parse("region", "US-", us).is_err());
        assert!(Region::parse("region", "US-CALI", us).is_err());
        assert!(Region::parse("region", "US-ca", us).is_err());
    }
}
