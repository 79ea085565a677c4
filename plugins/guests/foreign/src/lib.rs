//! Test guest (transformer): a change that touches some postbacks only, as a new version of a
//! plugin does. For an event whose `Currency` is not `USD` it adds `X-Foreign-Currency: <code>`
//! and, when the body is a JSON object, `"foreign": true` to it; every other request comes back
//! unchanged.

wit_bindgen::generate!({ path: "../../../sdk/wit", world: "transformer" });

use exports::postwire::plugin::transform::{Event, Guest, Request};

struct Foreign;

impl Guest for Foreign {
    fn transform(event: &Event, mut request: Request, _config: String) -> Result<Request, String> {
        let Some(currency) = event.get("Currency").filter(|code| code != "USD") else {
            return Ok(request);
        };
        request.headers.push(("X-Foreign-Currency".to_string(), currency));
        if let Ok(serde_json::Value::Object(mut body)) = serde_json::from_str(&request.body) {
            body.insert("foreign".to_string(), serde_json::Value::Bool(true));
            request.body = serde_json::Value::Object(body).to_string();
        }
        Ok(request)
    }
}

export!(Foreign);
