//! One exchange with a receiver, in the order the stages run:
//!
//! 1. [`transform`]: the rendered request through the partner's transform plugin, if it has
//!    one; a plugin that fails, or returns a request that cannot be sent (one that sets a
//!    header Postwire writes itself, for one), ends the exchange before anything is sent;
//! 2. [`sign`]: the Standard Webhooks headers, keyed with the partner's secret;
//! 3. send: one HTTP exchange through the [`Sender`] (timeouts, no redirects, the SSRF guard);
//! 4. [`classify()`]: the answer read by the partner's classify plugin, or by the default rules;
//! 5. the [`Attempt`] for the attempt log, with the request as sent, secrets
//!    [redacted](crate::redact::request).
//!
//! The delivery worker runs [`run`] for every postback, the test-postback endpoint for a sample
//! event, and plugin dry runs ([`dry_run`], for the API and the local runner) run the transform
//! and classify stages without sending, so all of them behave the same.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use postwire_plugins::types as wit;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::classify::{self, Outcome, Response, Verdict};
use crate::event::Event;
use crate::id::{AttemptId, DeliveryId, PartnerId};
use crate::plugins::{Plugins, config_text};
use crate::redact;
use crate::render::MAX_RENDERED_LEN;
use crate::request::Request;
use crate::send::{Answer, SendError, Sender};
use crate::settings::CompiledSettings;
use crate::sign::BadSecret;
use crate::store::{Attempt, AttemptVerdict, PluginSlot, now_ms};

/// Everything one exchange needs.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// Sends the request.
    pub sender: &'a Sender,
    /// Runs the partner's plugins.
    pub plugins: &'a Plugins,
    /// The partner the postback is for.
    pub partner_id: &'a PartnerId,
    /// The partner's settings: plugins, `plugin_config`, success and error responses.
    pub settings: &'a CompiledSettings,
    /// The partner's signing secret.
    pub secret: &'a str,
    /// After a rotation, the previous secret and until when (Unix ms) postbacks carry its
    /// signature after the new one's.
    pub previous_secret: Option<(&'a str, i64)>,
    /// The delivery (its `webhook-id`).
    pub delivery_id: &'a DeliveryId,
    /// The attempt's number, from 1.
    pub number: i64,
    /// A plugin that serves one of the settings' slots in place of the attached one: a
    /// canary's candidate, for the postbacks it serves.
    pub serve: Option<(PluginSlot, &'a str)>,
}

impl<'a> Context<'a> {
    /// The transform and classify stages as the partner's settings configure them.
    pub fn stages(&self) -> Stages<'a> {
        let options = self.settings.settings();
        let (transform_plugin, classify_plugin) = match self.serve {
            Some((PluginSlot::Transform, id)) => (Some(id), options.classify_plugin.as_deref()),
            Some((PluginSlot::Classify, id)) => (options.transform_plugin.as_deref(), Some(id)),
            None => (options.transform_plugin.as_deref(), options.classify_plugin.as_deref()),
        };
        // Rendered once per exchange, and only when a plugin will read it.
        let config = if transform_plugin.is_some() || classify_plugin.is_some() {
            Cow::Owned(config_text(options.plugin_config.as_ref()))
        } else {
            Cow::Borrowed("{}")
        };
        Stages {
            plugins: self.plugins,
            partner_id: self.partner_id,
            transform_plugin,
            classify_plugin,
            config,
            success_response: options.success_response.as_deref(),
            error_response: options.error_response.as_deref(),
        }
    }
}

/// What the transform and classify stages run with: the partner's settings for a postback
/// ([`Context::stages`]), or the plugin and configuration given to a dry run.
pub struct Stages<'a> {
    /// Runs the plugins.
    pub plugins: &'a Plugins,
    /// The partner whose lane the plugins run in.
    pub partner_id: &'a str,
    /// The transform plugin's id, if there is one.
    pub transform_plugin: Option<&'a str>,
    /// The classify plugin's id; the default rules classify without one.
    pub classify_plugin: Option<&'a str>,
    /// `plugin_config` as the JSON text plugins receive.
    pub config: Cow<'a, str>,
    /// For the default rules: text a successful answer's body must hold.
    pub success_response: Option<&'a str>,
    /// For the default rules: text that makes a 2xx answer a failure.
    pub error_response: Option<&'a str>,
}

