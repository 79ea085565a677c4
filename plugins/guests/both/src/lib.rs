//! Test guest (plugin world): exports both transform (adds `X-Both: 1`) and classify (2xx is
//! success, anything else is retried).

wit_bindgen::generate!({ path: "../../../sdk/wit", world: "plugin" });

use exports::postwire::plugin::{classify, transform};
use postwire::plugin::types::{Event, Request, Response, Retry, Verdict};

struct Both;

impl transform::Guest for Both {
    fn transform(_event: &Event, mut request: Request, _config: String) -> Result<Request, String> {
        request.headers.push(("X-Both".to_string(), "1".to_string()));
        Ok(request)
    }
}

impl classify::Guest for Both {
    fn classify(_request: Request, response: Response, _config: String) -> Verdict {
        if (200..300).contains(&response.status) {
            Verdict::Success
        } else {
            Verdict::Retry(Retry {
                after_secs: None,
                reason: format!("HTTP {}", response.status),
            })
        }
    }
}

export!(Both);
