//! Signing secrets sealed at rest: XChaCha20-Poly1305 with a random 24-byte nonce per value,
//! keyed by the 32-byte key of the configuration (`secret_key`), stored as
//! `enc:v1:<base64 of nonce || ciphertext>`. A copied database file then leaks no secret.
//!
//! The store keeps the sealed text as it keeps any other text; only the API (which makes and
//! rotates secrets) and the worker (which signs) hold the key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// What every sealed value starts with; the version lets a later format sit beside this one.
pub const SEALED_PREFIX: &str = "enc:v1:";

/// Length of the key, in bytes.
pub const KEY_BYTES: usize = 32;

const NONCE_BYTES: usize = 24;

/// The key that seals signing secrets. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SecretKey(XChaCha20Poly1305);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A sealed value that this key cannot open, or that is not a sealed value.
#[derive(Debug, thiserror::Error)]
#[error("a stored signing secret cannot be decrypted with the configured secret_key")]
pub struct CannotOpen;

impl SecretKey {
    /// The key in base64 (as the configuration and the key file hold it).
    pub fn from_base64(text: &str) -> Result<SecretKey, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| "secret_key: not base64".to_owned())?;
        if bytes.len() != KEY_BYTES {
            return Err(format!(
                "secret_key: {} bytes; it must be {KEY_BYTES} random bytes in base64",
                bytes.len()
            ));
        }
        Ok(SecretKey(
            XChaCha20Poly1305::new_from_slice(&bytes).expect("the key has the right length"),
        ))
    }

    /// A new random key, and its base64 text to keep.
    pub fn generate() -> (SecretKey, String) {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let text = STANDARD.encode(bytes);
        (SecretKey::from_base64(&text).expect("a fresh key is valid"), text)
    }

    /// `plain` sealed under a fresh nonce.
    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .0
            .encrypt(XNonce::from_slice(&nonce), plain.as_bytes())
            .expect("encrypting a short value in memory cannot fail");
        let mut joined = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        joined.extend_from_slice(&nonce);
        joined.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(joined))
    }

    /// The secret a stored value holds: a sealed value opened, or a value from before sealing
    /// (plain text) as it is.
    pub fn open(&self, stored: &str) -> Result<String, CannotOpen> {
        let Some(sealed) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let joined = STANDARD.decode(sealed).map_err(|_| CannotOpen)?;
        if joined.len() < NONCE_BYTES {
            return Err(CannotOpen);
        }
        let (nonce, ciphertext) = joined.split_at(NONCE_BYTES);
        let plain = self
            .0
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| CannotOpen)?;
        String::from_utf8(plain).map_err(|_| CannotOpen)
    }
}

/// Whether a stored value is sealed (else it is plain text from before sealing).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_their_key_only() {
        let (key, text) = SecretKey::generate();
        let (other, _) = SecretKey::generate();
        let secret = crate::sign::new_secret();
        let (a, b) = (key.seal(&secret), key.seal(&secret));
        assert_ne!(a, b, "a fresh nonce each time");
        assert!(is_sealed(&a) && !a.contains(&secret[6..]));
        assert_eq!(key.open(&a).unwrap(), secret);
        assert_eq!(SecretKey::from_base64(&text).unwrap().open(&b).unwrap(), secret);
        assert!(other.open(&a).is_err());
        assert!(key.open("enc:v1:AAAA").is_err());
        assert_eq!(key.open(&secret).unwrap(), secret, "plain text from before sealing");
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(
            SecretKey::from_base64("not base64!")
                .unwrap_err()
                .starts_with("secret_key")
        );
        assert!(SecretKey::from_base64(&STANDARD.encode([0u8; 16])).is_err());
        assert!(SecretKey::from_base64(&STANDARD.encode([7u8; 32])).is_ok());
    }
}
