//! Test guest (transformer): built against version 0.1.0 of the contract (a copy of it, in
//! `wit/`), as a plugin uploaded before the contract changed is. The host must refuse it, naming
//! the version to rebuild with.

wit_bindgen::generate!({ path: "wit", world: "transformer" });

use exports::postwire::plugin::transform::{Event, Guest, Request};

struct Old;

impl Guest for Old {
    fn transform(_event: Event, request: Request, _config: String) -> Result<Request, String> {
        Ok(request)
    }
}

export!(Old);
