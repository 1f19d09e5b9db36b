//! Countries: ISO 3166-1 alpha-2 codes, in the inventory and in the header a CDN or proxy sets.
//!
//! regie bundles no GeoIP database: the country comes from a header (`CF-IPCountry` by
//! default) that the CDN or the proxy in front of regie sets from the client's address.

use std::fmt;

/// A country, by its ISO 3166-1 alpha-2 code in capitals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

/// The officially assigned ISO 3166-1 alpha-2 codes, and `XK`, which CDNs and GeoIP databases
/// use for Kosovo. Sorted, for a binary search.
const ASSIGNED: [&str; 250] = [
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
    "VN", "VU", "WF", "WS", "XK", "YE", "YT", "ZA", "ZM", "ZW",
];

impl Country {
    /// The country of a code in any case (`fr`, `FR`); `None` for anything that is not an
    /// assigned code, including the user-assigned ones CDNs send for "unknown" (`XX`) or
    /// "Tor" (`T1`).
    pub fn parse(code: &[u8]) -> Option<Self> {
        let [a, b] = code else { return None };
        let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
        let text = std::str::from_utf8(&code).ok()?;
        ASSIGNED.binary_search(&text).ok().map(|_| Self(code))
    }

    /// The country a request's header names, surrounding spaces ignored; `None` (unknown)
    /// when the header is missing or holds anything else.
    pub fn from_header(value: Option<&[u8]>) -> Option<Self> {
        Self::parse(value?.trim_ascii())
    }

    /// The code, in capitals.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("codes are ASCII")
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Country {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_holds_every_assigned_code_once() {
        assert!(ASSIGNED.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ASSIGNED.len(), 249 + 1, "249 assigned codes and XK");
    }

    #[test]
    fn a_header_of_two_letters_in_any_case_is_a_country() {
        for raw in ["FR", "fr", "Fr", " BE "] {
            assert!(
                Country::from_header(Some(raw.as_bytes())).is_some(),
                "{raw}"
            );
        }
        assert_eq!(Country::from_header(Some(b"be")).unwrap().as_str(), "BE");
    }

    #[test]
    fn anything_else_in_the_header_is_an_unknown_country() {
        for raw in [
            "", "F", "FRA", "XX", "T1", "ZZ", "A1", "EU", "UK", "F\u{0}", "é", "FR,BE",
        ] {
            assert_eq!(Country::from_header(Some(raw.as_bytes())), None, "{raw:?}");
        }
        assert_eq!(Country::from_header(None), None);
        assert_eq!(Country::from_header(Some(&[0xff, 0xfe])), None);
    }
}
