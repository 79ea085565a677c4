//! Helpers usable in `{{helper ...}}` expressions, checked when the template is compiled.
//!
//! | helper | example | result |
//! |---|---|---|
//! | `amount X [decimals]` | `{{amount TransactionAmount 2}}` | `149.90`: fixed decimals (default 2), half away from zero |
//! | `cents X` | `{{cents TransactionAmount}}` | `14990`: minor units as an integer |
//! | `iso8601 X` | `{{iso8601 EventDate}}` | `2026-11-20T14:03:00Z`, in UTC |
//! | `unix X` | `{{unix EventDate}}` | `1795183380`: seconds since 1970 |
//! | `date X "pattern"` | `{{date EventDate "%Y-%m-%d"}}` | strftime pattern, in UTC |
//! | `default X fallback` | `{{default SubId1 "none"}}` | X unless absent or empty |
//! | `upper X` / `lower X` | `{{upper Currency}}` | case-converted text |
//! | `urlencode X` | `{{urlencode TrackingLink}}` | percent-encoded (for text bodies) |
//! | `json X` | `{{json InquiryNotes}}` | X as a JSON value (a quoted string, a number or `null`) |

use std::borrow::Cow;
use std::fmt::Write;
use std::str::FromStr;

use chrono::format::Item;
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

use super::escape;
use crate::catalogue::{CATALOGUE, FieldId, FieldType};
use crate::event::{Event, Value};

/// A compiled expression: names resolved to catalogue indexes, patterns parsed, types checked.
#[derive(Debug, Clone)]
pub(super) enum Expr {
    Field(FieldId),
    Const(Out<'static>),
    Amount(Box<Expr>, u32),
    Cents(Box<Expr>),
    Iso8601(Box<Expr>),
    Unix(Box<Expr>),
    Date(Box<Expr>, Vec<Item<'static>>),
    Default(Box<Expr>, Box<Expr>),
    Upper(Box<Expr>),
    Lower(Box<Expr>),
    UrlEncode(Box<Expr>),
    Json(Box<Expr>),
}

/// The static type of an expression, checked against what helpers accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    Amount,
    Int,
    Timestamp,
    Json,
}

impl Kind {
    fn of_field(field: FieldId) -> Kind {
        match CATALOGUE[field].ty {
            FieldType::Amount => Kind::Amount,
            FieldType::Timestamp => Kind::Timestamp,
            _ => Kind::Text,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Amount => "an amount",
            Kind::Int => "an integer",
            Kind::Timestamp => "a timestamp",
            Kind::Json => "JSON",
        }
    }
}

/// A value produced while rendering.
#[derive(Debug, Clone)]
pub(super) enum Out<'a> {
    Absent,
    Text(Cow<'a, str>),
    Amount(Decimal),
    Int(i64),
    Timestamp(DateTime<FixedOffset>),
    /// Already a valid JSON text (from the `json` helper).
    Json(String),
}

impl Out<'_> {
    /// True for absent values and empty text, which `default` replaces.
    fn is_blank(&self) -> bool {
        match self {
            Out::Absent => true,
            Out::Text(text) => text.is_empty(),
            _ => false,
        }
    }

    /// Writes the value's text form, escaped for `context`.
    pub(super) fn write(&self, context: escape::Context, out: &mut String) {
        if context == escape::Context::JsonValue {
            return self.write_json(out);
        }
        match self {
            Out::Absent => {}
            Out::Text(text) => escape::text(context, text, out),
            Out::Json(json) => escape::text(context, json, out),
            _ => escape::text(context, &self.to_text(), out),
        }
    }

    /// Writes a complete JSON value.
    fn write_json(&self, out: &mut String) {
        match self {
            Out::Absent => out.push_str("null"),
            Out::Amount(amount) => {
                let _ = write!(out, "{amount}");
            }
            Out::Int(int) => {
                let _ = write!(out, "{int}");
            }
            Out::Json(json) => out.push_str(json),
            Out::Text(text) => {
                out.push('"');
                escape::json_string_content(text, out);
                out.push('"');
            }
            Out::Timestamp(_) => {
                out.push('"');
                out.push_str(&self.to_text());
                out.push('"');
            }
        }
    }

    fn to_text(&self) -> Cow<'_, str> {
        match self {
            Out::Absent => Cow::Borrowed(""),
            Out::Text(text) => Cow::Borrowed(text),
            Out::Json(json) => Cow::Borrowed(json),
            Out::Amount(amount) => Cow::Owned(amount.to_string()),
            Out::Int(int) => Cow::Owned(int.to_string()),
            Out::Timestamp(at) => Cow::Owned(crate::event::format_timestamp(at)),
        }
    }

    fn into_owned(self) -> Out<'static> {
        match self {
            Out::Text(text) => Out::Text(Cow::Owned(text.into_owned())),
            Out::Absent => Out::Absent,
            Out::Amount(a) => Out::Amount(a),
            Out::Int(i) => Out::Int(i),
            Out::Timestamp(t) => Out::Timestamp(t),
            Out::Json(j) => Out::Json(j),
        }
    }
}

