//! The engine's one error type, and the field-level validation errors every input check produces.

use std::fmt;

use serde::Serialize;

/// One problem with one input field: which field, the value it had, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `data.TransactionAmount` or `headers.X-Api-Key`.
    pub field: String,
    /// The offending value as the user wrote it (shortened when long); absent for missing fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// An error about `field`, which held `value`.
    pub fn new(field: impl Into<String>, value: Option<&str>, message: impl Into<String>) -> Self {
        let mut error = FieldError {
            field: field.into(),
            value: value.map(|v| shorten(v, MAX_SHOWN)),
            message: message.into(),
        };
        error.bound();
        error
    }

    /// Cuts the path, the value and the message to their bounds: a path can hold input (a
    /// header's name, a key of the event's data), and a message can quote it.
    pub fn bound(&mut self) {
        if self.field.len() > MAX_FIELD {
            self.field = shorten(&self.field, MAX_FIELD);
        }
        if let Some(value) = &self.value
            && value.len() > MAX_SHOWN + '…'.len_utf8()
        {
            self.value = Some(shorten(value, MAX_SHOWN));
        }
        if self.message.len() > MAX_MESSAGE {
            self.message = shorten(&self.message, MAX_MESSAGE);
        }
    }

    /// An error about a required field that is absent.
    pub fn missing(field: impl Into<String>, fix: &str) -> Self {
        FieldError::new(field, None, format!("is required; {fix}"))
    }

    /// An error about `field`, whose JSON `value` is not of the `expected` type.
    pub fn mistyped(field: impl Into<String>, value: &serde_json::Value, expected: &str) -> Self {
        FieldError::new(
            field,
            Some(&value.to_string()),
            format!("has the wrong type; expected {expected}"),
        )
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}: {:?} {}", self.field, value, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Values longer than this are cut in error messages, so an error never echoes a huge input.
const MAX_SHOWN: usize = 120;

/// Longest field path shown, in bytes: room for a nested path with a name of [`MAX_SHOWN`].
const MAX_FIELD: usize = 200;

/// Longest message shown, in bytes: the fix in words with a quoted name or two, or a plugin
/// compiler's reason with its context.
const MAX_MESSAGE: usize = 1000;

/// `value` cut to at most `max` bytes (on a character boundary), with `…` when cut.
pub(crate) fn shorten(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_owned();
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

/// Every problem found in one input, so a user fixes them all in one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Invalid(pub Vec<FieldError>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

impl From<FieldError> for Invalid {
    fn from(error: FieldError) -> Self {
        Invalid(vec![error])
    }
}

/// Collects field errors while a validator walks its input.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    pub(crate) fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was found wrong.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, Invalid> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(Invalid(self.0))
        }
    }
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input breaks one or more rules; nothing was changed.
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// An input could not be read as JSON at all.
    #[error("{what} is not valid JSON: {source}")]
    Json {
        /// Which input, e.g. "the settings file".
        what: String,
        /// Where the parser stopped and why.
        source: serde_json::Error,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}
