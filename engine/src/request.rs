//! A postback request as rendered and sent: its method, URL, headers and body, and the headers
//! Postwire writes itself, which neither settings nor transform plugins may set.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The HTTP method of postbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// No body: the data travels in the URL's query string.
    Get,
    /// The body carries the data.
    Post,
    /// The body carries the data.
    Put,
}

impl Method {
    /// The method's name, e.g. `POST`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A postback request as rendered, before signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The HTTP method.
    pub method: Method,
    /// The full URL.
    pub url: String,
    /// Headers in the order they are sent.
    pub headers: Vec<(String, String)>,
    /// The body; empty for GET.
    pub body: String,
}

impl fmt::Display for Request {
    /// The request as it goes on the wire (minus transport headers).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}", self.method, self.url)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {value}")?;
        }
        if !self.body.is_empty() {
            writeln!(f)?;
            write!(f, "{}", self.body)?;
        }
        Ok(())
    }
}

/// Headers Postwire writes itself (transport, framing and the Standard Webhooks signature); a
/// partner's settings may not name them, and a transform plugin may not return them. Any other
/// `webhook-` or `proxy-` header is reserved too (see [`is_reserved`]).
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Namespaces reserved whole: Standard Webhooks' own headers, and the hop-by-hop headers meant
/// for proxies, which a receiver behind one would read as its proxy's.
pub const RESERVED_PREFIXES: &[&str] = &["webhook-", "proxy-"];

/// Whether Postwire writes the header `name` itself: one of [`RESERVED_HEADERS`], or any name
/// in [`RESERVED_PREFIXES`], in any case. Settings validation and the check of a transform
/// plugin's output both ask this, so the two cannot disagree.
pub fn is_reserved(name: &str) -> bool {
    RESERVED_PREFIXES.iter().any(|prefix| {
        name.get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
    }) || RESERVED_HEADERS
        .iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_headers_in_any_case() {
        for name in [
            "Host",
            "Content-Length",
            "TRANSFER-ENCODING",
            "te",
            "webhook-signature",
            "Webhook-Id",
            "webhook-anything",
            "Connection",
            "Keep-Alive",
            "Upgrade",
            "Trailer",
            "Proxy-Authorization",
            "proxy-authenticate",
            "PROXY-Anything",
        ] {
            assert!(is_reserved(name), "{name}");
        }
        for name in [
            "X-Host",
            "Content-Type",
            "webhook",
            "tes",
            "",
            "Authorization",
            "\u{e9}",
            "proxy",
            "X-Proxy-Id",
        ] {
            assert!(!is_reserved(name), "{name}");
        }
    }
}
