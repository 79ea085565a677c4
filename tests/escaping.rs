//! No value can break out of its place: for hostile strings, render each body format, the URL and
//! a header, parse the result with a real parser, and find the original value in its place and
//! nothing else.

use std::collections::BTreeMap;

use postwire::event::Event;
use postwire::settings::{CompiledSettings, NotificationSettings};
use proptest::prelude::*;
use serde_json::json;

/// Strings rich in the characters that break formats, mixed with arbitrary Unicode.
fn hostile() -> impl Strategy<Value = String> {
    let special = prop_oneof![
        Just('"'),
        Just('\''),
        Just('\\'),
        Just('<'),
        Just('>'),
        Just('&'),
        Just('='),
        Just('#'),
        Just('%'),
        Just('?'),
        Just('/'),
        Just('+'),
        Just(';'),
        Just('{'),
        Just('}'),
        Just('\n'),
        Just('\r'),
        Just('\t'),
        Just(' '),
        Just(']'),
        Just('é'),
        Just('日'),
        Just('\u{1F600}'),
        Just('\u{0}'),
        Just('\u{1b}'),
    ];
    let chars = prop_oneof![4 => special, 2 => proptest::char::range('a', 'z'), 1 => any::<char>()];
    let random = prop::collection::vec(chars, 0..48).prop_map(|chars| chars.into_iter().collect::<String>());
    let classics = prop_oneof![
        Just("]]>".to_owned()),
        Just("}}".to_owned()),
        Just("\",\"admin\":true,\"x\":\"".to_owned()),
        Just("</t><admin/><t>".to_owned()),
        Just("x&admin=1#".to_owned()),
        Just("v\r\nX-Admin: 1".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
    ];
    prop_oneof![9 => random, 1 => classics]
}

fn event(a: &str, b: &str) -> Event {
    Event::from_value(&json!({
        "id": "evt_1", "type": "action_inquiry.created", "partner_id": "ptn_1",
        "occurred_at": "2026-11-20T14:03:00Z",
        "data": {"ActionInquiryId": "1", "InquiryNotes": a, "SubId1": b}
    }))
    .expect("hostile text is still valid text")
}

fn settings(json: serde_json::Value) -> CompiledSettings {
    NotificationSettings::validate(&json).expect("valid settings")
}

/// What XML can carry of `s`: characters XML 1.0 forbids become U+FFFD.
fn xml_visible(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// Text and CDATA of an element, and its attributes, as a conforming reader sees them.
#[derive(Debug, Default, PartialEq)]
struct Element {
    attributes: BTreeMap<String, String>,
    text: String,
}

fn parse_xml(body: &str) -> BTreeMap<String, Element> {
    use quick_xml::events::Event as Xml;
    let mut reader = quick_xml::Reader::from_str(body);
    let mut elements = BTreeMap::new();
    let mut current: Option<String> = None;
    loop {
        match reader
            .read_event()
            .unwrap_or_else(|e| panic!("invalid XML {e}: {body}"))
        {
            Xml::Start(start) => {
                let name = String::from_utf8(start.name().as_ref().to_vec()).unwrap();
                let mut element = Element::default();
                for attribute in start.attributes() {
                    let attribute = attribute.unwrap();
                    let key = String::from_utf8(attribute.key.as_ref().to_vec()).unwrap();
                    let value = attribute.unescape_value().unwrap().into_owned();
                    element.attributes.insert(key, value);
                }
                assert!(
                    elements.insert(name.clone(), element).is_none(),
                    "element {name} twice in {body}"
                );
                current = Some(name);
            }
            Xml::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().unwrap() {
                    Some(c) => c.to_string(),
                    None => {
                        let name = reference.decode().unwrap();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .expect("a predefined entity")
                            .to_owned()
                    }
                };
                if let Some(name) = &current {
                    elements.get_mut(name).unwrap().text.push_str(&resolved);
                }
            }
            Xml::Text(text) => {
                let text = text.decode().unwrap().into_owned();
                if let Some(name) = &current {
                    elements.get_mut(name).unwrap().text.push_str(&text);
                }
            }
            Xml::CData(data) => {
                let name = current.as_ref().expect("CDATA inside an element");
                elements
                    .get_mut(name)
                    .unwrap()
                    .text
                    .push_str(std::str::from_utf8(&data).unwrap());
            }
            Xml::End(_) => current = None,
            Xml::Eof => break,
            other => panic!("unexpected {other:?} in {body}"),
        }
    }
    elements
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn json_values_stay_in_place(a in hostile(), b in hostile()) {
        let compiled = settings(json!({
            "url": "https://p.example/",
            "body_template": "{\"a\":\"{InquiryNotes}\",\"b\":{SubId1},\"c\":\"<{{upper SubId1}}>\",\"d\":{{json InquiryNotes}},\"e\":{SubId2}}"
        }));
        let body = compiled.render(&event(&a, &b)).body;
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        prop_assert_eq!(parsed, json!({"a": a, "b": b, "c": format!("<{}>", b.to_uppercase()), "d": a, "e": null}));
    }

    #[test]
    fn xml_values_stay_in_place(a in hostile(), b in hostile()) {
        let compiled = settings(json!({
            "url": "https://p.example/", "body_format": "xml",
            "body_template": "<r a=\"{InquiryNotes}\" b='{SubId1}'><t>{InquiryNotes}</t><c><![CDATA[{SubId1}]]></c></r>"
        }));
        let body = compiled.render(&event(&a, &b)).body;
        let elements = parse_xml(&body);
        let mut expected = BTreeMap::new();
        expected.insert("r".to_owned(), Element {
            attributes: [("a".to_owned(), xml_visible(&a)), ("b".to_owned(), xml_visible(&b))].into(),
            text: String::new(),
        });
        expected.insert("t".to_owned(), Element { attributes: BTreeMap::new(), text: xml_visible(&a) });
        expected.insert("c".to_owned(), Element { attributes: BTreeMap::new(), text: xml_visible(&b) });
        prop_assert_eq!(elements, expected, "{}", body);
    }

    #[test]
    fn form_values_stay_in_place(a in hostile(), b in hostile()) {
        let compiled = settings(json!({
            "url": "https://p.example/", "body_format": "form",
            "body_template": "a={InquiryNotes}&b={SubId1}&c=fixed"
        }));
        let body = compiled.render(&event(&a, &b)).body;
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        prop_assert_eq!(pairs, vec![("a".into(), a), ("b".into(), b), ("c".into(), "fixed".into())]);
    }

    #[test]
    fn url_values_stay_in_place(a in hostile(), b in hostile()) {
        let compiled = settings(json!({
            "url": "https://p.example/x/{InquiryNotes}/y?q={SubId1}&r=1#{InquiryNotes}",
            "method": "GET"
        }));
        let rendered = compiled.render(&event(&a, &b)).url;
        let url = url::Url::parse(&rendered).unwrap();
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().unwrap().into_owned();
        prop_assert_eq!(url.host_str(), Some("p.example"));
        let segments: Vec<String> = url.path_segments().unwrap().map(decode).collect();
        // A segment of only dots would be resolved away; it is written so that it reads `%2E`.
        let segment = if a == "." || a == ".." { a.replace('.', "%2E") } else { a.clone() };
        prop_assert_eq!(segments, vec!["x".to_owned(), segment, "y".to_owned()]);
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        prop_assert_eq!(query, vec![("q".into(), b), ("r".into(), "1".into())]);
        prop_assert_eq!(decode(url.fragment().unwrap()), a);
    }

    #[test]
    fn header_values_stay_on_their_line(a in hostile(), b in hostile()) {
        let compiled = settings(json!({
            "url": "https://p.example/",
            "headers": {"X-Notes": "n:{InquiryNotes}", "X-Sub": "{SubId1}"}
        }));
        let request = compiled.render(&event(&a, &b));
        let single_line = |s: &str| s.chars().map(|c| if c.is_control() && c != '\t' { ' ' } else { c }).collect::<String>();
        prop_assert_eq!(&request.headers[1], &("X-Notes".to_owned(), format!("n:{}", single_line(&a))));
        prop_assert_eq!(&request.headers[2], &("X-Sub".to_owned(), single_line(&b)));
        for (_, value) in &request.headers {
            prop_assert!(!value.contains(['\r', '\n']));
            prop_assert!(http::HeaderValue::from_bytes(value.as_bytes()).is_ok());
        }
    }
}
