//! Postwire: postback (webhook) delivery for affiliate platforms.
//!
//! When an action inquiry is created or resolved, the partner's server receives a postback: an
//! HTTP request built from the partner's notification settings and the event's values.
//!
//! # Layout
//!
//! Modules are listed in the order a postback flows through them; `docs/architecture.md`
//! follows one event through them function by function.
//!
//! - [`api`]: the HTTP API (axum), every route behind a credential (operator token, ingest key
//!   or partner key) but the health probes and its OpenAPI 3.1 document (`/openapi.json`);
//!   [`serve`] runs it with the worker in one process; [`demo`] shows it all in one command;
//!   [`console`] is the same operations as web pages, at `/console`.
//! - [`event`]: the envelope the platform posts, validated into typed values (a fast path for
//!   valid envelopes, and validation that names every problem).
//! - [`catalogue`]: every placeholder a template may name (name, type, description, example).
//! - [`id`]: typed ids.
//! - [`settings`]: a partner's notification settings, validated and compiled on save; renders
//!   a [`request::Request`] for an event.
//! - [`render`]: the template compiler and renderer, with escaping decided per placeholder by
//!   where it stands (JSON string or value, XML, form, URL, header).
//! - [`request`]: the request as rendered and sent, and the headers Postwire writes itself.
//! - [`store`]: the durable store over its backends, with the delivery rules in one place;
//!   accepting an event and recording its deliveries is one transaction.
//! - [`worker`]: claims due deliveries and takes each through its stages, in this order: rate
//!   limit, render, one exchange with the receiver, record.
//! - [`ratelimit`]: `max_requests_per_sec` per endpoint (GCRA).
//! - [`exchange`]: one exchange in stages, transform, sign, send, classify, ending in the
//!   attempt to record; shared by the worker, test postbacks and plugin dry runs.
//! - [`plugins`]: a partner's transform and classify plugins in the pipeline (the wasm host
//!   is the `postwire-plugins` crate).
//! - [`sign`]: Standard Webhooks signatures.
//! - [`sealed`]: signing secrets encrypted at rest.
//! - [`send`]: the HTTP exchange, with timeouts, no redirects and the SSRF guard.
//! - [`classify`]: the default reading of a receiver's answer: success, retry, fail or disable.
//! - [`retry`]: the retry schedule.
//! - [`redact`]: what counts as a secret, hidden the same way in the attempt log, settings as
//!   shown, dry runs and the local runner.
//! - [`runner`]: `postwire plugin ...`, the tools of plugin authors.
//! - [`metrics`]: the Prometheus metrics the worker, the plugins and the store report.
//! - [`error`]: the engine's error type, and field-level validation errors.
//!
//! ```
//! use postwire::{event::Event, settings::NotificationSettings};
//!
//! let settings = NotificationSettings::from_json(r#"{
//!     "url": "https://partner.example/postbacks",
//!     "body_template": "{\"order\": \"{OrderId}\", \"amount\": {TransactionAmount}}"
//! }"#)?;
//! let event = Event::from_json(r#"{"id": "evt_1", "type": "action_inquiry.created",
//!     "partner_id": "ptn_1", "occurred_at": "2026-11-20T14:03:00Z",
//!     "data": {"ActionInquiryId": "42", "OrderId": "A-1", "TransactionAmount": 9.5}}"#)?;
//! let request = settings.render(&event);
//! assert_eq!(request.body, r#"{"order": "A-1", "amount": 9.5}"#);
//! # Ok::<(), postwire::Error>(())
//! ```

pub mod api;
pub mod catalogue;
pub mod classify;
pub mod console;
pub mod demo;
pub mod error;
pub mod event;
pub mod exchange;
pub mod id;
pub mod metrics;
pub mod plugins;
mod priority;
pub mod ratelimit;
pub mod redact;
pub mod render;
pub mod request;
pub mod retry;
pub mod runner;
pub mod sealed;
pub mod send;
pub mod serve;
pub mod settings;
pub mod sign;
pub mod store;
pub mod worker;

pub use error::Error;