/// The request after the transform stage.
#[derive(Debug)]
pub struct Transformed {
    /// The request to sign and send.
    pub request: Request,
    /// The transform plugin's report for the attempt log, when one ran.
    pub report: Option<Value>,
}

/// A transform that produced no request to send.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransformError {
    /// The plugin failed (trapped, ran out of fuel, refused) or returned a request that cannot
    /// be sent: the postback fails, since sending what the partner did not want is worse than
    /// not sending.
    #[error("transform plugin failed: {reason}")]
    Plugin {
        /// Why, in words.
        reason: String,
        /// The plugin's report for the attempt log.
        report: Value,
    },
    /// The plugin host failed (no sandbox slot, a broken artifact, a plugin not loadable): the
    /// postback is retried.
    #[error("transform plugin failed: {reason}")]
    Host {
        /// Why, in words.
        reason: String,
        /// The report for the attempt log.
        report: Value,
    },
}

impl TransformError {
    /// Whether the host, not the plugin, failed; such postbacks are retried.
    pub fn is_host_failure(&self) -> bool {
        matches!(self, TransformError::Host { .. })
    }

    /// The report for the attempt log.
    pub fn report(&self) -> &Value {
        match self {
            TransformError::Plugin { report, .. } | TransformError::Host { report, .. } => report,
        }
    }

    /// The report for the attempt log, taken.
    pub fn into_report(self) -> Value {
        match self {
            TransformError::Plugin { report, .. } | TransformError::Host { report, .. } => report,
        }
    }

    /// The attempt that records this failure: nothing was sent.
    pub fn into_attempt(self, delivery_id: &DeliveryId, number: i64) -> Attempt {
        let reason = self.to_string();
        let plugins = json!({ "transform": self.into_report() });
        unsent_attempt(delivery_id, number, &reason, Some(plugins))
    }
}

/// The transform stage: `rendered` through the transform plugin, if there is one.
pub async fn transform(
    stages: &Stages<'_>,
    event: &Arc<Event>,
    rendered: Request,
) -> Result<Transformed, TransformError> {
    let Some(id) = stages.transform_plugin else {
        return Ok(Transformed {
            request: rendered,
            report: None,
        });
    };
    let call = stages
        .plugins
        .transform(stages.partner_id, id, event, rendered, &stages.config)
        .await;
    match call.result {
        Ok(request) => Ok(Transformed {
            request,
            report: Some(call.report),
        }),
        Err(reason) if call.host_failure => Err(TransformError::Host {
            reason,
            report: call.report,
        }),
        Err(reason) => Err(TransformError::Plugin {
            reason,
            report: call.report,
        }),
    }
}

/// The sign stage: the three Standard Webhooks headers for an attempt started at `started_at`
/// (Unix ms).
pub fn sign(ctx: &Context<'_>, request: &Request, started_at: i64) -> Result<[(&'static str, String); 3], BadSecret> {
    let body = request.body.as_bytes();
    let mut headers = crate::sign::headers(ctx.secret, ctx.delivery_id, started_at / 1000, body)?;
    // Standard Webhooks lets one header carry several signatures, space-separated: receivers
    // that still hold the previous secret keep verifying until the grace period ends.
    if let Some((previous, until)) = ctx.previous_secret
        && started_at < until
    {
        let signature = crate::sign::signature(previous, ctx.delivery_id, started_at / 1000, body)?;
        headers[2].1.push(' ');
        headers[2].1.push_str(&signature);
    }
    Ok(headers)
}

/// What the classify stage decided.
#[derive(Debug)]
pub struct Classified {
    /// The verdict.
    pub verdict: Verdict,
    /// The classify plugin's report for the attempt log, when one ran.
    pub report: Option<Value>,
}

