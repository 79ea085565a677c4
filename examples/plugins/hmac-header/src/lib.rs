//! Example plugin (transform): signs the body for a receiver that checks an HMAC header.
//!
//! Adds `X-Signature: sha256=<hex>`, the lowercase hex HMAC-SHA256 of the body's bytes (as
//! sent) under the key in `plugin_config`: `{"hmac_key": "<secret shared with the receiver>"}`
//! (the key's UTF-8 bytes). `{"header": "X-Hub-Signature-256"}` changes the header's name. A
//! missing or empty key refuses the postback with a message saying so, rather than sending it
//! unsigned. The key is never logged.
//!
//! This is the receiver's own scheme; Postwire still adds its `Webhook-Signature` headers on
//! top (they cover the same body).

use hmac::{Hmac, Mac};
use postwire_sdk::{Config, Event, Request, Transform, info};
use sha2::Sha256;

const DEFAULT_HEADER: &str = "X-Signature";

struct HmacHeader;

impl Transform for HmacHeader {
    fn transform(event: &Event, mut request: Request, config: &Config) -> Result<Request, String> {
        let key: String = config
            .require("hmac_key")
            .map_err(|e| format!("{e}: set it to the secret shared with the receiver"))?;
        if key.is_empty() {
            return Err("plugin_config's \"hmac_key\" is empty: set it to the secret shared with the receiver".into());
        }
        let header = match config.value().and_then(|value| value.get("header")) {
            None => DEFAULT_HEADER.to_owned(),
            Some(_) => config.require::<String>("header")?,
        };
        let signature = format!("sha256={}", sign(key.as_bytes(), request.body.as_bytes()));
        request.set_header(&header, signature);
        info!(
            "signed event {} ({} bytes of body) in {header}",
            event.id(),
            request.body.len()
        );
        Ok(request)
    }
}

postwire_sdk::export_transform!(HmacHeader);

/// The lowercase hex HMAC-SHA256 of `message` under `key`.
fn sign(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> Request {
        Request::new("POST", "https://partner.example/postbacks/action-inquiry")
            .with_header("Content-Type", "application/json")
            .with_body(body)
    }

    fn event() -> Event {
        Event::new("evt_1", "action_inquiry.created")
    }

    #[test]
    fn rfc_4231_test_vectors() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            sign(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // A key longer than the block size is hashed first.
        assert_eq!(
            sign(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn adds_the_signature_header() {
        let config = Config::new(r#"{"hmac_key": "Jefe"}"#);
        let out = HmacHeader::transform(&event(), request("what do ya want for nothing?"), &config).unwrap();
        assert_eq!(
            out.header("x-signature"),
            Some("sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert_eq!(out.body, "what do ya want for nothing?");
        assert_eq!(out.header("Content-Type"), Some("application/json"));
        assert_eq!(out.headers.len(), 2);
    }

    #[test]
    fn replaces_an_existing_header_and_honours_the_header_name() {
        let config = Config::new(r#"{"hmac_key": "k", "header": "X-Hub-Signature-256"}"#);
        let out = HmacHeader::transform(
            &event(),
            request("{}").with_header("x-hub-signature-256", "stale"),
            &config,
        )
        .unwrap();
        assert_eq!(
            out.header("X-Hub-Signature-256"),
            Some(format!("sha256={}", sign(b"k", b"{}")).as_str())
        );
        assert_eq!(out.headers.len(), 2);
        assert_eq!(out.header("X-Signature"), None);
    }

    #[test]
    fn refuses_without_a_key() {
        let refuse = |config: &str| HmacHeader::transform(&event(), request("{}"), &Config::new(config)).unwrap_err();
        assert_eq!(
            refuse("{}"),
            "plugin_config has no \"hmac_key\": set it to the secret shared with the receiver"
        );
        assert_eq!(
            refuse(r#"{"hmac_key": null}"#),
            "plugin_config has no \"hmac_key\": set it to the secret shared with the receiver"
        );
        assert!(refuse(r#"{"hmac_key": ""}"#).contains("is empty"));
        assert!(refuse(r#"{"hmac_key": 5}"#).contains("is not valid"));
        assert!(refuse(r#"{"hmac_key": "k", "header": 5}"#).contains("\"header\" is not valid"));
        assert!(refuse("not json").contains("not valid JSON"));
    }

    /// `config.json`, which the README runs the plugin with.
    #[test]
    fn the_readme_config() {
        let config = Config::new(include_str!("../config.json"));
        let out = HmacHeader::transform(&event(), request("{}"), &config).unwrap();
        assert_eq!(
            out.header("X-Signature"),
            Some(format!("sha256={}", sign(b"demo-secret", b"{}")).as_str())
        );
    }
}
