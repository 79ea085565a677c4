//! HTML output: escaping, and the frame every page shares.
//!
//! Every value that comes from input, the store or a receiver goes through [`esc`] before it is
//! written; page code writes only literal markup around escaped values. No page has inline
//! script or style (the Content-Security-Policy forbids both): behaviour comes from
//! `/console/assets/console.js`, looks from `/console/assets/console.css`.

use std::fmt::Write as _;

/// `text` escaped for HTML text and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The pages of the navigation, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The settings page.
    Settings,
    /// The test postback page.
    Test,
    /// The postback log.
    Log,
    /// The partner's plugins.
    Plugins,
    /// The operator's pages.
    Operator,
    /// Signing in: no navigation.
    None,
}

/// Who is signed in, as the frame shows it.
pub struct Who<'a> {
    /// The partner the pages act for, if one is picked.
    pub partner: Option<(&'a str, &'a str)>,
    /// Whether the operator signed in.
    pub operator: bool,
    /// The session's CSRF token, for the sign-out form.
    pub csrf: &'a str,
}

/// A whole page: `title`, the navigation with `active` marked, and `body` (markup already
/// escaped where it holds values).
pub fn page(title: &str, active: Nav, who: Option<&Who<'_>>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Postwire console</title>\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a><header><span class=\"brand\">Postwire</span>",
        esc(title)
    );
    if let Some(who) = who {
        out.push_str("<nav aria-label=\"Console\"><ul>");
        let mut items = Vec::new();
        if who.partner.is_some() {
            items.extend([
                (Nav::Settings, "/console/settings", "Event notifications"),
                (Nav::Test, "/console/test", "Test postback"),
                (Nav::Log, "/console/log", "Postback log"),
                (Nav::Plugins, "/console/plugins", "Plugins"),
            ]);
        }
        if who.operator {
            items.push((Nav::Operator, "/console/operator", "Operator"));
        }
        for (nav, href, label) in items {
            let current = if nav == active { " aria-current=\"page\"" } else { "" };
            let _ = write!(out, "<li><a href=\"{href}\"{current}>{label}</a></li>");
        }
        out.push_str("</ul></nav><div class=\"who\">");
        match who.partner {
            Some((id, name)) => {
                let _ = write!(out, "<span>{} <code>{}</code></span>", esc(name), esc(id));
            }
            None => out.push_str("<span>operator</span>"),
        }
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/console/sign-out\">{}<button type=\"submit\">Sign out</button></form></div>",
            csrf_field(who.csrf)
        );
    }
    let _ = write!(
        out,
        "</header><main id=\"main\"><h1>{}</h1>{body}</main></body></html>",
        esc(title)
    );
    out
}

/// The hidden field that carries the CSRF token in every form.
pub fn csrf_field(token: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(token))
}

/// The errors of form field `field`, as a paragraph its input points at
/// (`aria-describedby`, see [`invalid_marks`]); nothing without errors.
pub fn field_errors(field: &str, messages: Option<&Vec<String>>) -> String {
    match messages {
        None => String::new(),
        Some(messages) => format!(
            "<p class=\"field-error\" id=\"{field}-error\">{}</p>",
            messages.iter().map(|m| esc(m)).collect::<Vec<_>>().join("<br>")
        ),
    }
}

/// The attributes that mark the input of `field` invalid and point at its errors, when it has
/// some.
pub fn invalid_marks(field: &str, invalid: bool) -> String {
    if invalid {
        format!(" aria-invalid=\"true\" aria-describedby=\"{field}-error\"")
    } else {
        String::new()
    }
}

/// A notice above a page's content: `kind` is `ok` or `error`.
pub fn notice(kind: &str, text: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!("<p class=\"notice {kind}\" role=\"{role}\">{}</p>", esc(text))
}

/// A Unix-ms time as UTC text, `-` for none.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

/// A JSON value as indented text, for `<pre>` blocks.
pub fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        let shown = page("<b>", Nav::None, None, "");
        assert!(shown.contains("<h1>&lt;b&gt;</h1>") && !shown.contains("<b>"));
    }
}
