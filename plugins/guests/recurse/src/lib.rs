//! Test guest (transformer): recurses without end, to test that stack exhaustion traps cleanly.

wit_bindgen::generate!({ path: "../../../sdk/wit", world: "transformer" });

use std::hint::black_box;

use exports::postwire::plugin::transform::{Event, Guest, Request};

/// One level deeper, with a frame the optimizer must keep; never returns in practice.
#[inline(never)]
fn dive(depth: u64) -> u64 {
    // Never true, but the optimizer cannot know: keeps the recursion "conditional".
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let mut frame = [0u8; 256];
    frame[(depth % 256) as usize] = depth as u8;
    black_box(&mut frame);
    // Using the frame after the call rules out a tail call.
    dive(black_box(depth + 1)).wrapping_add(u64::from(frame[(depth % 7) as usize]))
}

struct Recurse;

impl Guest for Recurse {
    fn transform(_event: &Event, request: Request, _config: String) -> Result<Request, String> {
        black_box(dive(0));
        Ok(request)
    }
}

export!(Recurse);
