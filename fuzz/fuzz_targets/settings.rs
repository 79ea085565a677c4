//! Settings validation: anything may be sent; what is accepted is stored as JSON, read back and
//! compiled again for every postback, so it must come back the same and still compile, and it
//! must render the sample events of every type.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postwire::event::{Event, EventType};
use postwire::settings::NotificationSettings;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(compiled) = NotificationSettings::validate(&json) else {
        return;
    };
    let stored = serde_json::to_string(compiled.settings()).expect("settings serialize");
    let read: NotificationSettings = serde_json::from_str(&stored).expect("stored settings read back");
    assert_eq!(&read, compiled.settings(), "stored settings read back different");
    let again = read.compile().expect("stored settings compile again");
    for event_type in EventType::ALL {
        let sample = Event::sample(event_type, "ptn_fuzz");
        let request = again.render(&sample);
        assert_eq!(request.url, compiled.render(&sample).url);
        for (_, value) in &request.headers {
            assert!(
                http::HeaderValue::from_str(value).is_ok(),
                "accepted settings render a header value no request can carry: {value:?}"
            );
        }
    }
});