/// The classify stage: what the answer to `request` (or its absence) means, read by the
/// classify plugin if there is one and the receiver answered, else by the default rules. A
/// classify plugin that fails makes the attempt a retry: the postback reached the receiver,
/// only its meaning is unknown.
pub async fn classify(
    stages: &Stages<'_>,
    request: &Request,
    sent: Result<&Answer, &SendError>,
    elapsed: Duration,
) -> Classified {
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => {
            return Classified {
                verdict: classify::classify(Outcome::Transport(e), None, None, Utc::now()),
                report: None,
            };
        }
    };
    let Some(id) = stages.classify_plugin else {
        let response = Response {
            status: answer.status,
            headers: &answer.headers,
            body: &answer.body,
        };
        return Classified {
            verdict: classify::classify(
                Outcome::Response(response),
                stages.success_response,
                stages.error_response,
                Utc::now(),
            ),
            report: None,
        };
    };
    let response = wit::Response {
        status: answer.status,
        headers: answer.headers.clone(),
        body: answer.body.clone(),
        duration_ms: elapsed.as_millis().min(u32::MAX as u128) as u32,
    };
    let call = stages
        .plugins
        .classify(stages.partner_id, id, request, response, &stages.config)
        .await;
    let verdict = match call.result {
        Ok(wit::Verdict::Success) => Verdict::Success,
        Ok(wit::Verdict::Retry { after_secs, reason }) => Verdict::Retry {
            after: after_secs.map(|s| Duration::from_secs(s.into())),
            reason: format!("classify plugin: {reason}"),
        },
        Ok(wit::Verdict::Fail(reason)) => Verdict::Fail {
            reason: format!("classify plugin: {reason}"),
        },
        Err(e) => Verdict::Retry {
            after: None,
            reason: format!("classify plugin failed: {e}"),
        },
    };
    Classified {
        verdict,
        report: Some(call.report),
    }
}

/// An exchange's result: the attempt to record and what it means for the delivery.
#[derive(Debug)]
pub struct Exchanged {
    /// The attempt for the attempt log.
    pub attempt: Attempt,
    /// The verdict, with the receiver's `Retry-After` hint.
    pub verdict: Verdict,
}

/// The whole exchange for `event`: transform, then [`send`] (sign, send, classify).
/// `Err` when the transform produced no request; nothing was sent then.
pub async fn run(ctx: &Context<'_>, event: &Arc<Event>, rendered: Request) -> Result<Exchanged, TransformError> {
    if rendered.body.len() > MAX_RENDERED_LEN {
        // Rendering stopped part way: not even a transform may see a cut body.
        return Ok(too_long(ctx));
    }
    let stages = ctx.stages();
    let transformed = transform(&stages, event, rendered).await?;
    Ok(send(ctx, &stages, transformed).await)
}

/// The attempt of a request whose body is past [`MAX_RENDERED_LEN`]: failed, not sent, and not
/// retried, since the same event renders the same body every time.
fn too_long(ctx: &Context<'_>) -> Exchanged {
    let reason = format!(
        "the request body is over {MAX_RENDERED_LEN} bytes, the most a postback sends; the body \
         template repeats placeholders whose values are long: use each once"
    );
    Exchanged {
        attempt: unsent_attempt(ctx.delivery_id, ctx.number, &reason, None),
        verdict: Verdict::Fail { reason },
    }
}

/// Sign, send and classify a transformed request, and describe the attempt.
pub async fn send(ctx: &Context<'_>, stages: &Stages<'_>, transformed: Transformed) -> Exchanged {
    let Transformed { request, report } = transformed;
    let started_at = now_ms();
    let mut reports = serde_json::Map::new();
    if let Some(report) = report {
        reports.insert("transform".into(), report);
    }
    if request.body.len() > MAX_RENDERED_LEN {
        return too_long(ctx);
    }
    let signature = match sign(ctx, &request, started_at) {
        Ok(headers) => headers,
        Err(e) => {
            let reason = e.to_string();
            return Exchanged {
                attempt: unsent_attempt(ctx.delivery_id, ctx.number, &reason, None),
                verdict: Verdict::Fail { reason },
            };
        }
    };
    let (result, elapsed) = ctx.sender.send(&request, &signature).await;
    let classified = classify(stages, &request, result.as_ref(), elapsed).await;
    if let Some(report) = classified.report {
        reports.insert("classify".into(), report);
    }
    let verdict = classified.verdict;
    let (verdict_name, error) = describe(&verdict);
    let attempt = Attempt {
        id: AttemptId::generate(),
        delivery_id: ctx.delivery_id.to_owned(),
        number: ctx.number,
        started_at,
        duration_ms: elapsed.as_millis() as i64,
        request: redact::request(&request, &signature),
        response_status: result.as_ref().ok().map(|a| a.status.into()),
        response_headers: result
            .as_ref()
            .ok()
            .map(|a| serde_json::value::to_raw_value(&a.headers).expect("headers always serialize")),
        response_body: result
            .as_ref()
            .ok()
            .map(|a| storable(String::from_utf8_lossy(&a.body).into_owned())),
        verdict: verdict_name,
        error,
        plugins: (!reports.is_empty()).then(|| Value::Object(reports)),
        superseded: false,
    };
    Exchanged { attempt, verdict }
}

