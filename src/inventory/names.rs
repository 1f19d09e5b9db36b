//! Validated names: slot names and the identifiers of campaigns, advertisers and creatives.
//!
//! Each is parsed once, at the edge (inventory load or request), and trusted afterwards.

use std::borrow::{Borrow, Cow};

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// A slot name as the publisher's editors write it ("Publicité 2", "banner").
///
/// Stored in Unicode NFC so that "Publicité 2" typed with a combining accent and with a
/// precomposed "é" are the same slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SlotName(String);

/// The longest slot name accepted, in bytes of its NFC form.
pub const MAX_SLOT_NAME_BYTES: usize = 128;

impl SlotName {
    /// Normalises `raw` to NFC and checks the contract's rules: 1 to 128 bytes, no control
    /// characters.
    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::normalize(raw).map(|name| Self(name.into_owned()))
    }

    /// [`Self::parse`] without keeping the name: its NFC text, borrowed when `raw` is NFC
    /// already, as names in requests almost always are. A lookup by name (see
    /// `Borrow<str>`) then copies nothing.
    pub fn normalize(raw: &str) -> Result<Cow<'_, str>, String> {
        // The quick check spares the recomposition.
        let normalized = match unicode_normalization::is_nfc_quick(raw.chars()) {
            unicode_normalization::IsNormalized::Yes => Cow::Borrowed(raw),
            _ => Cow::Owned(raw.nfc().collect()),
        };
        if normalized.is_empty() {
            return Err("must not be empty".into());
        }
        if normalized.len() > MAX_SLOT_NAME_BYTES {
            return Err(format!("must be at most {MAX_SLOT_NAME_BYTES} bytes"));
        }
        if normalized.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        // What a lossy decoding of invalid UTF-8 (e.g. `%FF` in a URL) leaves behind.
        if normalized.contains(char::REPLACEMENT_CHARACTER) {
            return Err("must be valid UTF-8".into());
        }
        Ok(normalized)
    }

    /// The NFC text of the name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by slot name are looked up by its text: a `SlotName` hashes and compares as its
/// `String` does.
impl Borrow<str> for SlotName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SlotName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

/// The way back to text of newtypes over a `String` (`SlotName`, the identifiers, the URLs):
/// `From<T> for String` (for serde's `into = "String"`) and `Display`.
macro_rules! into_text {
    ($($name:ident),*) => {
        $(
            impl From<$name> for String {
                fn from(value: $name) -> Self {
                    value.0
                }
            }

            impl std::fmt::Display for $name {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str(&self.0)
                }
            }
        )*
    };
}
pub(super) use into_text;

into_text!(SlotName);

/// The longest identifier accepted, in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// Checks the rules every identifier follows.
fn check_id(raw: &str) -> Result<(), String> {
    if raw.is_empty() || raw.len() > MAX_ID_BYTES {
        return Err(format!("must be 1 to {MAX_ID_BYTES} characters"));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("may contain only ASCII letters, digits, '-', '_' and '.'".into());
    }
    Ok(())
}

/// Declares an identifier type. Each kind of identifier is its own type, so that a creative's
/// id cannot be passed where a campaign's is expected; all follow the same rules.
macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// 1 to 64 ASCII letters, digits, `-`, `_` or `.`: the charset is closed because
        /// identifiers become Redis key parts, metric label values and URL path segments;
        /// nothing needs escaping anywhere.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks the identifier rules.
            pub fn parse(raw: &str) -> Result<Self, String> {
                check_id(raw)?;
                Ok(Self(raw.to_owned()))
            }

            /// The identifier's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                check_id(&value)?;
                Ok(Self(value))
            }
        }

        /// Maps keyed by the identifier are looked up by its text: it hashes and compares as
        /// its `String` does.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        into_text!($name);
    };
}

identifier!(
    /// A campaign's identifier.
    CampaignId
);
identifier!(
    /// An advertiser's identifier.
    AdvertiserId
);
identifier!(
    /// A creative's identifier, unique within its campaign.
    CreativeId
);

/// A rotation weight: an integer from 1 to 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Weight(u32);

/// The largest weight the contract allows.
pub const MAX_WEIGHT: u32 = 1_000_000;

impl Weight {
    /// Checks the range 1 to 1,000,000.
    pub fn parse(raw: u64) -> Result<Self, String> {
        if (1..=u64::from(MAX_WEIGHT)).contains(&raw) {
            Ok(Self(raw as u32))
        } else {
            Err(format!("must be between 1 and {MAX_WEIGHT}"))
        }
    }

    /// The weight as a number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Weight {
    fn default() -> Self {
        Self(1)
    }
}

impl TryFrom<u64> for Weight {
    type Error = String;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Weight> for u64 {
    fn from(value: Weight) -> Self {
        u64::from(value.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_name_typed_with_a_combining_accent_is_the_same_slot() {
        let precomposed = SlotName::parse("Publicit\u{e9} 2").unwrap();
        let combining = SlotName::parse("Publicite\u{301} 2").unwrap();
        assert_eq!(precomposed, combining);
        assert_eq!(combining.as_str(), "Publicité 2");
    }

    #[test]
    fn slot_names_are_limited_to_128_bytes_without_control_characters() {
        assert!(SlotName::parse("").is_err());
        assert!(SlotName::parse(&"é".repeat(64)).is_ok());
        assert!(SlotName::parse(&"é".repeat(65)).is_err());
        assert!(SlotName::parse("ban\nner").is_err());
        assert!(SlotName::parse("ban\u{7f}ner").is_err());
        assert!(SlotName::parse("ban\u{fffd}ner").is_err());
    }

    #[test]
    fn identifiers_use_a_closed_charset() {
        assert!(CampaignId::parse("3vision-visitez").is_ok());
        assert!(CampaignId::parse("a b").is_err());
        assert!(AdvertiserId::parse("").is_err());
        assert!(CreativeId::parse(&"a".repeat(65)).is_err());
        assert!(CampaignId::parse("x:y").is_err());
    }

    #[test]
    fn weights_range_from_one_to_a_million() {
        assert!(Weight::parse(0).is_err());
        assert_eq!(Weight::parse(1).unwrap().get(), 1);
        assert_eq!(Weight::parse(1_000_000).unwrap().get(), 1_000_000);
        assert!(Weight::parse(1_000_001).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_is_a_slot_name_within_the_rules_or_a_reason(raw in any::<String>()) {
                match SlotName::parse(&raw) {
                    Ok(name) => {
                        prop_assert!(!name.as_str().is_empty());
                        prop_assert!(name.as_str().len() <= MAX_SLOT_NAME_BYTES);
                        prop_assert!(!name.as_str().chars().any(char::is_control));
                        prop_assert_eq!(SlotName::parse(name.as_str()), Ok(name.clone()));
                    }
                    Err(reason) => prop_assert!(!reason.is_empty()),
                }
            }

            #[test]
            fn any_text_is_an_identifier_of_the_closed_charset_or_a_reason(raw in any::<String>()) {
                if let Ok(id) = CampaignId::parse(&raw) {
                    prop_assert!((1..=MAX_ID_BYTES).contains(&id.as_str().len()));
                    prop_assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
                }
            }

            #[test]
            fn any_number_is_a_weight_in_range_or_a_reason(raw in any::<u64>()) {
                if let Ok(weight) = Weight::parse(raw) {
                    prop_assert!((1..=MAX_WEIGHT).contains(&weight.get()));
                }
            }
        }
    }
}
