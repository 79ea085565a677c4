//! Event parsing: the two ways the API reads an event (the direct reader for plain valid
//! envelopes, and the JSON tree that explains every problem) must agree, and an accepted event
//! must read back to itself from every text the engine stores for it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postwire::event::Event;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // The API refuses bodies that are not UTF-8 before reading them as an event; the tree
        // reader still gets them, as `serde_json::from_slice` does.
        let _ = serde_json::from_slice::<serde_json::Value>(data).map(|json| Event::from_value(&json));
        return;
    };
    let fast = Event::from_valid_json_kept(text);
    let tree = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .map(|json| Event::from_value(&json));
    if let Some(fast) = &fast {
        let tree = tree
            .as_ref()
            .expect("text the direct reader accepts is JSON")
            .as_ref()
            .expect("an envelope the direct reader accepts is valid");
        assert_eq!(fast, tree, "the two readers read different events");
        if let Some(sent) = fast.sent_text() {
            assert_eq!(sent, text);
        }
    }
    let Some(Ok(event)) = tree else { return };
    let compact = event.to_json_string();
    assert_eq!(compact, event.to_json().to_string(), "the two writers differ");
    let again = Event::from_json(&compact).expect("an event's own JSON reads back");
    assert_eq!(again, event, "an event's own JSON reads back to another event");
    assert_eq!(
        Event::from_valid_json(&compact).as_ref(),
        Some(&event),
        "the stored form is not read directly"
    );
});
