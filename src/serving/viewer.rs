//! Viewer ids as the store knows them: a keyed hash (HMAC-SHA256) of the `uid` a page sends.
//!
//! A plain hash of an id can be reversed by hashing likely ids (a cookie format, an e-mail
//! address) and comparing; a keyed hash cannot without the key. Instances that share a store
//! must hash alike, or a viewer would have one history per instance: the key is
//! `REGIE_VIEWER_KEY` when set, else derived from the tracking signing key, which such
//! instances share (`REGIE_TRACKING_KEYS`, or the key kept in the store). With the embedded
//! store and no keys, that is a random key of the process.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::tracking::Signer;

/// Hashes viewer ids for the store.
pub struct ViewerKeys {
    source: Source,
}

enum Source {
    /// `REGIE_VIEWER_KEY`, keyed once.
    Configured(Hmac<Sha256>),
    /// A key derived from whatever the signer signs with at the time.
    Tracking(Arc<Signer>),
}

impl std::fmt::Debug for ViewerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.source {
            Source::Configured(_) => "REGIE_VIEWER_KEY",
            Source::Tracking(_) => "derived from the tracking key",
        };
        f.debug_struct("ViewerKeys").field("key", &source).finish()
    }
}

impl ViewerKeys {
    /// Hashes with `configured` (`REGIE_VIEWER_KEY`) when set, else with a key derived from
    /// `signer`'s signing key (followed as it changes, e.g. when the store's shared key is
    /// adopted after start).
    pub fn new(configured: Option<&SecretString>, signer: Arc<Signer>) -> Self {
        let source = match configured {
            Some(key) => Source::Configured(
                Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
                    .expect("HMAC takes keys of any length"),
            ),
            None => Source::Tracking(signer),
        };
        Self { source }
    }

    /// The stored form of a viewer id: the first 128 bits of its HMAC-SHA256, in hex.
    pub fn key(&self, uid: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut mac = match &self.source {
            Source::Configured(mac) => mac.clone(),
            Source::Tracking(signer) => signer.derived_mac(),
        };
        mac.update(uid.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut key = String::with_capacity(32);
        for byte in &digest[..16] {
            key.push(HEX[usize::from(byte >> 4)] as char);
            key.push(HEX[usize::from(byte & 0x0f)] as char);
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn signer(keys: &str) -> Arc<Signer> {
        Arc::new(Signer::from_setting(&secret(keys)).unwrap())
    }

    const KEYS: &str = "k1:a-tracking-secret-of-32-bytes-or-more";

    #[test]
    fn a_viewer_key_is_not_the_plain_sha256_of_the_id() {
        let keys = ViewerKeys::new(None, signer(KEYS));
        let plain: String = Sha256::digest(b"reader-42")[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();

        let key = keys.key("reader-42");

        assert_eq!(key.len(), 32);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(key, plain);
    }

    #[test]
    fn instances_with_the_same_key_hash_alike_and_others_do_not() {
        let a = ViewerKeys::new(None, signer(KEYS));
        let b = ViewerKeys::new(None, signer(KEYS));
        let other = ViewerKeys::new(None, signer("k1:another-tracking-secret-of-32-bytes!!"));
        let configured = ViewerKeys::new(
            Some(&secret("a-viewer-key-of-thirty-two-bytes-at-least")),
            signer(KEYS),
        );
        let configured_elsewhere = ViewerKeys::new(
            Some(&secret("a-viewer-key-of-thirty-two-bytes-at-least")),
            Arc::new(Signer::random()),
        );

        assert_eq!(a.key("reader-42"), b.key("reader-42"));
        assert_ne!(a.key("reader-42"), a.key("reader-43"));
        assert_ne!(a.key("reader-42"), other.key("reader-42"));
        assert_ne!(a.key("reader-42"), configured.key("reader-42"));
        assert_eq!(
            configured.key("reader-42"),
            configured_elsewhere.key("reader-42"),
            "REGIE_VIEWER_KEY alone decides"
        );
    }

    #[test]
    fn the_derived_key_follows_the_signer_when_it_adopts_the_stores_key() {
        let signer = Arc::new(Signer::random());
        let keys = ViewerKeys::new(None, signer.clone());
        let before = keys.key("reader-42");

        signer.adopt_shared("the-secret-every-instance-of-the-store-shares");
        let elsewhere = Arc::new(Signer::random());
        elsewhere.adopt_shared("the-secret-every-instance-of-the-store-shares");

        assert_ne!(keys.key("reader-42"), before);
        assert_eq!(
            keys.key("reader-42"),
            ViewerKeys::new(None, elsewhere).key("reader-42")
        );
    }

    #[test]
    fn the_derived_key_is_not_the_signing_key() {
        let signer = signer(KEYS);
        let keys = ViewerKeys::new(None, signer);
        let signing_key_hash: String = {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(b"a-tracking-secret-of-32-bytes-or-more").unwrap();
            mac.update(b"reader-42");
            mac.finalize().into_bytes()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };

        assert_ne!(keys.key("reader-42"), signing_key_hash);
    }
}
