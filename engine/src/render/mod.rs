//! The renderer: templates compiled once per settings, rendered once per postback.
//!
//! Compiling parses the text (`parse`), resolves every placeholder to its catalogue index,
//! checks helper calls (`helpers`) and decides, from the literal text around each placeholder,
//! the place it stands in and so how its value is escaped ([`escape::Context`]): inside a JSON
//! string or where a JSON value goes, XML text or CDATA, a form body, the URL after the host, a
//! header value. Rendering then only appends literals and escaped values to one buffer.
//!
//! The escaping depends on the position inside the body, which a general-purpose template
//! engine (that escapes every value the same way) cannot know; that is why Postwire compiles its
//! own small subset of handlebars instead of using one.

mod escape;
mod helpers;
mod parse;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use escape::Context;
pub use parse::Pos;

use crate::catalogue::{self, CATALOGUE};
use crate::event::Event;
use helpers::{Expr, Out};
use parse::{Ast, Piece};

/// The most a template renders to, in bytes. Placeholders repeated in a long template can
/// multiply an event's longest values (and their escapes) into hundreds of MiB; rendering stops
/// once past this, and a body past it is not sent.
pub const MAX_RENDERED_LEN: usize = 1 << 20;

/// How the body is written and escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// `application/json`.
    Json,
    /// `application/xml`.
    Xml,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `text/plain; charset=utf-8`, written as is.
    Text,
}

impl BodyFormat {
    /// The `Content-Type` sent with bodies of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            BodyFormat::Json => "application/json",
            BodyFormat::Xml => "application/xml",
            BodyFormat::Form => "application/x-www-form-urlencoded",
            BodyFormat::Text => "text/plain; charset=utf-8",
        }
    }
}

/// What a template produces, which decides how its placeholders are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The request body in the given format.
    Body(BodyFormat),
    /// The request URL: placeholders only after the host.
    Url,
    /// An HTTP header value.
    Header,
}

/// A syntax or name error in a template, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for TemplateError {}

#[derive(Debug, Clone)]
enum Segment {
    Literal(Box<str>),
    Value(Expr, Context),
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    segments: Vec<Segment>,
    /// Bytes of literal text, to size the output buffer in one allocation.
    literal_len: usize,
}

impl Template {
    /// Compiles `text` for `place`.
    pub fn compile(text: &str, place: Place) -> Result<Template, TemplateError> {
        let mut places = PlaceTracker::new(place);
        let mut segments = Vec::new();
        let mut literal_len = 0;
        for piece in parse::parse(text)? {
            match piece {
                Piece::Literal(literal) => {
                    places.advance(&literal);
                    literal_len += literal.len();
                    segments.push(Segment::Literal(literal.into_boxed_str()));
                }
                Piece::Expr(ast, pos) => {
                    let context = places.context().map_err(|message| error(pos, message))?;
                    segments.push(Segment::Value(expr(ast)?, context));
                }
            }
        }
        Ok(Template { segments, literal_len })
    }

    /// Appends the template rendered for `event` to `out`.
    /// Stops once `out` is past [`MAX_RENDERED_LEN`]: what it then holds is too long to send.
    pub fn render_into(&self, event: &Event, out: &mut String) {
        for segment in &self.segments {
            if out.len() > MAX_RENDERED_LEN {
                return;
            }
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Value(Expr::Field(field), context) => helpers::field(event, *field).write(*context, out),
                Segment::Value(expr, context) => expr.eval(event).write(*context, out),
            }
        }
    }

    /// The template rendered for `event`.
    pub fn render(&self, event: &Event) -> String {
        let mut out = String::with_capacity(self.literal_len + 16 * self.segments.len());
        self.render_into(event, &mut out);
        out
    }

    /// True when the template holds no placeholder.
    pub fn is_constant(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Literal(_)))
    }
}

