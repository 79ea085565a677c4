//! Logging through the contract's `log` import.

use std::fmt;

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Details for the plugin's author.
    Debug,
    /// What the plugin did.
    Info,
    /// Something looked wrong, the plugin went on.
    Warn,
    /// Something failed.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// Logs `message` at `level`. The host keeps a call's log lines with the delivery attempt,
/// bounded in number and length. On targets other than `wasm32` (unit tests on the host) the
/// line goes to stderr.
///
/// The macros [`debug!`](crate::debug), [`info!`](crate::info), [`warn!`](crate::warn),
/// [`error!`](crate::error) and [`log!`](crate::log!) format their arguments first.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::__private::transformer::postwire::plugin::log as wit;
        let level = match level {
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        wit::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level}] {message}");
}

/// Logs at a [`Level`](crate::Level), `format!` style: `log!(Level::Warn, "no {}", name)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log($level, &::std::format!($($arg)+))
    };
}

/// Logs at [`Level::Debug`](crate::Level::Debug), `format!` style.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Debug, &::std::format!($($arg)+))
    };
}

/// Logs at [`Level::Info`](crate::Level::Info), `format!` style.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Info, &::std::format!($($arg)+))
    };
}

/// Logs at [`Level::Warn`](crate::Level::Warn), `format!` style.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Warn, &::std::format!($($arg)+))
    };
}

/// Logs at [`Level::Error`](crate::Level::Error), `format!` style.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Error, &::std::format!($($arg)+))
    };
}
