//! A postback request as rendered and sent: its method, URL, headers and body.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The HTTP method of postbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