fn error(pos: Pos, message: impl Into<String>) -> TemplateError {
    TemplateError {
        line: pos.line,
        column: pos.column,
        message: message.into(),
    }
}

fn expr(ast: Ast) -> Result<Expr, TemplateError> {
    match ast {
        Ast::Name(name, pos) => match catalogue::lookup(&name) {
            Some(field) => Ok(Expr::Field(field)),
            None if helpers::NAMES.split(", ").any(|h| h == name) => Err(error(
                pos,
                format!("the helper {name} needs an argument, e.g. {{{{{name} OrderId}}}}"),
            )),
            None => {
                let hint = match catalogue::suggest(&name) {
                    Some(known) => format!("did you mean {{{known}}}?"),
                    None => "run `postwire placeholders` to list the known names".into(),
                };
                Err(error(pos, format!("unknown placeholder {{{name}}}; {hint}")))
            }
        },
        Ast::Str(text) => Ok(Expr::Const(Out::Text(text.into()))),
        Ast::Int(int) => Ok(Expr::Const(Out::Int(int))),
        Ast::Call { helper, args, pos } => {
            let args = args.into_iter().map(expr).collect::<Result<Vec<_>, _>>()?;
            helpers::call(&helper, args).map_err(|message| error(pos, message))
        }
    }
}

/// Follows the literal text of a template to know where the next placeholder stands.
struct PlaceTracker {
    place: Place,
    json_in_string: bool,
    json_escaped: bool,
    xml: XmlState,
    url_seen: String,
}

/// Where the literal text of an XML template stands, read the way the XML reader that checks
/// bodies reads it (quick-xml): each construct ends exactly where that reader ends it, so a
/// placeholder's place is the place the reader finds its value in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum XmlState {
    /// Text between tags.
    Markup,
    /// Inside a tag, `quote` the quote of the attribute value it is in, if any. A `<![CDATA[`
    /// or `<!--` here is part of the tag (an attribute value), not a section of its own.
    Tag {
        quote: Option<u8>,
    },
    Cdata,
    Comment,
    /// A processing instruction (`<?xml ...?>`), which ends at the first `?>`, quotes or not
    /// (`<?>` included), not at a `>` alone.
    Pi,
    /// A declaration (`<!DOCTYPE ...>`), which ends at the `>` that balances every `<` after
    /// its start, quotes or not.
    Declaration {
        depth: u32,
    },
}

impl PlaceTracker {
    fn new(place: Place) -> Self {
        PlaceTracker {
            place,
            json_in_string: false,
            json_escaped: false,
            xml: XmlState::Markup,
            url_seen: String::new(),
        }
    }

