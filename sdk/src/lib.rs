//! Write Postwire plugins in plain Rust.
//!
//! A plugin transforms a postback before it is sent ([`Transform`]), classifies the receiver's
//! answer ([`Classify`]), or both. Implement the trait, add one export line, build for
//! `wasm32-wasip2`:
//!
//! ```no_run
//! use postwire_sdk::{Config, Event, Request, Transform, info};
//!
//! /// Adds the amount in cents to the JSON body and the order id as a header.
//! struct Enrich;
//!
//! impl Transform for Enrich {
//!     fn transform(event: &Event, mut request: Request, config: &Config) -> Result<Request, String> {
//!         let mut body: postwire_sdk::serde_json::Value = request.json()?;
//!         body["amount_cents"] = event.cents("TransactionAmount").into();
//!         request.set_json(&body)?;
//!         if let Some(order) = event.get("OrderId") {
//!             request.set_header("X-Order-Id", order);
//!         }
//!         let tag = config.str("tag").unwrap_or("none");
//!         info!("enriched {} (tag {tag})", event.id());
//!         Ok(request)
//!     }
//! }
//!
//! postwire_sdk::export_transform!(Enrich);
//! # fn main() {}
//! ```
//!
//! ```text
//! # Cargo.toml: [lib] crate-type = ["cdylib"], [dependencies] postwire-sdk
//! cargo build --release --target wasm32-wasip2   # target/wasm32-wasip2/release/<crate>.wasm
//! ```
//!
//! # Exports
//!
//! [`export_transform!`], [`export_classify!`] and [`export_both!`] make the crate's component
//! export exactly what it implements: `postwire:plugin/transform@0.2.0`,
//! `postwire:plugin/classify@0.2.0`, or both. Use one of them once per plugin, at the top level
//! of the crate. On targets other than `wasm32` they only check that the type implements the
//! trait, so a plugin's logic can be unit tested with `cargo test` on the host.
//!
//! # The sandbox
//!
//! A plugin runs with no filesystem, network or environment, clocks fixed at zero and seeded
//! randomness, within a fuel budget, a memory cap and a deadline. Its way out is [`log()`] (and
//! stderr, which the host keeps as logs too); on the host target [`log()`] prints to stderr.
//!
//! # Layout
//!
//! - `wit/`: the plugin contract (WIT), the only place it is written; the host and every guest
//!   read it.
//! - this crate: typed access to the event ([`Event`]), the request ([`Request`]), the response
//!   ([`Response`]) and `plugin_config` ([`Config`]), [`Verdict`] constructors and logging
//!   macros, over the bindings generated from that contract.

mod config;
mod event;
mod guest;
mod http;
mod logging;
pub mod parse;
mod verdict;

pub use config::Config;
pub use event::Event;
pub use http::{Request, Response};
pub use logging::{Level, log};
pub use verdict::Verdict;

/// The `serde_json` this crate uses, for plugins that want JSON values without a dependency of
/// their own.
pub use serde_json;

/// Turns a postback request into the one to send.
///
/// `event` is what the postback is about, `request` what the partner's template produced,
/// `config` the partner's `plugin_config`. An `Err` fails the delivery with its message (the
/// partner sees it), without retrying.
pub trait Transform {
    /// Returns the request to send.
    fn transform(event: &Event, request: Request, config: &Config) -> Result<Request, String>;
}

/// Decides what a receiver's answer means.
pub trait Classify {
    /// Reads the `response` to `request` and returns success, retry or fail.
    fn classify(request: &Request, response: &Response, config: &Config) -> Verdict;
}

/// Exports a type implementing [`Transform`]: the component exports
/// `postwire:plugin/transform@0.2.0` only.
///
/// Takes a type name in scope. Use it once, at the top level of the plugin crate:
///
/// ```no_run
/// # use postwire_sdk::{Config, Event, Request, Transform};
/// struct AddHeader;
///
/// impl Transform for AddHeader {
///     fn transform(_: &Event, mut request: Request, _: &Config) -> Result<Request, String> {
///         request.set_header("X-Partner", "acme");
///         Ok(request)
///     }
/// }
///
/// postwire_sdk::export_transform!(AddHeader);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_transform {
    ($ty:ident) => {
        const _: fn() = $crate::__private::implements_transform::<$ty>;
        #[cfg(target_arch = "wasm32")]
        $crate::__private::transformer::__export_transformer!(
            $ty with_types_in $crate::__private::transformer
        );
    };
}

/// Exports a type implementing [`Classify`]: the component exports
/// `postwire:plugin/classify@0.2.0` only.
///
/// ```no_run
/// # use postwire_sdk::{Classify, Config, Request, Response, Verdict};
/// struct StatusOnly;
///
/// impl Classify for StatusOnly {
///     fn classify(_: &Request, response: &Response, _: &Config) -> Verdict {
///         if response.is_success() {
///             Verdict::success()
///         } else {
///             Verdict::retry(format!("HTTP {}", response.status()))
///         }
///     }
/// }
///
/// postwire_sdk::export_classify!(StatusOnly);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_classify {
    ($ty:ident) => {
        const _: fn() = $crate::__private::implements_classify::<$ty>;
        #[cfg(target_arch = "wasm32")]
        $crate::__private::classifier::__export_classifier!(
            $ty with_types_in $crate::__private::classifier
        );
    };
}

/// Exports a type implementing both [`Transform`] and [`Classify`]: the component exports both
/// interfaces. (Two types can be exported instead, one with [`export_transform!`] and one with
/// [`export_classify!`].)
#[macro_export]
macro_rules! export_both {
    ($ty:ident) => {
        $crate::export_transform!($ty);
        $crate::export_classify!($ty);
    };
}

/// Not part of the API: the generated bindings and what the export macros need.
#[doc(hidden)]
pub mod __private {
    /// Bindings of the `transformer` world. With `pub_export_macro`, the custom section that
    /// declares the export is emitted by the export macro, in the plugin's crate: a component
    /// exports only what its crate asked for.
    pub mod transformer {
        wit_bindgen::generate!({
            path: "wit",
            world: "transformer",
            pub_export_macro: true,
            export_macro_name: "__export_transformer",
            type_section_suffix: "postwire-sdk-transformer",
        });
    }

    /// Bindings of the `classifier` world, sharing the types and `log` of `transformer`.
    pub mod classifier {
        wit_bindgen::generate!({
            path: "wit",
            world: "classifier",
            pub_export_macro: true,
            export_macro_name: "__export_classifier",
            type_section_suffix: "postwire-sdk-classifier",
            with: {
                "postwire:plugin/types@0.2.0": crate::__private::transformer::postwire::plugin::types,
                "postwire:plugin/log@0.2.0": crate::__private::transformer::postwire::plugin::log,
            },
        });
    }

    /// Compiles only if `T` implements [`Transform`](crate::Transform).
    pub fn implements_transform<T: crate::Transform>() {}

    /// Compiles only if `T` implements [`Classify`](crate::Classify).
    pub fn implements_classify<T: crate::Classify>() {}
}
