//! Test guest (transformer): reads every field of the event as many times as its config says
//! (`{"times": N}`, a bare number), then adds `X-Read: <fields>x<times>`. Read a million times,
//! it asks the host for far more than the input limit.

wit_bindgen::generate!({ path: "../../../sdk/wit", world: "transformer" });

use exports::postwire::plugin::transform::{Event, Guest, Request};

struct Reread;

impl Guest for Reread {
    fn transform(event: &Event, mut request: Request, config: String) -> Result<Request, String> {
        let times: u64 = config.trim().parse().map_err(|_| format!("config {config:?} is not a number"))?;
        let mut fields = 0;
        for _ in 0..times {
            fields = event.fields().len();
        }
        request.headers.push(("X-Read".to_string(), format!("{fields}x{times}")));
        Ok(request)
    }
}

export!(Reread);
