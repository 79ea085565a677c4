//! Test guest (transformer): allocates memory without end, to test the host's memory cap.

wit_bindgen::generate!({ path: "../../../sdk/wit", world: "transformer" });

use std::hint::black_box;

use exports::postwire::plugin::transform::{Event, Guest, Request};

/// Allocated per step: 1 MiB.
const CHUNK_BYTES: usize = 1024 * 1024;

struct Grow;

impl Guest for Grow {
    fn transform(_event: &Event, _request: Request, _config: String) -> Result<Request, String> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            // Filled with ones, not zeros, so every page is written to.
            chunks.push(black_box(vec![1u8; CHUNK_BYTES]));
            black_box(&mut chunks);
        }
    }
}

export!(Grow);
