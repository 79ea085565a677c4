//! Test guest (transformer): opens a TCP connection, so the component imports wasi:sockets and
//! the host must refuse it.

wit_bindgen::generate!({ path: "../../../sdk/wit", world: "transformer" });

use std::net::TcpStream;

use exports::postwire::plugin::transform::{Event, Guest, Request};

struct Socket;

impl Guest for Socket {
    fn transform(_event: &Event, mut request: Request, _config: String) -> Result<Request, String> {
        match TcpStream::connect("127.0.0.1:9") {
            Ok(_) => {
                request.headers.push(("X-Connected".to_string(), "1".to_string()));
                Ok(request)
            }
            Err(e) => Err(format!("connect to 127.0.0.1:9 failed: {e}")),
        }
    }
}

export!(Socket);
