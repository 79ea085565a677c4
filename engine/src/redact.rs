//! What counts as a secret, and how secrets are hidden wherever Postwire shows a request or a
//! configuration: the attempt log, settings as the API shows them, plugin dry runs and the
//! local runner all apply these rules, so a value hidden in one place is hidden in all.
//!
//! A name holds a secret when it holds one of the words of [`SECRET_WORDS`], in any case:
//! header names, query parameters and `plugin_config` keys alike. The signature Postwire adds
//! itself, `webhook-signature`, is public: receivers and partners compare it. A URL's userinfo
//! (`https://user:pass@host/`) is always hidden.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::request::Request;

/// What a hidden value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// The words that make a name secret ("auth" covers "authorization" and "oauth").
pub const SECRET_WORDS: &[&str] = &[
    "auth",
    "cookie",
    "key",
    "token",
    "secret",
    "password",
    "signature",
    "credential",
];

/// Whether a header, query parameter or configuration key of this name holds a secret: its
/// name holds one of [`SECRET_WORDS`] in any case, and it is not `webhook-signature`.
pub fn is_secret(name: &str) -> bool {
    !name.eq_ignore_ascii_case("webhook-signature") && has_secret_word(name.as_bytes())
}

/// Whether `text` holds one of [`SECRET_WORDS`] in any case. Runs for every header of every
/// attempt: one pass, comparing a word only where its first letter is, without a lowercase copy.
pub fn has_secret_word(text: &[u8]) -> bool {
    (0..text.len()).any(|at| {
        let rest = &text[at..];
        let starts = |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
        match rest[0].to_ascii_lowercase() {
            b'a' => starts(b"auth"),
            b'c' => starts(b"cookie") || starts(b"credential"),
            b'k' => starts(b"key"),
            b't' => starts(b"token"),
            b's' => starts(b"secret") || starts(b"signature"),
            b'p' => starts(b"password"),
            _ => false,
        }
    })
}

/// A header's value as shown: [`REDACTED`] when its name is secret.
pub fn header_value<'a>(name: &str, value: &'a str) -> &'a str {
    if is_secret(name) { REDACTED } else { value }
}

/// The URL as shown: its userinfo replaced by [`REDACTED`], and the values of secret query
/// parameters too. URLs with neither a `?` nor an `@` (most) are returned as they are, unparsed.
pub fn url(url: &str) -> Cow<'_, str> {
    // Two byte searches (memchr) rather than one search for either character, which goes
    // char by char: this runs for every attempt.
    if !url.contains('?') && !url.contains('@') {
        return url.into();
    }
    let shown = query(url);
    if !shown.contains('@') {
        return shown;
    }
    match shown {
        Cow::Borrowed(same) => userinfo(same),
        Cow::Owned(changed) => Cow::Owned(userinfo(&changed).into_owned()),
    }
}

/// The URL with the values of secret query parameters replaced.
fn query(url: &str) -> Cow<'_, str> {
    let Some((_, query)) = url.split_once('?') else {
        return url.into();
    };
    // Most queries hold no name that could be secret, even once decoded; they are not parsed.
    if !query.contains(['%', '+']) && !has_secret_word(query.as_bytes()) {
        return url.into();
    }
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.query_pairs().any(|(k, _)| is_secret(&k)) => {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if is_secret(&k) {
                        REDACTED.to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
            parsed.to_string().into()
        }
        _ => url.into(),
    }
}

/// The URL with its userinfo (`user:pass@`), if it has one, replaced by [`REDACTED`]. The
/// authority is found as URL parsers find it: after `//`, up to the first `/`, `\`, `?` or `#`,
/// and the userinfo ends at its last `@`.
fn userinfo(url: &str) -> Cow<'_, str> {
    let Some(start) = url.find("//").map(|at| at + 2) else {
        return url.into();
    };
    let authority_end = url[start..]
        .find(['/', '\\', '?', '#'])
        .map_or(url.len(), |at| start + at);
    match url[start..authority_end].rfind('@') {
        Some(at) => format!("{}{REDACTED}{}", &url[..start], &url[start + at..]).into(),
        None => url.into(),
    }
}

/// A request as JSON text (method, URL, headers, body), with `extra` headers after its own and
/// secret header values, query parameters and userinfo redacted: the attempt log's `request`.
pub fn request(request: &Request, extra: &[(&str, String)]) -> Box<RawValue> {
    let url = url(&request.url);
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(extra.iter().map(|(n, v)| (*n, v.as_str())))
        .map(|(n, v)| (n, header_value(n, v)))
        .collect();
    #[derive(Serialize)]
    struct Logged<'a> {
        method: &'a str,
        url: &'a str,
        headers: Vec<(&'a str, &'a str)>,
        body: &'a str,
    }
    let logged = Logged {
        method: request.method.as_str(),
        url: &url,
        headers,
        body: &request.body,
    };
    serde_json::value::to_raw_value(&logged).expect("a request always serializes")
}

