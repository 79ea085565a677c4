//! Test guest (transformer): returns the request unchanged, to measure the cost of a call.

wit_bindgen::generate!({ path: "../../../sdk/wit", world: "transformer" });

use exports::postwire::plugin::transform::{Event, Guest, Request};

struct Trivial;

impl Guest for Trivial {
    fn transform(_event: &Event, request: Request, _config: String) -> Result<Request, String> {
        Ok(request)
    }
}

export!(Trivial);