    fn advance(&mut self, literal: &str) {
        match self.place {
            Place::Body(BodyFormat::Json) => {
                for b in literal.bytes() {
                    if self.json_escaped {
                        self.json_escaped = false;
                    } else if self.json_in_string && b == b'\\' {
                        self.json_escaped = true;
                    } else if b == b'"' {
                        self.json_in_string = !self.json_in_string;
                    }
                }
            }
            Place::Body(BodyFormat::Xml) => {
                let mut rest = literal;
                while !rest.is_empty() {
                    let (state, taken) = match self.xml {
                        XmlState::Markup if rest.starts_with("<![CDATA[") => (XmlState::Cdata, "<![CDATA[".len()),
                        XmlState::Markup if rest.starts_with("<!--") => (XmlState::Comment, "<!--".len()),
                        // The reader's `?>` may share its `?` with the `<?`.
                        XmlState::Markup if rest.starts_with("<?>") => (XmlState::Markup, 3),
                        XmlState::Markup if rest.starts_with("<?") => (XmlState::Pi, 2),
                        XmlState::Markup if rest.starts_with("<!") => (XmlState::Declaration { depth: 0 }, 2),
                        XmlState::Markup if rest.starts_with('<') => (XmlState::Tag { quote: None }, 1),
                        XmlState::Pi if rest.starts_with("?>") => (XmlState::Markup, 2),
                        XmlState::Declaration { depth } if rest.starts_with('<') => {
                            (XmlState::Declaration { depth: depth + 1 }, 1)
                        }
                        XmlState::Declaration { depth: 0 } if rest.starts_with('>') => (XmlState::Markup, 1),
                        XmlState::Declaration { depth } if rest.starts_with('>') => {
                            (XmlState::Declaration { depth: depth - 1 }, 1)
                        }
                        XmlState::Cdata if rest.starts_with("]]>") => (XmlState::Markup, "]]>".len()),
                        XmlState::Comment if rest.starts_with("-->") => (XmlState::Markup, "-->".len()),
                        XmlState::Tag { quote: None } if rest.starts_with('>') => (XmlState::Markup, 1),
                        XmlState::Tag { quote: None } if rest.starts_with(['"', '\'']) => (
                            XmlState::Tag {
                                quote: Some(rest.as_bytes()[0]),
                            },
                            1,
                        ),
                        XmlState::Tag { quote: Some(q) } if rest.as_bytes()[0] == q => {
                            (XmlState::Tag { quote: None }, 1)
                        }
                        state => (state, rest.chars().next().map_or(1, char::len_utf8)),
                    };
                    self.xml = state;
                    rest = &rest[taken..];
                }
            }
            Place::Url => self.url_seen.push_str(literal),
            _ => {}
        }
    }

    fn context(&self) -> Result<Context, String> {
        Ok(match self.place {
            Place::Body(BodyFormat::Json) if self.json_in_string => Context::JsonString,
            Place::Body(BodyFormat::Json) => Context::JsonValue,
            Place::Body(BodyFormat::Xml) => match self.xml {
                XmlState::Markup | XmlState::Tag { quote: Some(_) } => Context::Xml,
                // A value there could name the element or add to it (`?` after `<` opens an
                // instruction, `/` closes the tag), which no escaping prevents.
                XmlState::Tag { quote: None } => {
                    return Err(
                        "placeholders inside a tag may only stand in a quoted attribute value, like <a id=\"{OrderId}\">"
                            .into(),
                    );
                }
                XmlState::Cdata => Context::XmlCdata,
                XmlState::Comment => {
                    return Err("placeholders inside XML comments are not allowed; move it out of <!-- -->".into());
                }
                XmlState::Pi | XmlState::Declaration { .. } => {
                    return Err(
                        "placeholders inside <?...?> or <!...> declarations are not allowed; move it into an element"
                            .into(),
                    );
                }
            },
            Place::Body(BodyFormat::Form) => Context::Form,
            Place::Body(BodyFormat::Text) => Context::Text,
            Place::Header => Context::Header,
            Place::Url => {
                let after_host = self
                    .url_seen
                    .find("://")
                    .map(|at| &self.url_seen[at + 3..])
                    .filter(|rest| rest.contains(['/', '?', '#']));
                match after_host {
                    None => {
                        return Err("placeholders may only stand in the URL's path, query or fragment: the scheme and host are fixed so a postback cannot be sent elsewhere".into());
                    }
                    Some(rest) if rest.contains(['?', '#']) => Context::Url,
                    Some(_) => Context::UrlPath,
                }
            }
        })
    }
}