/// A request as a JSON value (`{"method","url","headers","body"}`), redacted as [`request`]
/// redacts: what dry runs and the local runner show.
pub fn request_value(request: &Request) -> Value {
    serde_json::json!({
        "method": request.method.as_str(),
        "url": url(&request.url),
        "headers": request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), header_value(n, v)))
            .collect::<Vec<_>>(),
        "body": request.body,
    })
}

/// `plugin_config` with the values of secret keys replaced, at every level. A secret key whose
/// value is an object or an array keeps its shape: the keys inside are judged one by one.
pub fn config(config: &Value) -> Value {
    match config {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let shown = if is_secret(key) && !value.is_object() && !value.is_array() {
                        Value::String(REDACTED.to_owned())
                    } else {
                        self::config(value)
                    };
                    (key.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(self::config).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::request::Method;

    #[test]
    fn secret_names_are_found_in_any_case() {
        for name in [
            "Authorization",
            "X-API-KEY",
            "x-Auth-Token",
            "Cookie",
            "client_secret",
            "PassWord",
            "X-Credential",
            "aws_credentials",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in [
            "Content-Type",
            "webhook-signature",
            "Webhook-Signature",
            "X-Partner",
            "k",
            "",
        ] {
            assert!(!is_secret(name), "{name}");
        }
        assert!(is_secret("x-signature"), "signatures other than ours are secrets");
        // The one pass finds what a plain search for every word finds.
        for text in [
            "X-Api-Key",
            "keyless",
            "monkey",
            "x-oauth",
            "TOKENS",
            "tok",
            "sec",
            "secre",
            "Set-Cookie",
            "pass_word",
            "PASSWORD1",
            "aut",
            "x-sig",
            "SIGNATURE",
            "k",
            "",
            "akey",
            "ssecret",
            "CREDENTIAL",
            "credentia",
            "ccookie",
        ] {
            let lower = text.to_ascii_lowercase();
            let plain = SECRET_WORDS.iter().any(|word| lower.contains(word));
            assert_eq!(has_secret_word(text.as_bytes()), plain, "{text}");
        }
    }

    #[test]
    fn urls_lose_their_userinfo_and_secret_parameters() {
        for (url, shown) in [
            ("https://partner.example/pb", "https://partner.example/pb"),
            (
                "https://partner.example/pb?order=1",
                "https://partner.example/pb?order=1",
            ),
            (
                "https://user:pass@partner.example/pb",
                "https://[redacted]@partner.example/pb",
            ),
            ("https://token@partner.example", "https://[redacted]@partner.example"),
            (
                "https://u:p@w@partner.example:8443/pb?x=1",
                "https://[redacted]@partner.example:8443/pb?x=1",
            ),
            (
                "https://partner.example/pb?order=1&api_key=k-1",
                "https://partner.example/pb?order=1&api_key=%5Bredacted%5D",
            ),
            (
                "https://user:pass@partner.example/pb?Token=t&order=1",
                "https://[redacted]@partner.example/pb?Token=%5Bredacted%5D&order=1",
            ),
            // An @ after the authority is not userinfo.
            ("https://partner.example/a@b", "https://partner.example/a@b"),
            (
                "https://partner.example/pb?mail=a@b",
                "https://partner.example/pb?mail=a@b",
            ),
            ("https://partner.example#x@y", "https://partner.example#x@y"),
        ] {
            assert_eq!(super::url(url), shown, "{url}");
        }
        assert!(matches!(super::url("https://partner.example/pb"), Cow::Borrowed(_)));
    }

    #[test]
    fn requests_and_configs_are_shown_by_the_same_rules() {
        let request = Request {
            method: Method::Post,
            url: "https://user:pass@partner.example/pb?credential=c".into(),
            headers: vec![
                ("X-Credential".into(), "c".into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: "{}".into(),
        };
        let extra = [("webhook-signature", "v1,abc".to_owned())];
        let logged: Value = serde_json::from_str(self::request(&request, &extra).get()).unwrap();
        assert_eq!(
            logged,
            json!({
                "method": "POST",
                "url": "https://[redacted]@partner.example/pb?credential=%5Bredacted%5D",
                "headers": [["X-Credential", "[redacted]"], ["Content-Type", "application/json"],
                    ["webhook-signature", "v1,abc"]],
                "body": "{}",
            })
        );
        let shown = request_value(&request);
        assert_eq!(shown["url"], logged["url"]);
        assert_eq!(shown["headers"][0], json!(["X-Credential", "[redacted]"]));

        let shown = config(&json!({
            "credential": "c", "api_key": "k", "Cookie": "x", "tag": "spring",
            "nested": {"password": "p", "list": [{"token": "t"}]}, "auth": {"user": "u"},
        }));
        assert_eq!(
            shown,
            json!({
                "credential": "[redacted]", "api_key": "[redacted]", "Cookie": "[redacted]", "tag": "spring",
                "nested": {"password": "[redacted]", "list": [{"token": "[redacted]"}]}, "auth": {"user": "u"},
            })
        );
    }
}
