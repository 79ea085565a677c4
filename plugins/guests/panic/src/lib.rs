//! Test guest (transformer): panics, to test that a trapping plugin fails only its delivery.

wit_bindgen::generate!({ path: "../../../sdk/wit", world: "transformer" });

use exports::postwire::plugin::transform::{Event, Guest, Request};

struct Panic;

impl Guest for Panic {
    fn transform(_event: &Event, _request: Request, _config: String) -> Result<Request, String> {
        panic!("plugin panicked on purpose")
    }
}

export!(Panic);
