//! Test guest (transformer): returns a request whose body is 2 MiB, to test the host's output limits.

wit_bindgen::generate!({ path: "../../../sdk/wit", world: "transformer" });

use exports::postwire::plugin::transform::{Event, Guest, Request};

/// The size of the body returned.
const BODY_BYTES: usize = 2 * 1024 * 1024;

struct Bloat;

impl Guest for Bloat {
    fn transform(_event: &Event, mut request: Request, _config: String) -> Result<Request, String> {
        request.body = "x".repeat(BODY_BYTES);
        Ok(request)
    }
}

export!(Bloat);