fn describe(verdict: &Verdict) -> (AttemptVerdict, Option<String>) {
    match verdict {
        Verdict::Success => (AttemptVerdict::Success, None),
        Verdict::Retry { reason, .. } => (AttemptVerdict::Retry, Some(storable(reason.clone()))),
        Verdict::Fail { reason } => (AttemptVerdict::Fail, Some(storable(reason.clone()))),
        Verdict::Disable { reason } => (AttemptVerdict::Disable, Some(storable(reason.clone()))),
    }
}

/// Text from a receiver or a plugin as the attempt log keeps it: a NUL character, which
/// PostgreSQL's text cannot hold, becomes U+FFFD, as undecodable bytes do. Otherwise one
/// receiver's answer would fail the recording of every attempt committed with it.
pub(crate) fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// A failed attempt in which nothing was sent (settings that no longer compile, an unreadable
/// event, a failed transform), with the plugins' reports if any ran.
pub fn unsent_attempt(delivery_id: &DeliveryId, number: i64, reason: &str, plugins: Option<Value>) -> Attempt {
    Attempt {
        id: AttemptId::generate(),
        delivery_id: delivery_id.clone(),
        number,
        started_at: now_ms(),
        duration_ms: 0,
        request: RawValue::NULL.to_owned(),
        response_status: None,
        response_headers: None,
        response_body: None,
        verdict: AttemptVerdict::Fail,
        error: Some(storable(reason.to_owned())),
        plugins,
        superseded: false,
    }
}

/// What a dry run is given.
pub struct DryRun<'a> {
    /// The event.
    pub event: &'a Arc<Event>,
    /// The request before the transform (normally the template's rendering).
    pub request: Request,
    /// A receiver's answer to classify, if any.
    pub response: Option<wit::Response>,
    /// `plugin_config` as JSON text.
    pub config: String,
}

/// Runs a plugin through the transform and classify stages as a postback would, without
/// sending anything: `transform` on the request, then `classify` on the response when one is
/// given. The JSON is what the dry-run endpoint and `postwire plugin run` print; requests in it
/// are [redacted](crate::redact::request_value) as the attempt log redacts them.
pub async fn dry_run(plugins: &Plugins, partner_id: &str, plugin_id: &str, input: DryRun<'_>) -> Result<Value, String> {
    let plugin = plugins.get(plugin_id).await?;
    let exports = plugin.exports();
    let mut out = json!({"plugin": plugin_id, "exports": exports.names()});
    let stages = Stages {
        plugins,
        partner_id,
        transform_plugin: exports.transform.then_some(plugin_id),
        classify_plugin: exports.classify.then_some(plugin_id),
        config: Cow::Borrowed(&input.config),
        success_response: None,
        error_response: None,
    };
    let mut request = input.request;
    if exports.transform {
        let shown = redact::request_value(&request);
        let (mut report, transformed) = match transform(&stages, input.event, request.clone()).await {
            Ok(transformed) => (transformed.report.unwrap_or_default(), Some(transformed.request)),
            Err(e) => (e.into_report(), None),
        };
        report["input"] = shown;
        if let Some(transformed) = transformed {
            report["output"] = redact::request_value(&transformed);
            request = transformed;
        }
        out["transform"] = report;
    }
    if exports.classify {
        match input.response {
            Some(response) => {
                let elapsed = Duration::from_millis(response.duration_ms.into());
                let answer = Answer {
                    status: response.status,
                    headers: response.headers,
                    body: response.body,
                };
                let classified = classify(&stages, &request, Ok(&answer), elapsed).await;
                out["classify"] = classified.report.unwrap_or_default();
            }
            None if !exports.transform => return Err("this plugin only classifies: give a response to classify".into()),
            None => {}
        }
    }
    Ok(out)
}
