//! The postback request and the receiver's response.

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A postback request: what the partner's template produced, and what a transform returns.
///
/// Header names compare case-insensitively. Postwire refuses a request whose method is not
/// `GET`, `POST` or `PUT`, whose URL is not http(s), that sets `Host`, `Content-Length` or a
/// `Webhook-*` header (it sets those itself), or that has a body on `GET`.
///
/// ```
/// use postwire_sdk::Request;
///
/// let mut request = Request::new("POST", "https://partner.example/postbacks")
///     .with_header("content-type", "application/json")
///     .with_body(r#"{"order_id":"ORD-1"}"#);
/// let body: postwire_sdk::serde_json::Value = request.json().unwrap();
/// assert_eq!(body["order_id"], "ORD-1");
/// request.set_header("Content-Type", "application/vnd.partner+json");
/// assert_eq!(request.header("CONTENT-TYPE"), Some("application/vnd.partner+json"));
/// assert_eq!(request.headers.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST` or `PUT`.
    pub method: String,
    /// The full URL.
    pub url: String,
    /// Headers in order, as `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// The body (empty on `GET`).
    pub body: String,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            ..Request::default()
        }
    }

    /// The same request with this header set (see [`set_header`](Request::set_header)).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.set_header(name, value);
        self
    }

    /// The same request with this body.
    pub fn with_body(mut self, body: impl Into<String>) -> Request {
        self.body = body.into();
        self
    }

    /// The body.
    pub fn text(&self) -> &str {
        &self.body
    }

    /// The body parsed as JSON into `T`; the error says why it is not one.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("the request body is not the JSON expected: {e}"))
    }

    /// The body parsed as any JSON value.
    pub fn json_value(&self) -> Result<Value, String> {
        self.json()
    }

    /// Replaces the body with `value` as JSON. Headers are left alone: set `Content-Type` if
    /// the template did not.
    pub fn set_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), String> {
        self.body = serde_json::to_string(value).map_err(|e| format!("cannot write the body as JSON: {e}"))?;
        Ok(())
    }

    /// Replaces the body.
    pub fn set_text(&mut self, body: impl Into<String>) {
        self.body = body.into();
    }

    /// The value of the first header called `name`, any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// Sets the header `name` to `value`: the first header of that name (any case) is
    /// replaced in place, with `name` as spelled here, and any others of that name removed;
    /// else the header is added at the end.
    pub fn set_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.headers.iter().position(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            Some(first) => {
                let mut index = 0;
                self.headers.retain(|(n, _)| {
                    let keep = index <= first || !n.eq_ignore_ascii_case(&name);
                    index += 1;
                    keep
                });
                self.headers[first] = (name, value);
            }
            None => self.headers.push((name, value)),
        }
    }

    /// Adds a header at the end, even if one of that name exists.
    pub fn add_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.headers.push((name.into(), value.into()));
    }

    /// Removes every header called `name` (any case); returns the first one's value.
    pub fn remove_header(&mut self, name: &str) -> Option<String> {
        let mut removed = None;
        self.headers.retain_mut(|(n, value)| {
            if !n.eq_ignore_ascii_case(name) {
                return true;
            }
            if removed.is_none() {
                removed = Some(std::mem::take(value));
            }
            false
        });
        removed
    }
}

/// A receiver's answer to a postback.
///
/// ```
/// use postwire_sdk::Response;
///
/// let response = Response::new(200)
///     .with_header("Content-Type", "application/json")
///     .with_body(r#"{"status":"ok"}"#);
/// assert!(response.is_success());
/// assert_eq!(response.header("content-type"), Some("application/json"));
/// assert_eq!(response.json_value().unwrap()["status"], "ok");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// Headers as received, as `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// The body, cut at the capture limit.
    pub body: Vec<u8>,
    /// How long the exchange took, in milliseconds.
    pub duration_ms: u32,
}

impl Response {
    /// A response with this status, no headers and no body: for tests.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            ..Response::default()
        }
    }

    /// The same response with this header added.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The same response with this body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The value of the first header called `name`, any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// The body's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text; bytes that are not UTF-8 (such as a character cut by the capture
    /// limit) become `U+FFFD`.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body parsed as JSON into `T`; the error says why it is not one.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("the response body is not the JSON expected: {e}"))
    }

    /// The body parsed as any JSON value.
    pub fn json_value(&self) -> Result<Value, String> {
        self.json()
    }

    /// How long the exchange took, in milliseconds.
    pub fn duration_ms(&self) -> u32 {
        self.duration_ms
    }
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(request: &Request) -> Vec<(&str, &str)> {
        request.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    #[test]
    fn set_header_replaces_in_place_and_drops_duplicates() {
        let mut request = Request::new("POST", "https://p.example/");
        request.add_header("Accept", "*/*");
        request.add_header("x-token", "a");
        request.add_header("X-Other", "1");
        request.add_header("X-TOKEN", "b");
        request.set_header("X-Token", "c");
        assert_eq!(
            headers(&request),
            [("Accept", "*/*"), ("X-Token", "c"), ("X-Other", "1")]
        );
        request.set_header("X-New", "n");
        assert_eq!(request.headers.last(), Some(&("X-New".to_string(), "n".to_string())));
    }

    #[test]
    fn header_lookup_ignores_case() {
        let request = Request::new("GET", "https://p.example/")
            .with_header("Content-Type", "text/plain")
            .with_header("X-A", "1");
        assert_eq!(request.header("content-type"), Some("text/plain"));
        assert_eq!(request.header("CONTENT-TYPE"), Some("text/plain"));
        assert_eq!(request.header("X-B"), None);
    }

    #[test]
    fn remove_header_removes_all() {
        let mut request = Request::new("POST", "https://p.example/");
        request.add_header("X-A", "1");
        request.add_header("X-B", "2");
        request.add_header("x-a", "3");
        assert_eq!(request.remove_header("X-a"), Some("1".to_string()));
        assert_eq!(headers(&request), [("X-B", "2")]);
        assert_eq!(request.remove_header("X-A"), None);
    }

    #[test]
    fn request_bodies() {
        #[derive(serde::Deserialize, serde::Serialize, PartialEq, Debug)]
        struct Body {
            order_id: String,
            amount: f64,
        }
        let mut request = Request::new("POST", "https://p.example/").with_body(r#"{"order_id":"O-1","amount":1.5}"#);
        let body: Body = request.json().unwrap();
        assert_eq!(
            body,
            Body {
                order_id: "O-1".into(),
                amount: 1.5
            }
        );
        assert_eq!(request.json_value().unwrap()["amount"], 1.5);
        request.set_json(&serde_json::json!({"a": [1, 2]})).unwrap();
        assert_eq!(request.text(), r#"{"a":[1,2]}"#);
        request.set_text("plain");
        assert_eq!(request.body, "plain");
        let error = request.json::<Body>().unwrap_err();
        assert!(
            error.starts_with("the request body is not the JSON expected"),
            "{error}"
        );
    }

    #[test]
    fn responses() {
        let response = Response::new(503)
            .with_header("Retry-After", "30")
            .with_body(b"busy \xff".to_vec());
        assert!(!response.is_success());
        assert_eq!(response.status(), 503);
        assert_eq!(response.header("retry-after"), Some("30"));
        assert_eq!(response.text(), "busy \u{fffd}");
        assert!(response.json_value().is_err());
        assert!(Response::new(204).is_success());
        assert!(!Response::new(199).is_success());
        assert!(!Response::new(300).is_success());
    }
}