/// Reads a field of the event as a rendering value, borrowing text.
pub(super) fn field(event: &Event, field: FieldId) -> Out<'_> {
    match event.value(field) {
        None => Out::Absent,
        Some(Value::Text(text)) => Out::Text(Cow::Borrowed(text)),
        Some(Value::Amount(amount)) => Out::Amount(*amount),
        Some(Value::Timestamp(at)) => Out::Timestamp(*at),
    }
}

impl Expr {
    /// The static type of the expression's result.
    pub(super) fn kind(&self) -> Kind {
        match self {
            Expr::Field(field) => Kind::of_field(*field),
            Expr::Const(Out::Amount(_)) | Expr::Amount(..) => Kind::Amount,
            Expr::Const(Out::Int(_)) | Expr::Cents(_) | Expr::Unix(_) => Kind::Int,
            Expr::Const(Out::Timestamp(_)) => Kind::Timestamp,
            Expr::Const(Out::Json(_)) | Expr::Json(_) => Kind::Json,
            Expr::Const(_)
            | Expr::Iso8601(_)
            | Expr::Date(..)
            | Expr::Upper(_)
            | Expr::Lower(_)
            | Expr::UrlEncode(_) => Kind::Text,
            Expr::Default(value, _) => value.kind(),
        }
    }

    /// Evaluates the expression for one event.
    pub(super) fn eval<'e>(&self, event: &'e Event) -> Out<'e> {
        match self {
            Expr::Field(id) => field(event, *id),
            Expr::Const(value) => value.clone(),
            Expr::Amount(value, decimals) => match value.eval(event) {
                Out::Amount(amount) => {
                    let mut rounded = amount.round_dp_with_strategy(*decimals, RoundingStrategy::MidpointAwayFromZero);
                    rounded.rescale(*decimals);
                    Out::Amount(rounded)
                }
                Out::Int(int) => {
                    let mut amount = Decimal::from(int);
                    amount.rescale(*decimals);
                    Out::Amount(amount)
                }
                _ => Out::Absent,
            },
            Expr::Cents(value) => match value.eval(event) {
                Out::Amount(amount) => {
                    let cents = (amount * Decimal::ONE_HUNDRED)
                        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
                    i64::try_from(cents).map(Out::Int).unwrap_or(Out::Absent)
                }
                Out::Int(int) => int.checked_mul(100).map(Out::Int).unwrap_or(Out::Absent),
                _ => Out::Absent,
            },
            Expr::Iso8601(value) => match value.eval(event) {
                Out::Timestamp(at) => Out::Text(Cow::Owned(
                    at.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true),
                )),
                _ => Out::Absent,
            },
            Expr::Unix(value) => match value.eval(event) {
                Out::Timestamp(at) => Out::Int(at.timestamp()),
                _ => Out::Absent,
            },
            Expr::Date(value, items) => match value.eval(event) {
                Out::Timestamp(at) => Out::Text(Cow::Owned(
                    at.with_timezone(&Utc).format_with_items(items.iter()).to_string(),
                )),
                _ => Out::Absent,
            },
            Expr::Default(value, fallback) => {
                let value = value.eval(event);
                if value.is_blank() { fallback.eval(event) } else { value }
            }
            Expr::Upper(value) => map_text(value.eval(event), str::to_uppercase),
            Expr::Lower(value) => map_text(value.eval(event), str::to_lowercase),
            Expr::UrlEncode(value) => map_text(value.eval(event), escape::url_component),
            Expr::Json(value) => {
                let mut json = String::new();
                value.eval(event).write_json(&mut json);
                Out::Json(json)
            }
        }
    }
}

fn map_text<'e>(value: Out<'e>, f: impl Fn(&str) -> String) -> Out<'e> {
    match value {
        Out::Absent => Out::Absent,
        other => Out::Text(Cow::Owned(f(&other.to_text()))),
    }
}

/// Names of every helper, for error messages.
pub(super) const NAMES: &str = "amount, cents, iso8601, unix, date, default, upper, lower, urlencode, json";

