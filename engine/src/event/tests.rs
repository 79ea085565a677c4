use super::*;
use crate::catalogue::FieldType;
use serde_json::json;

fn envelope(data: Json) -> Json {
    json!({"id": "evt_1", "type": "action_inquiry.created", "partner_id": "ptn_1",
           "occurred_at": "2026-11-20T14:03:00Z", "data": data})
}

fn errors(json: Json) -> Vec<String> {
    Event::from_value(&json)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn reads_a_valid_event() {
    let event = Event::from_value(&envelope(json!({
        "ActionInquiryId": 1000123, "TransactionAmount": 149.9, "ExpectedPayout": "12.50",
        "InquiryType": "UNTRACKED", "TransactionDate": "2026-11-02T18:22:10+02:00", "SubId1": null
    })))
    .unwrap();
    assert_eq!(event.action_inquiry_id(), "1000123");
    assert_eq!(event.get("ExpectedPayout"), Some(&Value::Amount(Decimal::new(1250, 2))));
    assert_eq!(
        event.get("TransactionAmount"),
        Some(&Value::Amount(Decimal::new(1499, 1)))
    );
    assert_eq!(event.get("SubId1"), None);
    assert_eq!(event.get("EventId"), Some(&Value::Text("evt_1".into())));
    let roundtrip = Event::from_value(&event.to_json()).unwrap();
    assert_eq!(roundtrip, event);
}

#[test]
fn names_every_problem() {
    let errors = errors(json!({"id": "evt 1", "type": "action_inquiry.updated", "partner_id": 7,
        "occurred_at": "yesterday", "extra": 1,
        "data": {"OrderID": "1", "TransactionAmount": "12,50", "InquiryType": "LOST"}}));
    let all = errors.join("\n");
    for needle in [
        "extra: is not a field of the event envelope",
        "id: \"evt 1\" is not a valid id",
        "type: \"action_inquiry.updated\" is not a known event type",
        "partner_id: \"7\" has the wrong type",
        "occurred_at: \"yesterday\" is not a valid timestamp",
        "data.OrderID: is not a known field; did you mean OrderId?",
        "data.TransactionAmount: \"12,50\" is not an amount",
        "data.InquiryType: \"LOST\" is not one of UNTRACKED, INCORRECT, DECLINED",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn requires_fields_by_type() {
    let mut json = envelope(json!({"ActionInquiryId": "1"}));
    json["type"] = "action_inquiry.resolved".into();
    assert_eq!(
        errors(json),
        ["data.ResolutionStatus: is required; every action_inquiry.resolved event carries it"]
    );
    assert!(errors(envelope(json!({})))[0].starts_with("data.ActionInquiryId: is required"));
    assert!(errors(envelope(json!({"ActionInquiryId": null})))[0].starts_with("data.ActionInquiryId: is required"));
}

#[test]
fn refuses_envelope_fields_in_data() {
    let errors = errors(envelope(json!({"ActionInquiryId": "1", "EventId": "x"})));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("data.EventId: is set from the envelope"));
}

/// What the fast reading and writing of envelopes give is what the JSON-tree ones give.
mod fast_path {
    use proptest::prelude::*;

    use super::*;

    fn scalar() -> impl Strategy<Value = Json> {
        prop_oneof![
            Just(Json::Null),
            any::<u32>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            (-1e9f64..1e9).prop_map(Json::from),
            "[A-Z]{3}".prop_map(Json::from),
            "[0-9]{1,6}(\\.[0-9]{1,3})?".prop_map(Json::from),
            "2026-(0[1-9]|1[0-2])-1[0-9]T1[0-9]:00:00(Z|\\+02:00|\\.5Z)".prop_map(Json::from),
            prop::sample::select(vec!["UNTRACKED", "VALID", "DECLINED", "", "x\"\\\u{1}<&>é"]).prop_map(Json::from),
            any::<String>().prop_map(Json::from),
            Just(json!(true)),
            Just(json!([1])),
        ]
    }

    fn envelope() -> impl Strategy<Value = Json> {
        let names: Vec<&'static str> = CATALOGUE.iter().map(|p| p.name).chain(["Unknown", "orderid"]).collect();
        (
            prop::sample::select(vec!["evt_1", "evt 2", "", "a:b.c-d_e"]),
            prop::sample::select(vec!["action_inquiry.created", "action_inquiry.resolved", "other"]),
            prop::sample::select(vec!["2026-11-20T14:03:00Z", "2026-11-20T14:03:00.250+05:30", "today"]),
            prop::collection::vec((prop::sample::select(names), scalar()), 0..12),
            any::<bool>(),
        )
            .prop_map(|(id, ty, at, data, with_id)| {
                let mut data: Map<String, Json> = data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                if with_id {
                    data.insert("ActionInquiryId".into(), json!("1000123"));
                }
                json!({"id": id, "type": ty, "partner_id": "ptn_1", "occurred_at": at, "data": data})
            })
    }

    /// A value its field accepts.
    fn valid(ty: FieldType) -> BoxedStrategy<Json> {
        match ty {
            FieldType::Text => ".{0,40}".prop_map(Json::from).boxed(),
            FieldType::Id => prop_oneof![
                "[A-Za-z0-9\"\\ -]{1,20}".prop_map(Json::from),
                any::<u64>().prop_map(Json::from)
            ]
            .boxed(),
            FieldType::Amount => prop_oneof![
                "-?[0-9]{1,7}(\\.[0-9]{1,4})?".prop_map(Json::from),
                (-1e7f64..1e7).prop_map(Json::from),
                any::<i32>().prop_map(Json::from)
            ]
            .boxed(),
            FieldType::Currency => "[A-Z]{3}".prop_map(Json::from).boxed(),
            FieldType::Timestamp => {
                "20[0-9]{2}-0[1-9]-(1[0-9]|2[0-8])T[01][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]0[0-9]:[03]0)"
                    .prop_map(Json::from)
                    .boxed()
            }
            FieldType::Enum(words) => prop::sample::select(words.to_vec()).prop_map(Json::from).boxed(),
        }
    }

    /// A valid resolved event with any of the data fields.
    fn valid_envelope() -> impl Strategy<Value = Json> {
        let fields: Vec<BoxedStrategy<Option<(&'static str, Json)>>> = CATALOGUE
            .iter()
            .filter(|p| p.source == Source::Data)
            .map(|p| {
                let name = p.name;
                let required = matches!(name, "ActionInquiryId" | "ResolutionStatus");
                let value = valid(p.ty).prop_map(move |v| Some((name, v)));
                if required {
                    value.boxed()
                } else {
                    prop_oneof![Just(None), value].boxed()
                }
            })
            .collect();
        fields.prop_map(|fields| {
            let data: Map<String, Json> = fields.into_iter().flatten().map(|(k, v)| (k.to_owned(), v)).collect();
            json!({"id": "evt_1", "type": "action_inquiry.resolved", "partner_id": "ptn_1",
                   "occurred_at": "2026-11-20T14:03:00+01:00", "data": data})
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn reads_valid_events_fast(json in valid_envelope()) {
            // Both readings start from the text, as the API's do.
            let text = json.to_string();
            let slow = Event::from_value(&serde_json::from_str(&text).unwrap()).map_err(|e| e.to_string());
            prop_assert!(slow.is_ok(), "{:?}", slow);
            prop_assert_eq!(Event::from_valid_json(&text).ok_or_else(String::new), slow);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]
        #[test]
        fn agrees_with_the_tree(json in envelope()) {
            let text = json.to_string();
            let json: Json = serde_json::from_str(&text).unwrap();
            let slow = Event::from_value(&json);
            match Event::from_valid_json(&text) {
                Some(fast) => prop_assert_eq!(Ok(fast), slow.map_err(|e| e.to_string())),
                // Only nulls in data may send a valid event the long way.
                None => prop_assert!(slow.is_err() || text.contains("null"), "{}", text),
            }
            if let Ok(event) = Event::from_value(&json) {
                let canonical = event.to_json_string();
                prop_assert_eq!(&canonical, &event.to_json().to_string());
                prop_assert_eq!(Event::from_valid_json(&canonical), Some(event));
            }
        }
    }

    #[test]
    fn unusual_envelopes_take_the_long_way() {
        let valid = r#"{"id":"e","type":"action_inquiry.created","partner_id":"p","occurred_at":"2026-11-20T14:03:00Z","data":{"ActionInquiryId":"1"}}"#;
        assert!(Event::from_valid_json(valid).is_some());
        for text in [
            r#"{"id":"e","id":"e","type":"action_inquiry.created","partner_id":"p","occurred_at":"2026-11-20T14:03:00Z","data":{"ActionInquiryId":"1"}}"#,
            r#"{"id":"e","type":"action_inquiry.created","partner_id":"p","occurred_at":"2026-11-20T14:03:00Z","data":{"ActionInquiryId":"1","ActionInquiryId":"2"}}"#,
            r#"{"id":"e","type":"action_inquiry.created","partner_id":"p","occurred_at":"2026-11-20T14:03:00Z","data":{"ActionInquiryId":"1","EventId":"x"}}"#,
            r#"{"id":"e","type":"action_inquiry.created","partner_id":"p","occurred_at":"2026-11-20T14:03:00Z","data":{"ActionInquiryId":"1"},"x":1}"#,
            r#"{"id":"e","type":"action_inquiry.resolved","partner_id":"p","occurred_at":"2026-11-20T14:03:00Z","data":{"ActionInquiryId":"1"}}"#,
            r#"[]"#,
            r#"{"id":"e""#,
        ] {
            assert_eq!(Event::from_valid_json(text), None, "{text}");
        }
        // Escaped strings are read like any other.
        let escaped = valid.replace(r#""1""#, r#""\u0031\"""#);
        let event = Event::from_valid_json(&escaped).expect("valid");
        assert_eq!(event.action_inquiry_id(), "1\"");
    }
}

#[test]
fn samples_are_valid() {
    for ty in EventType::ALL {
        let sample = Event::sample(ty, "ptn_demo");
        assert_eq!(sample.event_type, ty);
    }
}
