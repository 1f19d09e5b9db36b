//! Signed tracking tokens: what the impression, viewable and click URLs carry.
//!
//! Layout, before base64url (no padding):
//! `1 | kid_len | kid | decision_id (16) | issued_at (8, seconds, BE) | len | campaign |
//! len | creative | len | slot | mac (16)`, where `mac` is HMAC-SHA256 over everything before
//! it, truncated to 128 bits (as RFC 4868 does for IPsec). No URL, address or viewer id is
//! inside: the landing URL is looked up in the inventory when the click arrives.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use ulid::Ulid;

use crate::inventory::{CampaignId, CreativeId, SlotName};

const FORMAT_VERSION: u8 = 1;
const MAC_BYTES: usize = 16;
/// Longest token accepted, in characters; anything longer is rejected before decoding.
pub const MAX_TOKEN_CHARS: usize = 1_024;
const MAX_KEY_ID_BYTES: usize = 16;

/// What a token says about one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPayload {
    /// The decision.
    pub decision_id: Ulid,
    /// When the decision was made, in Unix seconds.
    pub issued_at: i64,
    /// The campaign's id.
    pub campaign: CampaignId,
    /// The creative's id.
    pub creative: CreativeId,
    /// The slot's NFC name.
    pub slot: SlotName,
}

impl TokenPayload {
    /// When the decision was made, in Unix milliseconds. The decision id is a ULID made from
    /// the decision's time, so it carries the milliseconds the signed seconds lack; an id not
    /// made that way (outside its second) falls back to the second.
    pub fn issued_at_ms(&self) -> i64 {
        let second = self.issued_at.saturating_mul(1_000);
        let from_id = i64::try_from(self.decision_id.timestamp_ms()).unwrap_or(i64::MAX);
        if (second..second + 1_000).contains(&from_id) {
            from_id
        } else {
            second
        }
    }
}

/// Why a token was refused; also the `reason` label of `regie_tracking_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not base64url, truncated, or not of this format.
    #[error("malformed")]
    Malformed,
    /// Signed by a key this instance does not know.
    #[error("unknown_key")]
    UnknownKey,
    /// The signature does not match: forged or tampered.
    #[error("bad_signature")]
    BadSignature,
    /// Older than the endpoint accepts.
    #[error("expired")]
    Expired,
    /// Names a campaign or creative no longer in the inventory.
    #[error("unknown_campaign")]
    UnknownCampaign,
}

impl TokenError {
    /// The metric label of this reason.
    pub fn label(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::UnknownCampaign => "unknown_campaign",
        }
    }

    /// Every reason, for pre-registering metric series.
    pub const ALL: [TokenError; 5] = [
        TokenError::Malformed,
        TokenError::UnknownKey,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::UnknownCampaign,
    ];
}

/// The signing keys could not be read from the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid tracking keys: {0}")]
pub struct KeysError(String);

struct Key {
    id: String,
    /// The HMAC keyed once: cloning it skips hashing the key's inner and outer pads again
    /// for every token.
    mac: Hmac<Sha256>,
}

impl Key {
    fn new(id: &str, secret: &[u8]) -> Self {
        Self {
            id: id.to_owned(),
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length"),
        }
    }
}

