//! Signed tracking tokens: what the impression, viewable and click URLs carry.
//!
//! Layout, before base64url (no padding):
//! `1 | kid_len | kid | decision_id (16) | issued_at (8, seconds, BE) | len | campaign |
//! len | creative | len | slot | mac (16)`, where `mac` is HMAC-SHA256 over everything before
//! it, truncated to 128 bits (as RFC 4868 does for IPsec). No URL, address or viewer id is
//! inside: the landing URL is looked up in the inventory when the click arrives.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::cell::Cell;
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use ulid::Ulid;

use crate::inventory::{CampaignId, CreativeId, SlotName};

const FORMAT_VERSION: u8 = 1;
/// The key id of the signing key kept in the store.
const SHARED_KEY_ID: &str = "s";
const MAC_BYTES: usize = 16;
/// Longest token accepted, in characters; anything longer is rejected before decoding.
pub const MAX_TOKEN_CHARS: usize = 1_024;
const MAX_KEY_ID_BYTES: usize = 16;
/// Shortest signing secret accepted: HMAC-SHA256's own output size, so that the secret is
/// never the weaker part of the signature.
pub const MIN_SECRET_BYTES: usize = 32;

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
        issued_at_ms(self.decision_id, self.issued_at)
    }
}

/// [`TokenPayload::issued_at_ms`], of a decision id and the signed seconds.
fn issued_at_ms(decision_id: Ulid, issued_at: i64) -> i64 {
    let second = issued_at.saturating_mul(1_000);
    let from_id = i64::try_from(decision_id.timestamp_ms()).unwrap_or(i64::MAX);
    if (second..second + 1_000).contains(&from_id) {
        from_id
    } else {
        second
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

impl KeysError {
    /// What is wrong, without naming the setting.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

/// The label of the key derived from a signing secret for [`Signer::derived_mac`]: a key
/// used for another purpose than signing tokens must not be the signing key itself.
const DERIVED_KEY_LABEL: &[u8] = b"regie derived key: viewer ids";

/// The label of the key derived from a signing secret for [`Signer::seal`]: what a client
/// keeps for regie is signed with a key of its own, so that no sealed value is ever a valid
/// token or the reverse.
const SEALING_KEY_LABEL: &[u8] = b"regie derived key: sealed client state";

/// The format byte of a sealed value, distinct from [`FORMAT_VERSION`].
const SEALED_FORMAT: u8 = 0x53;

#[derive(Clone)]
struct Key {
    id: String,
    /// The HMAC keyed once: cloning it skips hashing the key's inner and outer pads again
    /// for every token.
    mac: Hmac<Sha256>,
    /// An HMAC keyed with a key derived from the secret, keyed once as `mac` is.
    derived: Hmac<Sha256>,
    /// The same, for [`Signer::seal`].
    sealing: Hmac<Sha256>,
}

impl Key {
    fn new(id: &str, secret: &[u8]) -> Self {
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        let derive = |label: &[u8]| {
            let mut derivation = mac.clone();
            derivation.update(label);
            Hmac::<Sha256>::new_from_slice(&derivation.finalize().into_bytes())
                .expect("HMAC takes keys of any length")
        };
        Self {
            id: id.to_owned(),
            derived: derive(DERIVED_KEY_LABEL),
            sealing: derive(SEALING_KEY_LABEL),
            mac,
        }
    }
}

/// Signs with the first key and verifies with any.
///
/// The keys can be replaced while serving ([`Signer::adopt_shared`]): instances that share a
/// store and have no configured keys sign with a key kept in the store, which may only be
/// reachable some time after start.
pub struct Signer {
    keys: ArcSwap<Vec<Key>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.keys.load();
        let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
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
            if secret.len() < MIN_SECRET_BYTES {
                return Err(KeysError(format!(
                    "the secret of key {id:?} must be at least {MIN_SECRET_BYTES} bytes (it is {})",
                    secret.len()
                )));
            }
            keys.push(Key::new(id, secret.as_bytes()));
        }
        if keys.is_empty() {
            return Err(KeysError("no key given".into()));
        }
        Ok(Self {
            keys: ArcSwap::from_pointee(keys),
        })
    }

    /// One random key, for a single instance whose tokens need not survive a restart.
    pub fn random() -> Self {
        let secret: [u8; 32] = rand::random();
        Self {
            keys: ArcSwap::from_pointee(vec![Key::new("r", &secret)]),
        }
    }

    /// A new random secret, as text, for [`Self::adopt_shared`] when the store has none yet.
    pub fn random_secret() -> String {
        let secret: [u8; 32] = rand::random();
        URL_SAFE_NO_PAD.encode(secret)
    }

    /// Signs from now on with the key every instance of the store shares, under the key id
    /// `s`; tokens signed with the previous keys still verify here.
    pub fn adopt_shared(&self, secret: &str) {
        let mut keys = vec![Key::new(SHARED_KEY_ID, secret.as_bytes())];
        keys.extend(
            self.keys
                .load()
                .iter()
                .filter(|k| k.id != SHARED_KEY_ID)
                .cloned(),
        );
        self.keys.store(Arc::new(keys));
    }

    /// An HMAC-SHA256 keyed with a key derived from the current signing secret (an HMAC of
    /// a fixed label under it): every instance that signs with the same key computes the same
    /// hashes, and knowing them reveals nothing of the signing secret. It changes when the
    /// signing key does ([`Self::adopt_shared`], a rotation of `REGIE_TRACKING_KEYS`).
    pub fn derived_mac(&self) -> Hmac<Sha256> {
        self.keys.load()[0].derived.clone()
    }

    /// `payload` signed for a client to keep and send back (base64url): `0x53 | kid_len | kid
    /// | payload | mac (16)`, the MAC an HMAC-SHA256 under a key derived from the signing
    /// secret. The client can read it but not change it.
    pub fn seal(&self, payload: &[u8]) -> String {
        let keys = self.keys.load();
        let key = &keys[0];
        let mut bytes = Vec::with_capacity(2 + key.id.len() + payload.len() + MAC_BYTES);
        bytes.push(SEALED_FORMAT);
        push_field(&mut bytes, key.id.as_bytes());
        bytes.extend_from_slice(payload);
        let mut mac = key.sealing.clone();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes()[..MAC_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The payload of a value [`Self::seal`] made with any of the keys; `None` when it is not
    /// one (malformed, altered, or sealed with a key this instance does not have).
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        let mut bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < 2 + MAC_BYTES || bytes[0] != SEALED_FORMAT {
            return None;
        }
        let (signed, tag) = bytes.split_at(bytes.len() - MAC_BYTES);
        let mut reader = Reader(&signed[1..]);
        let key_id = reader.field().ok()?;
        let keys = self.keys.load();
        let key = keys.iter().find(|k| k.id.as_bytes() == key_id)?;
        let mut verifier = key.sealing.clone();
        verifier.update(signed);
        verifier.verify_truncated_left(tag).ok()?;
        let start = signed.len() - reader.0.len();
        bytes.truncate(signed.len());
        bytes.drain(..start);
        Some(bytes)
    }

    /// Whether tokens are signed with the store's shared key.
    pub fn signs_with_shared_key(&self) -> bool {
        self.keys.load()[0].id == SHARED_KEY_ID
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
        let mut bytes = Vec::new();
        self.write_signed(&mut bytes, decision_id, issued_at, fields);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// [`Self::sign_fields`] before the base64 encoding, which the decision's writer does
    /// straight into its answer (`URL_SAFE_NO_PAD`): hands `use_raw` the token's bytes, in a
    /// buffer of the thread's that every decision reuses.
    pub fn with_signed<R>(
        &self,
        decision_id: Ulid,
        issued_at: i64,
        fields: [&str; 3],
        use_raw: impl FnOnce(&[u8]) -> R,
    ) -> R {
        thread_local! {
            static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
        }
        // Taken out and put back rather than borrowed: a nested call finds it empty and only
        // allocates.
        let mut bytes = SCRATCH.take();
        bytes.clear();
        self.write_signed(&mut bytes, decision_id, issued_at, fields);
        let result = use_raw(&bytes);
        SCRATCH.set(bytes);
        result
    }

    /// Writes the token's bytes, the MAC last.
    fn write_signed(
        &self,
        bytes: &mut Vec<u8>,
        decision_id: Ulid,
        issued_at: i64,
        fields: [&str; 3],
    ) {
        let keys = self.keys.load();
        let key = &keys[0];
        bytes.reserve(64 + fields.iter().map(|f| f.len()).sum::<usize>());
        bytes.push(FORMAT_VERSION);
        push_field(bytes, key.id.as_bytes());
        bytes.extend_from_slice(&decision_id.to_bytes());
        bytes.extend_from_slice(&issued_at.to_be_bytes());
        for field in fields {
            push_field(bytes, field.as_bytes());
        }
        let mut mac = key.mac.clone();
        mac.update(bytes);
        let tag = mac.finalize().into_bytes();
        bytes.extend_from_slice(&tag[..MAC_BYTES]);
    }

    /// Checks a token's signature and decodes it, its names validated as the inventory's are.
    /// Expiry is the caller's (it depends on the kind of event and on the clock).
    pub fn verify(&self, token: &str) -> Result<TokenPayload, TokenError> {
        let signed = self.verify_signature(token)?;
        let malformed = |_| TokenError::Malformed;
        Ok(TokenPayload {
            decision_id: signed.decision_id,
            issued_at: signed.issued_at,
            campaign: CampaignId::parse(signed.campaign()).map_err(malformed)?,
            creative: CreativeId::parse(signed.creative()).map_err(malformed)?,
            slot: SlotName::parse(signed.slot()).map_err(malformed)?,
        })
    }

    /// Checks a token's signature and reads its fields, without validating its names: for a
    /// caller that looks them up in the inventory, which only names that are valid match.
    pub fn verify_signature(&self, token: &str) -> Result<SignedToken, TokenError> {
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
        let keys = self.keys.load();
        let key = keys
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
        let (campaign, creative, slot) = (reader.text()?, reader.text()?, reader.text()?);
        if !reader.0.is_empty() {
            return Err(TokenError::Malformed);
        }
        let mut names = String::with_capacity(campaign.len() + creative.len() + slot.len());
        for name in [campaign, creative, slot] {
            names.push_str(name);
        }
        Ok(SignedToken {
            decision_id,
            issued_at,
            creative_at: campaign.len(),
            slot_at: campaign.len() + creative.len(),
            names,
        })
    }
}

/// A token whose signature holds: its fields as signed, names not yet validated.
#[derive(Debug)]
pub struct SignedToken {
    /// The decision.
    pub decision_id: Ulid,
    /// When the decision was made, in Unix seconds.
    pub issued_at: i64,
    /// The campaign's id, the creative's and the slot's name, one after the other.
    names: String,
    /// Where the creative's id starts in `names`.
    creative_at: usize,
    /// Where the slot's name starts in `names`.
    slot_at: usize,
}

impl SignedToken {
    /// When the decision was made, in Unix milliseconds (see [`TokenPayload::issued_at_ms`]).
    pub fn issued_at_ms(&self) -> i64 {
        issued_at_ms(self.decision_id, self.issued_at)
    }

    /// The campaign's id, as signed.
    pub fn campaign(&self) -> &str {
        &self.names[..self.creative_at]
    }

    /// The creative's id, as signed.
    pub fn creative(&self) -> &str {
        &self.names[self.creative_at..self.slot_at]
    }

    /// The slot's name, as signed.
    pub fn slot(&self) -> &str {
        &self.names[self.slot_at..]
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
    fn the_bytes_handed_to_the_writer_are_the_token_once_encoded_even_when_signing_nests() {
        let s = signer("k1:0123456789abcdef0123456789abcdef");
        let p = payload();
        let fields = [p.campaign.as_str(), p.creative.as_str(), p.slot.as_str()];
        let (outer, inner) = s.with_signed(p.decision_id, p.issued_at, fields, |outer| {
            let inner = s.with_signed(p.decision_id, p.issued_at + 1, fields, |inner| {
                URL_SAFE_NO_PAD.encode(inner)
            });
            (URL_SAFE_NO_PAD.encode(outer), inner)
        });
        assert_eq!(outer, s.sign(&p));
        assert_eq!(s.verify(&outer).unwrap(), p);
        assert_eq!(s.verify(&inner).unwrap().issued_at, p.issued_at + 1);
        // The thread's buffer, reused, holds nothing of the token before.
        let again = s.with_signed(p.decision_id, p.issued_at, fields, |raw| {
            URL_SAFE_NO_PAD.encode(raw)
        });
        assert_eq!(again, outer);
    }

    #[test]
    fn a_sealed_value_opens_with_any_key_of_the_signer_and_only_unaltered() {
        let old = signer("k1:0123456789abcdef0123456789abcdef");
        let rotated =
            signer("k2:fedcba9876543210fedcba9876543210,k1:0123456789abcdef0123456789abcdef");
        let sealed = old.seal(b"what the client keeps");
        assert_eq!(
            old.open(&sealed).as_deref(),
            Some(&b"what the client keeps"[..])
        );
        assert_eq!(
            rotated.open(&sealed).as_deref(),
            Some(&b"what the client keeps"[..])
        );
        assert_eq!(rotated.open(&rotated.seal(b"")).as_deref(), Some(&b""[..]));
        assert_eq!(
            signer("k1:another-secret-of-thirty-two-bytes!!").open(&sealed),
            None
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 0x01;
            assert_eq!(old.open(&URL_SAFE_NO_PAD.encode(&bytes)), None, "byte {i}");
            bytes[i] ^= 0x01;
        }
        assert_eq!(old.open(""), None);
        assert_eq!(old.open("not base64!"), None);
    }

    #[test]
    fn a_sealed_value_is_not_a_token_nor_a_token_a_sealed_value() {
        let s = signer("k1:0123456789abcdef0123456789abcdef");
        let token = s.sign(&payload());
        assert_eq!(s.open(&token), None);
        assert!(s
            .verify(&s.seal(b"0123456789abcdef0123456789abcdef0123456789"))
            .is_err());
    }

    #[test]
    fn a_signed_token_verifies_to_its_payload() {
        let s = signer("k1:0123456789abcdef0123456789abcdef");
        let p = payload();
        assert_eq!(s.verify(&s.sign(&p)).unwrap(), p);
    }

    #[test]
    fn a_signed_token_reads_back_its_fields_as_signed() {
        let s = signer("k1:0123456789abcdef0123456789abcdef");
        let p = payload();
        let signed = s.verify_signature(&s.sign(&p)).unwrap();
        assert_eq!(signed.decision_id, p.decision_id);
        assert_eq!(signed.issued_at, p.issued_at);
        assert_eq!(signed.issued_at_ms(), p.issued_at_ms());
        assert_eq!(signed.campaign(), p.campaign.as_str());
        assert_eq!(signed.creative(), p.creative.as_str());
        assert_eq!(signed.slot(), p.slot.as_str());
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let s = signer("k1:0123456789abcdef0123456789abcdef");
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
        let old = signer("old:0123456789abcdef0123456789abcdef");
        let rotated =
            signer("new:fedcba9876543210fedcba9876543210,old:0123456789abcdef0123456789abcdef");
        let p = payload();
        assert_eq!(rotated.verify(&old.sign(&p)).unwrap(), p);
        assert_eq!(old.verify(&rotated.sign(&p)), Err(TokenError::UnknownKey));
    }

    #[test]
    fn a_token_signed_with_another_secret_under_the_same_id_is_forged() {
        let real = signer("k1:0123456789abcdef0123456789abcdef");
        let forger = signer("k1:not-the-real-secret-but-32-bytes!");
        assert_eq!(
            real.verify(&forger.sign(&payload())),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed_and_never_panics() {
        let s = signer("k1:0123456789abcdef0123456789abcdef");
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
        let s = signer("k1:0123456789abcdef0123456789abcdef");
        let bytes = URL_SAFE_NO_PAD.decode(s.sign(&payload())).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("http"));
    }

    #[test]
    fn bad_key_settings_are_refused() {
        for bad in [
            "",
            "nocolon",
            "k1:short",
            "k1:31-bytes-is-one-byte-too-short!",
            "bad id:0123456789abcdef0123456789abcdef",
        ] {
            assert!(
                Signer::from_setting(&SecretString::from(bad.to_owned())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn instances_that_adopt_the_same_shared_secret_verify_each_others_tokens() {
        let (a, b) = (Signer::random(), Signer::random());
        let before = a.sign(&payload());
        let secret = Signer::random_secret();

        a.adopt_shared(&secret);
        b.adopt_shared(&secret);

        let p = payload();
        assert_eq!(b.verify(&a.sign(&p)), Ok(p));
        assert!(a.signs_with_shared_key());
        assert!(
            a.verify(&before).is_ok(),
            "tokens signed before still verify here"
        );
        assert!(
            b.verify(&before).is_err(),
            "another process never knew its random key"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Payloads as the serve path signs them: ids up to 64 bytes, slot names up to 128.
        fn any_payload() -> impl Strategy<Value = TokenPayload> {
            (
                any::<u128>(),
                any::<i64>(),
                "[A-Za-z0-9._-]{1,64}",
                "[A-Za-z0-9._-]{1,64}",
                "\\PC{1,32}",
            )
                .prop_filter_map(
                    "a slot name",
                    |(id, issued_at, campaign, creative, slot)| {
                        Some(TokenPayload {
                            decision_id: Ulid(id),
                            issued_at,
                            campaign: CampaignId::parse(&campaign).ok()?,
                            creative: CreativeId::parse(&creative).ok()?,
                            slot: SlotName::parse(&slot).ok()?,
                        })
                    },
                )
        }

        proptest! {
            #[test]
            fn any_text_verifies_to_a_payload_or_a_reason_never_a_panic(token in any::<String>()) {
                let s = signer("k1:0123456789abcdef0123456789abcdef");
                let _ = s.verify(&token);
            }

            #[test]
            fn any_bytes_behind_the_format_and_key_id_are_refused(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
                let s = signer("k1:0123456789abcdef0123456789abcdef");
                let mut bytes = vec![FORMAT_VERSION, 2, b'k', b'1'];
                bytes.extend_from_slice(&tail);
                let verdict = s.verify(&URL_SAFE_NO_PAD.encode(&bytes));
                prop_assert!(matches!(verdict, Err(TokenError::Malformed | TokenError::BadSignature)), "{verdict:?}");
            }

            #[test]
            fn every_payload_signed_verifies_to_itself(payload in any_payload()) {
                let s = signer("k1:0123456789abcdef0123456789abcdef");
                prop_assert_eq!(s.verify(&s.sign(&payload)), Ok(payload));
            }

            #[test]
            fn any_key_setting_is_keys_or_a_clear_error(setting in any::<String>()) {
                let _ = Signer::from_setting(&SecretString::from(setting));
            }
        }
    }
}
