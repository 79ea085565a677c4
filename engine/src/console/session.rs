//! The console's session: a cookie holding the signed-in credential's hash, the partner picked
//! and a CSRF token, sealed with the engine's secret key (the same XChaCha20-Poly1305 sealing as
//! signing secrets, [`crate::sealed`]), so that it shows nothing of the key and cannot be forged.
//! Sealed rather than kept in memory, it serves every API process sharing the store (they share
//! `--secret-key`) and survives restarts.
//!
//! The credential is checked again on every request ([`crate::api::caller_by_hash`]), so a
//! revoked key ends its sessions on the next one; signing out forgets the session in this
//! process until it would have expired anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{Console, Failure};
use crate::api::{Caller, caller_by_hash, partner_for};
use crate::store::{self, KeyKind, now_ms};

/// The cookie's name.
pub const COOKIE: &str = "pw_console";

/// How long a session lasts, signed in or not.
pub const LIFETIME_MS: i64 = 12 * 3600 * 1000;

/// What the cookie holds, sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Random: names the session, to forget it on sign-out.
    #[serde(rename = "s")]
    pub id: String,
    /// Random: every form sends it back, and every POST must.
    #[serde(rename = "c")]
    pub csrf: String,
    /// SHA-256 of the credential signed in with; none before signing in.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The partner the pages act for.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    /// When it expires (Unix ms).
    #[serde(rename = "e")]
    pub expires: i64,
}

impl Session {
    /// A new session, signed in with `hash` or anonymous, for `partner`.
    pub fn new(hash: Option<String>, partner: Option<String>) -> Session {
        Session {
            id: random(),
            csrf: random(),
            hash,
            partner,
            expires: now_ms() + LIFETIME_MS,
        }
    }
}

fn random() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Sessions signed out in this process, each until it would have expired.
#[derive(Debug, Default, Clone)]
pub struct SignedOut(Arc<Mutex<HashMap<String, i64>>>);

impl SignedOut {
    /// Forgets `session` from now on.
    pub fn add(&self, session: &Session) {
        let now = now_ms();
        let mut gone = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        gone.retain(|_, until| *until > now);
        gone.insert(session.id.clone(), session.expires);
    }

    fn has(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(id)
    }
}

/// The session the request's cookie holds, if it is sealed with this engine's key, unexpired
/// and not signed out.
pub fn read(console: &Console, headers: &HeaderMap) -> Option<Session> {
    let sealed = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))?;
    // `open` reads unsealed text as itself (secrets from before sealing); a cookie must be sealed.
    if !crate::sealed::is_sealed(sealed) {
        return None;
    }
    let plain = console.app.secret_key.open(sealed).ok()?;
    let session: Session = serde_json::from_str(&plain).ok()?;
    (session.expires > now_ms() && !console.signed_out.has(&session.id)).then_some(session)
}

/// The `Set-Cookie` value that keeps `session`: HttpOnly, SameSite=Strict, Path=/console, and
/// Secure when the request came over HTTPS (as a proxy in front says).
pub fn cookie(console: &Console, session: &Session, secure: bool) -> HeaderValue {
    let sealed = console
        .app
        .secret_key
        .seal(&serde_json::to_string(session).expect("a session serializes"));
    let max_age = (session.expires - now_ms()).max(0) / 1000;
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={sealed}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={max_age}{secure}"
    ))
    .expect("a sealed value is header text")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn removal() -> HeaderValue {
    HeaderValue::from_static("pw_console=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0")
}

/// Whether the request came over HTTPS, as a proxy in front of the engine says.
pub fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// Whether two tokens are equal, in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A signed-in session whose credential still stands.
pub struct SignedIn {
    /// The session.
    pub session: Session,
    /// Who signed in.
    pub caller: Caller,
}

impl SignedIn {
    /// Whether the operator signed in (the operator token, or a stored operator key).
    pub fn operator(&self) -> bool {
        self.caller.kind() == KeyKind::Operator
    }
}

impl FromRequestParts<Console> for SignedIn {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Self::Rejection> {
        let Some(session) = read(console, &parts.headers) else {
            return Err(Failure::to_sign_in(None));
        };
        let Some(hash) = session.hash.clone() else {
            return Err(Failure::to_sign_in(None));
        };
        match caller_by_hash(&console.app, hash).await {
            Ok(caller) if caller.kind() == KeyKind::Ingest => Err(Failure::to_sign_in(Some("ingest"))),
            Ok(caller) => Ok(SignedIn { session, caller }),
            Err(e) if e.status() == StatusCode::UNAUTHORIZED => Err(Failure::to_sign_in(Some("revoked"))),
            Err(e) => Err(e.into()),
        }
    }
}

/// A signed-in session with the partner its pages act for, checked as the API checks a
/// partner route ([`partner_for`]): a partner key reaches its own partner only.
pub struct PartnerPage {
    /// The session and its caller.
    pub signed: SignedIn,
    /// The partner.
    pub partner: store::Partner,
}

impl PartnerPage {
    /// What the page frame shows of the session.
    pub fn who(&self) -> super::html::Who<'_> {
        super::html::Who {
            partner: Some((&self.partner.id, &self.partner.name)),
            operator: self.signed.operator(),
            csrf: &self.signed.session.csrf,
        }
    }
}

impl FromRequestParts<Console> for PartnerPage {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Self::Rejection> {
        let signed = SignedIn::from_request_parts(parts, console).await?;
        let Some(id) = signed.session.partner.clone() else {
            return Err(Failure::redirect("/console/operator"));
        };
        let partner = partner_for(&console.app, &signed.caller, &id).await?;
        Ok(PartnerPage { signed, partner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd") && !same("abc", "ab") && !same("", "a"));
    }
}
