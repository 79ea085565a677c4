//! Test guest (transformer): loops forever, to test the host's fuel budget and deadline.

wit_bindgen::generate!({ path: "../../../sdk/wit", world: "transformer" });

use std::hint::black_box;

use exports::postwire::plugin::transform::{Event, Guest, Request};

struct Spin;

impl Guest for Spin {
    fn transform(_event: &Event, _request: Request, _config: String) -> Result<Request, String> {
        let mut counter = 0u64;
        loop {
            // black_box keeps the optimizer from proving the loop empty.
            counter = black_box(counter.wrapping_add(1));
        }
    }
}

export!(Spin);
