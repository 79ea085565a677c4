//! The generated `Guest` traits, implemented for every [`Transform`] and [`Classify`], and the
//! conversions between the generated types and this crate's.

use crate::__private::classifier::exports::postwire::plugin::classify;
use crate::__private::transformer::exports::postwire::plugin::transform;
use crate::__private::transformer::postwire::plugin::types as wit;
use crate::{Classify, Config, Event, Request, Response, Transform, Verdict};

impl<T: Transform> transform::Guest for T {
    fn transform(event: &wit::Event, request: wit::Request, config: String) -> Result<wit::Request, String> {
        // SAFETY: the event is dropped at the end of this call, and the plugin is only lent it.
        let event = unsafe { Event::lent(event) };
        let config = Config::new(config);
        T::transform(&event, request.into(), &config).map(Into::into)
    }
}

impl<T: Classify> classify::Guest for T {
    fn classify(request: wit::Request, response: wit::Response, config: String) -> wit::Verdict {
        let config = Config::new(config);
        T::classify(&request.into(), &response.into(), &config).into()
    }
}

impl From<wit::Request> for Request {
    fn from(request: wit::Request) -> Request {
        Request {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        }
    }
}

impl From<Request> for wit::Request {
    fn from(request: Request) -> wit::Request {
        wit::Request {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        }
    }
}

impl From<wit::Response> for Response {
    fn from(response: wit::Response) -> Response {
        Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
            duration_ms: response.duration_ms,
        }
    }
}

impl From<Verdict> for wit::Verdict {
    fn from(verdict: Verdict) -> wit::Verdict {
        match verdict {
            Verdict::Success => wit::Verdict::Success,
            Verdict::Retry { after_secs, reason } => wit::Verdict::Retry(wit::Retry { after_secs, reason }),
            Verdict::Fail(reason) => wit::Verdict::Fail(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Transform for Echo {
        fn transform(event: &Event, mut request: Request, config: &Config) -> Result<Request, String> {
            let tag = config.require::<String>("tag")?;
            request.set_header("X-Order", event.get("OrderId").unwrap_or("-"));
            request.set_header("X-Tag", tag);
            crate::info!("echo {}", event.id());
            Ok(request)
        }
    }

    impl Classify for Echo {
        fn classify(request: &Request, response: &Response, config: &Config) -> Verdict {
            match (response.status(), config.str("mode")) {
                (200, _) => Verdict::success(),
                (503, _) => Verdict::retry_after(30, request.url.clone()),
                (_, Some(mode)) => Verdict::fail(mode),
                _ => Verdict::retry("?"),
            }
        }
    }

    crate::export_both!(Echo);

    fn wit_request() -> wit::Request {
        wit::Request {
            method: "POST".into(),
            url: "https://p.example/".into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: "{}".into(),
        }
    }

    #[test]
    fn transform_converts_the_request_both_ways() {
        let event = Event::new("evt_1", "action_inquiry.created").with_field("OrderId", "ORD-1");
        let out = Echo::transform(&event, wit_request().into(), &Config::new(r#"{"tag":"t"}"#)).map(wit::Request::from);
        let out = out.unwrap();
        assert_eq!(
            out.headers,
            [
                ("Content-Type".to_string(), "application/json".to_string()),
                ("X-Order".to_string(), "ORD-1".to_string()),
                ("X-Tag".to_string(), "t".to_string()),
            ]
        );
        assert_eq!(
            (out.method.as_str(), out.url.as_str(), out.body.as_str()),
            ("POST", "https://p.example/", "{}")
        );
        let refused = Echo::transform(&event, wit_request().into(), &Config::new("{}")).unwrap_err();
        assert_eq!(refused, "plugin_config has no \"tag\"");
    }

    #[test]
    fn classify_goes_through_the_generated_trait() {
        let response = |status| wit::Response {
            status,
            headers: vec![],
            body: vec![],
            duration_ms: 5,
        };
        let classify =
            |status, config: &str| <Echo as classify::Guest>::classify(wit_request(), response(status), config.into());
        assert!(matches!(classify(200, "{}"), wit::Verdict::Success));
        assert!(matches!(
            classify(503, "{}"),
            wit::Verdict::Retry(wit::Retry { after_secs: Some(30), reason }) if reason == "https://p.example/"
        ));
        assert!(matches!(classify(400, r#"{"mode":"m"}"#), wit::Verdict::Fail(reason) if reason == "m"));
        assert!(matches!(
            classify(400, "{}"),
            wit::Verdict::Retry(wit::Retry { after_secs: None, .. })
        ));
    }
}
