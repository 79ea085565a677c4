use super::*;
use crate::event::Event;
use serde_json::json;

fn errors(json: Json) -> String {
    NotificationSettings::validate(&json).unwrap_err().to_string()
}

#[test]
fn accepts_and_renders_json_settings() {
    let compiled = NotificationSettings::validate(&json!({
        "url": "https://partner.example/pb?inq={ActionInquiryId}",
        "body_template": "{\"order\":\"{OrderId}\",\"amount\":{TransactionAmount}}",
        "headers": {"X-Api-Key": "k-{MediaPartnerId}"},
        "max_requests_per_sec": 20
    }))
    .unwrap();
    let request = compiled.render(&Event::sample(EventType::ActionInquiryCreated, "p"));
    assert_eq!(request.method, Method::Post);
    assert_eq!(request.url, "https://partner.example/pb?inq=1000123");
    assert_eq!(
        request.headers,
        [
            ("Content-Type".into(), "application/json".into()),
            ("X-Api-Key".into(), "k-88123".into())
        ]
    );
    assert_eq!(request.body, r#"{"order":"ORD-99812","amount":149.90}"#);
}

#[test]
fn names_field_value_and_fix() {
    let all = errors(json!({
        "url": "ftp://x", "method": "DELETE", "body_format": "yaml", "headers": {"Bad Name": "x", "Host": "y"},
        "min_delay_secs": -1, "max_requests_per_sec": 0, "urll": 1
    }));
    for needle in [
        "urll: is not a settings field; did you mean url?",
        "method: \"DELETE\" is not supported; use GET, POST or PUT",
        "body_format: \"yaml\" is not a body format",
        "headers.Bad Name: \"Bad Name\" is not a valid header name",
        "headers.Host: \"Host\" is set by Postwire itself",
        "min_delay_secs: \"-1\" must be a whole number from 0 to 2592000",
        "max_requests_per_sec: \"0\" would never send anything",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in\n{all}");
    }
    assert!(errors(json!({"url": "ftp://x"})).contains("url: \"ftp://x\" must start with https:// or http://"));
}

#[test]
fn get_has_no_body() {
    let all = errors(json!({"url": "https://p.example/", "method": "get", "body_template": "x={OrderId}"}));
    assert!(
        all.contains("body_template: \"x={OrderId}\" must be empty for GET"),
        "{all}"
    );
}

#[test]
fn unknown_placeholders_are_refused_with_a_hint() {
    let all = errors(json!({"url": "https://p.example/", "body_template": "{\"o\":\"{OrderID}\"}"}));
    assert_eq!(
        all,
        "body_template: line 1, column 7: unknown placeholder {OrderID}; did you mean {OrderId}?"
    );
}

#[test]
fn bodies_must_stay_valid_documents() {
    let all = errors(json!({"url": "https://p.example/", "body_template": "{\"o\": {OrderId}"}));
    assert!(all.starts_with("body_template: renders an invalid JSON body"), "{all}");
    let all = errors(json!({"url": "https://p.example/", "body_format": "xml", "body_template": "<a>{OrderId}</b>"}));
    assert!(all.starts_with("body_template: renders an invalid XML body"), "{all}");
}

/// Found by the `render` fuzz target: an XML attribute value holding '<' (here a CDATA opener)
/// is refused, since no one reading of the template says where a placeholder after it stands.
#[test]
fn xml_attribute_values_hold_no_lt() {
    let all = errors(json!({
        "url": "https://p.example/",
        "body_format": "xml",
        "body_template": "<a n=\"x<![CDATA[{InquiryNotes}]]>\"/>"
    }));
    assert!(all.contains("body_template") && all.contains("attribute `n`"), "{all}");
    NotificationSettings::validate(&json!({
        "url": "https://p.example/",
        "body_format": "xml",
        "body_template": "<a n=\"x &lt; {InquiryNotes}\">{InquiryNotes}</a>"
    }))
    .expect("an escaped '<' is fine");
}

/// Found by the `render` fuzz target: a stray '&' in the template (here before a CDATA opener
/// missing its '<') read as a reference up to the first ';' the sample's values put after it,
/// so the settings were saved, and broke the document for a value with an '&' before its ';'.
#[test]
fn xml_references_are_real_references() {
    for template in [
        "<a>&![CDATA[{InquiryNotes}]]></a>",
        "<a>&a b;{InquiryNotes}</a>",
        "<a>&#xZZ;{OrderId}</a>",
        "<a>&{OrderId};</a>",
    ] {
        let all = errors(json!({"url": "https://p.example/", "body_format": "xml", "body_template": template}));
        assert!(
            all.starts_with("body_template: renders an invalid XML body"),
            "{template}: {all}"
        );
    }
    for template in [
        "<a>&amp;&lt;&#233;&#x1F600;&custom-name.x;{InquiryNotes}</a>",
        "<a><![CDATA[a & b]]></a>",
    ] {
        NotificationSettings::validate(
            &json!({"url": "https://p.example/", "body_format": "xml", "body_template": template}),
        )
        .unwrap_or_else(|e| panic!("{template}: {e:?}"));
    }
}

/// Found by the `settings` and `render` fuzz targets (fuzz/): a NUL or a DEL in a header value
/// was saved, and every postback then failed to be sent.
#[test]
fn header_values_hold_no_control_characters() {
    for value in ["a\u{0}b", "\u{7f}", "x\u{1b}[31m", "\u{85}"] {
        let all = errors(json!({"url": "https://p.example/", "headers": {"X-Key": value}}));
        assert!(
            all.contains("headers.X-Key") && all.contains("holds a control character"),
            "{value:?}: {all}"
        );
    }
    let compiled = NotificationSettings::validate(&json!({
        "url": "https://p.example/",
        "headers": {"X-Key": "tab\tand é"}
    }))
    .unwrap();
    let request = compiled.render(&Event::sample(EventType::ActionInquiryCreated, "p"));
    assert!(
        request
            .headers
            .iter()
            .any(|(name, value)| name == "X-Key" && value == "tab\tand é")
    );
}