/// Every placeholder name in the catalogue, for listings.
pub fn placeholder_names() -> impl Iterator<Item = &'static str> {
    CATALOGUE.iter().map(|p| p.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventType};

    fn event() -> Event {
        Event::from_value(&serde_json::json!({
            "id": "evt_1", "type": "action_inquiry.created", "partner_id": "ptn_1",
            "occurred_at": "2026-11-20T14:03:00+01:00",
            "data": {"ActionInquiryId": "42", "OrderId": "O\"1", "TransactionAmount": "149.905",
                     "Currency": "USD", "InquiryNotes": "a <b> & c"}
        }))
        .unwrap()
    }

    fn render(text: &str, place: Place) -> String {
        Template::compile(text, place).unwrap().render(&event())
    }

    fn compile_error(text: &str, place: Place) -> String {
        Template::compile(text, place).unwrap_err().to_string()
    }

    const JSON: Place = Place::Body(BodyFormat::Json);

    #[test]
    fn rendering_stops_soon_after_the_cap() {
        let mut event = event().to_json();
        event["data"]["InquiryNotes"] = "\u{1}".repeat(4096).into();
        let event = Event::from_value(&event).unwrap();
        let template = format!("{{\"n\": \"{}\"}}", "{InquiryNotes}".repeat(4000));
        let out = Template::compile(&template, JSON).unwrap().render(&event);
        // Each placeholder adds 4096 six-byte escapes; all 4000 would make 98 MB.
        assert!(out.len() > MAX_RENDERED_LEN, "{}", out.len());
        assert!(out.len() <= MAX_RENDERED_LEN + 6 * 4096, "{}", out.len());
    }

    #[test]
    fn json_braces_are_not_placeholders() {
        let out = render(
            r#"{"order":"{OrderId}","amount":{TransactionAmount},"sub":{SubId1},"n":{{InquiryNotes}}}"#,
            JSON,
        );
        assert_eq!(out, r#"{"order":"O\"1","amount":149.905,"sub":null,"n":"a <b> & c"}"#);
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
    }

    #[test]
    fn helpers_format_values() {
        let out = render(
            "{{amount TransactionAmount 2}} {{cents TransactionAmount}} {{iso8601 EventDate}} {{unix EventDate}} \
             {{date EventDate \"%Y/%m/%d %H\"}} {{default SubId1 \"none\"}} {{upper (default SubId2 \"x\")}} \
             {{lower Currency}} {{urlencode OrderId}} {{json OrderId}} {{json SubId1}} [{{SubId1}}]",
            Place::Body(BodyFormat::Text),
        );
        assert_eq!(
            out,
            "149.91 14991 2026-11-20T13:03:00Z 1795179780 2026/11/20 13 none X usd O%221 \"O\\\"1\" null []"
        );
    }

    #[test]
    fn default_keeps_json_numbers_numbers() {
        let out = render(
            r#"{"a":{{default FinalPayout 0}},"b":{{amount (default FinalPayout "1.5") 2}}}"#,
            JSON,
        );
        assert_eq!(out, r#"{"a":0,"b":1.50}"#);
    }

    /// Found by the `render` fuzz target: a `<![CDATA[` inside an attribute value opens no
    /// section, so a value there is escaped as an attribute value and cannot close it.
    #[test]
    fn a_cdata_opener_inside_an_attribute_value_is_part_of_the_value() {
        let xml = Place::Body(BodyFormat::Xml);
        let out = render("<a n=\"x<![CDATA[{InquiryNotes}]]>\" m='<!--{InquiryNotes}'/>", xml);
        assert_eq!(
            out,
            "<a n=\"x<![CDATA[a &lt;b&gt; &amp; c]]>\" m='<!--a &lt;b&gt; &amp; c'/>"
        );
        let out = render(
            "<?xml version=\"1.0\"?><a>{InquiryNotes}<![CDATA[{InquiryNotes}]]></a>",
            xml,
        );
        assert_eq!(
            out,
            "<?xml version=\"1.0\"?><a>a &lt;b&gt; &amp; c<![CDATA[a <b> & c]]></a>"
        );
        // A declaration ends at its `?>` whatever quotes it holds, as an XML reader reads it.
        let out = render("<?xml version=\"1.0?><a n=\"<![CDATA[{InquiryNotes}\"/>", xml);
        assert_eq!(out, "<?xml version=\"1.0?><a n=\"<![CDATA[a &lt;b&gt; &amp; c\"/>");
        assert!(compile_error("<?pi {OrderId}?><a/>", xml).contains("declarations"));
        assert!(compile_error("<!DOCTYPE a [{OrderId}]><a/>", xml).contains("declarations"));
    }

    /// Found by the `render` fuzz target: each construct ends where the XML reader ends it, so a
    /// placeholder after a `>` inside an instruction is still inside it, and refused.
    #[test]
    fn declarations_end_where_the_reader_ends_them() {
        let xml = Place::Body(BodyFormat::Xml);
        // An instruction does not end at a `>` alone: this CDATA section is instruction text.
        assert!(compile_error("<?pi </a> <![CDATA[{OrderId}]]> ?><a/>", xml).contains("declarations"));
        // `<?>` is a whole instruction, and a declaration ends where its `<` and `>` balance.
        assert_eq!(render("<?><a>{OrderId}</a>", xml), "<?><a>O&quot;1</a>");
        assert!(compile_error("<!DOCTYPE a [<!ENTITY e \"x\">]{OrderId}><a/>", xml).contains("declarations"));
        assert_eq!(
            render("<!DOCTYPE a [<!ENTITY e \"x\">]><a>{OrderId}</a>", xml),
            "<!DOCTYPE a [<!ENTITY e \"x\">]><a>O&quot;1</a>"
        );
    }

    #[test]
    fn xml_places() {
        let xml = Place::Body(BodyFormat::Xml);
        let out = render(
            "<a n=\"{InquiryNotes}\">{InquiryNotes}<![CDATA[{InquiryNotes}]]></a>",
            xml,
        );
        assert_eq!(
            out,
            "<a n=\"a &lt;b&gt; &amp; c\">a &lt;b&gt; &amp; c<![CDATA[a <b> & c]]></a>"
        );
        assert!(compile_error("<!-- {OrderId} -->", xml).contains("XML comments"));
        // A value could turn `<` into an instruction or close the tag itself.
        assert!(compile_error("<a><{OrderId}/></a>", xml).contains("quoted attribute value"));
        assert!(compile_error("<a {OrderId}=\"1\"/>", xml).contains("quoted attribute value"));
        assert!(compile_error("<a n=\"1\" {OrderId}/>", xml).contains("quoted attribute value"));
    }

    #[test]
    fn url_placeholders_only_after_the_host() {
        assert_eq!(
            render("https://p.example/cb/{OrderId}?a={InquiryNotes}", Place::Url),
            "https://p.example/cb/O%221?a=a%20%3Cb%3E%20%26%20c"
        );
        assert!(compile_error("https://{SubId1}.example/", Place::Url).contains("path, query or fragment"));
        assert!(compile_error("{TrackingLink}", Place::Url).contains("path, query or fragment"));
    }

    #[test]
    fn unknown_names_get_suggestions_and_positions() {
        assert_eq!(
            compile_error("{\n  \"order\": \"{OrderID}\"\n}", JSON),
            "line 2, column 13: unknown placeholder {OrderID}; did you mean {OrderId}?"
        );
        assert_eq!(
            compile_error("x {{ Ordr }}", JSON),
            "line 1, column 6: unknown placeholder {Ordr}; did you mean {OrderId}?"
        );
        assert!(compile_error("{{amount OrderId}}", JSON).contains("amount needs an amount, but its argument is text"));
        assert!(compile_error("{{date EventDate \"%Q\"}}", JSON).contains("not a valid strftime pattern"));
        assert!(compile_error("{{frobnicate OrderId}}", JSON).contains("unknown helper frobnicate"));
        assert!(compile_error("{{upper}}", JSON).contains("needs an argument"));
    }

    #[test]
    fn samples_render_every_field() {
        let sample = Event::sample(EventType::ActionInquiryResolved, "ptn_1");
        let all: String = placeholder_names().map(|n| format!("{{{n}}}|")).collect();
        let out = Template::compile(&all, Place::Body(BodyFormat::Text))
            .unwrap()
            .render(&sample);
        assert!(!out.contains("||"), "{out}");
    }
}