/// Builds a helper call from compiled arguments, or says what is wrong with it.
pub(super) fn call(helper: &str, mut args: Vec<Expr>) -> Result<Expr, String> {
    let arity = |min: usize, max: usize, usage: &str| -> Result<(), String> {
        if args.len() < min || args.len() > max {
            Err(format!("{helper} takes {}; write {{{{{usage}}}}}", plural(min, max)))
        } else {
            Ok(())
        }
    };
    let needs = |arg: &Expr, kinds: &[Kind], usage: &str| -> Result<(), String> {
        if kinds.contains(&arg.kind()) {
            Ok(())
        } else {
            Err(format!(
                "{helper} needs {}, but its argument is {}; write {{{{{usage}}}}}",
                kinds[0].describe(),
                arg.kind().describe()
            ))
        }
    };
    let expr = match helper {
        "amount" => {
            arity(1, 2, "amount TransactionAmount 2")?;
            needs(&args[0], &[Kind::Amount, Kind::Int], "amount TransactionAmount 2")?;
            let decimals = match args.get(1) {
                None => 2,
                Some(Expr::Const(Out::Int(n))) if (0..=12).contains(n) => *n as u32,
                Some(_) => {
                    return Err("amount's second argument is the number of decimals, an integer from 0 to 12".into());
                }
            };
            Expr::Amount(Box::new(args.swap_remove(0)), decimals)
        }
        "cents" => {
            arity(1, 1, "cents TransactionAmount")?;
            needs(&args[0], &[Kind::Amount, Kind::Int], "cents TransactionAmount")?;
            Expr::Cents(Box::new(args.swap_remove(0)))
        }
        "iso8601" | "unix" => {
            arity(1, 1, &format!("{helper} EventDate"))?;
            needs(&args[0], &[Kind::Timestamp], &format!("{helper} EventDate"))?;
            let value = Box::new(args.swap_remove(0));
            if helper == "unix" {
                Expr::Unix(value)
            } else {
                Expr::Iso8601(value)
            }
        }
        "date" => {
            arity(2, 2, "date EventDate \"%Y-%m-%d\"")?;
            needs(&args[0], &[Kind::Timestamp], "date EventDate \"%Y-%m-%d\"")?;
            let Expr::Const(Out::Text(pattern)) = &args[1] else {
                return Err(
                    "date's second argument is a strftime pattern in quotes, such as \"%Y-%m-%d %H:%M\"".into(),
                );
            };
            let items = chrono::format::StrftimeItems::new(pattern)
                .parse_to_owned()
                .map_err(|_| format!("{pattern:?} is not a valid strftime pattern; see https://docs.rs/chrono/latest/chrono/format/strftime/"))?;
            Expr::Date(Box::new(args.swap_remove(0)), items)
        }
        "default" => {
            arity(2, 2, "default SubId1 \"none\"")?;
            let fallback = args.pop().expect("two arguments");
            let value = args.pop().expect("two arguments");
            let fallback = coerce(fallback, value.kind())?;
            Expr::Default(Box::new(value), Box::new(fallback))
        }
        "upper" | "lower" | "urlencode" | "json" => {
            arity(1, 1, &format!("{helper} OrderId"))?;
            let value = Box::new(args.swap_remove(0));
            match helper {
                "upper" => Expr::Upper(value),
                "lower" => Expr::Lower(value),
                "urlencode" => Expr::UrlEncode(value),
                _ => Expr::Json(value),
            }
        }
        _ => return Err(format!("unknown helper {helper}; the helpers are {NAMES}")),
    };
    Ok(expr)
}

/// Makes a literal `default` fallback the same type as the value it stands in for, so that
/// `{{default FinalPayout 0}}` stays a number in JSON.
fn coerce(fallback: Expr, kind: Kind) -> Result<Expr, String> {
    let Expr::Const(constant) = &fallback else {
        return Ok(fallback);
    };
    let converted = match (kind, constant) {
        (Kind::Amount, Out::Int(int)) => Out::Amount(Decimal::from(*int)),
        (Kind::Amount, Out::Text(text)) => Out::Amount(
            Decimal::from_str(text)
                .map_err(|_| format!("the fallback {text:?} is not an amount; write a number such as 0"))?,
        ),
        (Kind::Timestamp, Out::Text(text)) => Out::Timestamp(DateTime::parse_from_rfc3339(text).map_err(|_| {
            format!("the fallback {text:?} is not a timestamp; write one such as \"2026-01-01T00:00:00Z\"")
        })?),
        (Kind::Text, Out::Int(int)) => Out::Text(Cow::Owned(int.to_string())),
        _ => return Ok(fallback),
    };
    Ok(Expr::Const(converted.into_owned()))
}

fn plural(min: usize, max: usize) -> String {
    let word = |n: usize| {
        if n == 1 {
            "1 argument".to_owned()
        } else {
            format!("{n} arguments")
        }
    };
    if min == max {
        word(min)
    } else {
        format!("{min} or {}", word(max))
    }
}