/// Signs with the first key and verifies with any.
pub struct Signer {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Signer")
            .field("key_ids", &ids)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Parses `id:secret,id:secret`; the first key signs.
    pub fn from_setting(setting: &SecretString) -> Result<Self, KeysError> {
        let mut keys = Vec::new();
        for entry in setting
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (id, secret) = entry
                .split_once(':')
                .ok_or_else(|| KeysError("each key must be written id:secret".into()))?;
            if id.is_empty()
                || id.len() > MAX_KEY_ID_BYTES
                || !id.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(KeysError(format!(
                    "key id {id:?} must be 1 to 16 ASCII letters or digits"
                )));
            }
            if secret.len() < 16 {
                return Err(KeysError(format!(
                    "the secret of key {id:?} must be at least 16 bytes"
                )));
            }
            keys.push(Key::new(id, secret.as_bytes()));
        }
        if keys.is_empty() {
            return Err(KeysError("no key given".into()));
        }
        Ok(Self { keys })
    }

    /// One random key, for a single instance whose tokens need not survive a restart.
    pub fn random() -> Self {
        let secret: [u8; 32] = rand::random();
        Self {
            keys: vec![Key::new("r", &secret)],
        }
    }

    /// Signs a payload into a URL-safe token.
    pub fn sign(&self, payload: &TokenPayload) -> String {
        self.sign_fields(
            payload.decision_id,
            payload.issued_at,
            [
                payload.campaign.as_str(),
                payload.creative.as_str(),
                payload.slot.as_str(),
            ],
        )
    }

    /// [`Self::sign`] from borrowed fields (campaign, creative and slot), as the serve path
    /// has them, without building a [`TokenPayload`].
    pub fn sign_fields(&self, decision_id: Ulid, issued_at: i64, fields: [&str; 3]) -> String {
        let key = &self.keys[0];
        let mut bytes = Vec::with_capacity(64 + fields.iter().map(|f| f.len()).sum::<usize>());
        bytes.push(FORMAT_VERSION);
        push_field(&mut bytes, key.id.as_bytes());
        bytes.extend_from_slice(&decision_id.to_bytes());
        bytes.extend_from_slice(&issued_at.to_be_bytes());
        for field in fields {
            push_field(&mut bytes, field.as_bytes());
        }
        let mut mac = key.mac.clone();
        mac.update(&bytes);
        let tag = mac.finalize().into_bytes();
        bytes.extend_from_slice(&tag[..MAC_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks a token's signature and decodes it. Expiry is the caller's (it depends on the
    /// kind of event and on the clock).
    pub fn verify(&self, token: &str) -> Result<TokenPayload, TokenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        if bytes.len() < 1 + MAC_BYTES {
            return Err(TokenError::Malformed);
        }
        let (signed, tag) = bytes.split_at(bytes.len() - MAC_BYTES);
        let mut reader = Reader(signed);
        if reader.byte()? != FORMAT_VERSION {
            return Err(TokenError::Malformed);
        }
        let key_id = reader.field()?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id.as_bytes() == key_id)
            .ok_or(TokenError::UnknownKey)?;
        let mut verifier = key.mac.clone();
        verifier.update(signed);
        // Constant-time comparison of the truncated tag.
        verifier
            .verify_truncated_left(tag)
            .map_err(|_| TokenError::BadSignature)?;
        let decision_id = Ulid::from_bytes(reader.array::<16>()?);
        let issued_at = i64::from_be_bytes(reader.array::<8>()?);
        // Validated like the inventory's names: past this point, nothing parses them again.
        let campaign = CampaignId::parse(reader.text()?).map_err(|_| TokenError::Malformed)?;
        let creative = CreativeId::parse(reader.text()?).map_err(|_| TokenError::Malformed)?;
        let slot = SlotName::parse(reader.text()?).map_err(|_| TokenError::Malformed)?;
        if !reader.0.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(TokenPayload {
            decision_id,
            issued_at,
            campaign,
            creative,
            slot,
        })
    }
}

fn push_field(bytes: &mut Vec<u8>, field: &[u8]) {
    // Every field is bounded well below 256 bytes by validation (ids 64, slot names 128).
    let len = u8::try_from(field.len()).expect("token fields are shorter than 256 bytes");
    bytes.push(len);
    bytes.extend_from_slice(field);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TokenError> {
        if self.0.len() < n {
            return Err(TokenError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8, TokenError> {
        Ok(self.take(1)?[0])
    }
    fn field(&mut self) -> Result<&'a [u8], TokenError> {
        let len = self.byte()? as usize;
        self.take(len)
    }
    fn text(&mut self) -> Result<&'a str, TokenError> {
        std::str::from_utf8(self.field()?).map_err(|_| TokenError::Malformed)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], TokenError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> TokenPayload {
        TokenPayload {
            decision_id: Ulid::new(),
            issued_at: 1_764_500_000,
            campaign: CampaignId::parse("3vision-visitez").unwrap(),
            creative: CreativeId::parse("visitez-728").unwrap(),
            slot: SlotName::parse("Publicité 2").unwrap(),
        }
    }

    fn signer(keys: &str) -> Signer {
        Signer::from_setting(&SecretString::from(keys.to_owned())).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_to_its_payload() {
        let s = signer("k1:0123456789abcdef0123");
        let p = payload();
        assert_eq!(s.verify(&s.sign(&p)).unwrap(), p);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let s = signer("k1:0123456789abcdef0123");
        let token = s.sign(&payload());
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x01;
            let result = s.verify(&URL_SAFE_NO_PAD.encode(&tampered));
            assert!(result.is_err(), "byte {i} flipped still verified");
        }
    }

    #[test]
    fn keys_rotate_the_first_signs_and_all_verify() {
        let old = signer("old:0123456789abcdef0123");
        let rotated = signer("new:fedcba9876543210fedc,old:0123456789abcdef0123");
        let p = payload();
        assert_eq!(rotated.verify(&old.sign(&p)).unwrap(), p);
        assert_eq!(old.verify(&rotated.sign(&p)), Err(TokenError::UnknownKey));
    }

    #[test]
    fn a_token_signed_with_another_secret_under_the_same_id_is_forged() {
        let real = signer("k1:0123456789abcdef0123");
        let forger = signer("k1:not-the-real-secret!!");
        assert_eq!(
            real.verify(&forger.sign(&payload())),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed_and_never_panics() {
        let s = signer("k1:0123456789abcdef0123");
        for junk in ["", "!!!", "AAAA", &"A".repeat(5000), "AQ", "AQEx"] {
            assert!(s.verify(junk).is_err());
        }
    }

    #[test]
    fn the_issue_time_in_milliseconds_comes_from_the_decision_id_within_its_second() {
        let at = chrono::DateTime::from_timestamp_millis(1_764_500_000_250).unwrap();
        let mut p = payload();
        p.decision_id = Ulid::from_datetime(at.into());
        p.issued_at = 1_764_500_000;
        assert_eq!(p.issued_at_ms(), 1_764_500_000_250);
        p.issued_at = 1_764_400_000;
        assert_eq!(
            p.issued_at_ms(),
            1_764_400_000_000,
            "an id from another second is not believed"
        );
    }

    #[test]
    fn the_token_carries_no_url() {
        let s = signer("k1:0123456789abcdef0123");
        let bytes = URL_SAFE_NO_PAD.decode(s.sign(&payload())).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("http"));
    }

    #[test]
    fn bad_key_settings_are_refused() {
        for bad in ["", "nocolon", "k1:short", "bad id:0123456789abcdef"] {
            assert!(
                Signer::from_setting(&SecretString::from(bad.to_owned())).is_err(),
                "{bad}"
            );
        }
    }
}
