//! Escaping: how a value is written into each place a placeholder can stand.
//!
//! The place is decided when the template is compiled (see [`Context`]), so rendering only
//! appends escaped bytes. Each function keeps a value inside its place: a JSON string cannot be
//! closed, an XML element cannot be opened, a form or query parameter cannot be added, and a
//! header line cannot be ended.

use std::fmt::Write;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Where a placeholder stands, which decides how its value is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Inside a JSON string literal: JSON string escaping.
    JsonString,
    /// Where a JSON value goes: numbers as numbers, everything else as a quoted string, `null`
    /// when absent.
    JsonValue,
    /// XML text or attribute value: entity escaping.
    Xml,
    /// Inside `<![CDATA[ ... ]]>`: the section is split around any `]]>`.
    XmlCdata,
    /// An `application/x-www-form-urlencoded` body.
    Form,
    /// The query or fragment of the URL: percent-encoding of everything but unreserved
    /// characters.
    Url,
    /// The path of the URL: as [`Context::Url`], except that a value of only dots (`.` or `..`)
    /// has each dot written `%252E`. Either would be a dot segment, which a URL parser removes
    /// or resolves against the segment before it (so `/x/../y` is `/y`), and so is `%2E`; so
    /// the segment keeps its place and reads `%2E` once decoded.
    UrlPath,
    /// An HTTP header value: control characters (CR and LF above all) become spaces.
    Header,
    /// A `text` body: written as is.
    Text,
}

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Appends `value` escaped for `context` (for [`Context::JsonValue`], callers quote text first).
pub fn text(context: Context, value: &str, out: &mut String) {
    match context {
        Context::JsonString | Context::JsonValue => json_string_content(value, out),
        Context::Xml => xml(value, out),
        Context::XmlCdata => cdata(value, out),
        Context::Form => out.extend(form_urlencoded::byte_serialize(value.as_bytes())),
        Context::UrlPath if value == "." || value == ".." => {
            for _ in 0..value.len() {
                out.push_str("%252E");
            }
        }
        Context::Url | Context::UrlPath => out.extend(utf8_percent_encode(value, URL_COMPONENT)),
        Context::Header => header(value, out),
        Context::Text => out.push_str(value),
    }
}

/// Percent-encodes `value` as a URL component (the `urlencode` helper).
pub fn url_component(value: &str) -> String {
    utf8_percent_encode(value, URL_COMPONENT).to_string()
}

/// JSON string escaping without the surrounding quotes (RFC 8259 section 7).
pub fn json_string_content(value: &str, out: &mut String) {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&value[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&value[start..]);
}

/// Characters XML 1.0 cannot carry at all, even as references.
fn xml_forbidden(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

/// Entity escaping safe in text and in both kinds of attribute quotes. Tab, LF and CR are written
/// as character references so attribute-value normalisation cannot change them; characters XML
/// cannot represent become U+FFFD.
fn xml(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if xml_forbidden(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

fn cdata(value: &str, out: &mut String) {
    let mut clean = String::with_capacity(value.len());
    for c in value.chars() {
        clean.push(if xml_forbidden(c) { '\u{fffd}' } else { c });
    }
    out.push_str(&clean.replace("]]>", "]]]]><![CDATA[>"));
}

fn header(value: &str, out: &mut String) {
    out.extend(value.chars().map(|c| if c.is_control() && c != '\t' { ' ' } else { c }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(context: Context, value: &str) -> String {
        let mut out = String::new();
        text(context, value, &mut out);
        out
    }

    #[test]
    fn escapes_each_place() {
        assert_eq!(esc(Context::JsonString, "a\"b\\c\n\u{1}é"), "a\\\"b\\\\c\\n\\u0001é");
        assert_eq!(
            esc(Context::Xml, "<a href='x'>&\"</a>"),
            "&lt;a href=&apos;x&apos;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(esc(Context::XmlCdata, "x]]><y/>"), "x]]]]><![CDATA[><y/>");
        assert_eq!(esc(Context::Form, "a b&c=d"), "a+b%26c%3Dd");
        assert_eq!(esc(Context::Url, "a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(esc(Context::UrlPath, "a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(esc(Context::UrlPath, "."), "%252E");
        assert_eq!(esc(Context::UrlPath, ".."), "%252E%252E");
        assert_eq!(esc(Context::UrlPath, "..."), "...");
        assert_eq!(esc(Context::Url, ".."), "..");
        assert_eq!(esc(Context::Header, "a\r\nX-Evil: 1"), "a  X-Evil: 1");
        assert_eq!(esc(Context::Text, "as is\n"), "as is\n");
    }
}
