//! The partner's `plugin_config`.

use std::cell::OnceCell;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The partner's `plugin_config`: JSON text set with the partner, `{}` when unset.
///
/// ```
/// use postwire_sdk::Config;
///
/// let config = Config::new(r#"{"hmac_key": "s3cret", "retries": 3, "tags": ["a"]}"#);
/// assert_eq!(config.str("hmac_key"), Some("s3cret"));
/// assert_eq!(config.get::<u32>("retries"), Some(3));
/// assert_eq!(config.get::<Vec<String>>("tags"), Some(vec!["a".to_string()]));
/// assert_eq!(config.get::<u32>("missing"), None);
/// assert_eq!(config.require::<String>("missing").unwrap_err(), "plugin_config has no \"missing\"");
///
/// #[derive(serde::Deserialize)]
/// struct Settings { hmac_key: String }
/// let settings: Settings = config.parse().unwrap();
/// assert_eq!(settings.hmac_key, "s3cret");
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    raw: String,
    /// Parsed on first use, so a plugin that never reads its configuration carries no JSON
    /// parser for it.
    parsed: OnceCell<Result<Value, String>>,
}

impl PartialEq for Config {
    /// Configurations are equal when their texts are.
    fn eq(&self, other: &Config) -> bool {
        self.raw == other.raw
    }
}

impl Default for Config {
    /// `{}`.
    fn default() -> Config {
        Config::new("{}")
    }
}

impl Config {
    /// The configuration in this JSON text (blank text counts as `{}`). Text that is not JSON
    /// is kept: [`raw`](Config::raw) returns it, the typed getters find nothing in it and
    /// [`require`](Config::require) and [`parse`](Config::parse) say why.
    pub fn new(raw: impl Into<String>) -> Config {
        Config {
            raw: raw.into(),
            parsed: OnceCell::new(),
        }
    }

    fn parsed(&self) -> &Result<Value, String> {
        self.parsed.get_or_init(|| {
            if self.raw.trim().is_empty() {
                Ok(Value::Object(Default::default()))
            } else {
                serde_json::from_str(&self.raw).map_err(|e| format!("plugin_config is not valid JSON: {e}"))
            }
        })
    }

    /// The JSON text, as received.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The parsed value; `None` if the text is not JSON.
    pub fn value(&self) -> Option<&Value> {
        self.parsed().as_ref().ok()
    }

    /// The value of the top-level `key` as a `T`; `None` if it is absent, `null` or not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let value = self.value()?.get(key)?;
        if value.is_null() {
            return None;
        }
        T::deserialize(value).ok()
    }

    /// The value of the top-level `key` if it is a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.value()?.get(key)?.as_str()
    }

    /// The value of the top-level `key` as a `T`, or an error that says what is wrong, for the
    /// partner to read: `plugin_config has no "hmac_key"`.
    pub fn require<T: DeserializeOwned>(&self, key: &str) -> Result<T, String> {
        let value = self.parsed().as_ref().map_err(Clone::clone)?;
        if !value.is_object() {
            return Err(format!("plugin_config is not a JSON object, so it has no {key:?}"));
        }
        match value.get(key) {
            None | Some(Value::Null) => Err(format!("plugin_config has no {key:?}")),
            Some(value) => T::deserialize(value).map_err(|e| format!("plugin_config's {key:?} is not valid: {e}")),
        }
    }

    /// The whole configuration as a `T` (typically a `#[derive(Deserialize)]` struct).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        let value = self.parsed().as_ref().map_err(Clone::clone)?;
        T::deserialize(value).map_err(|e| format!("plugin_config is not what this plugin expects: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_access() {
        let config = Config::new(r#"{"key": "k", "n": 5, "flag": true, "nothing": null, "nested": {"a": 1}}"#);
        assert_eq!(config.str("key"), Some("k"));
        assert_eq!(config.str("n"), None);
        assert_eq!(config.get::<String>("key"), Some("k".into()));
        assert_eq!(config.get::<u8>("n"), Some(5));
        assert_eq!(config.get::<String>("n"), None);
        assert_eq!(config.get::<bool>("flag"), Some(true));
        assert_eq!(config.get::<Option<u8>>("nothing"), None);
        assert_eq!(config.get::<Value>("nested"), Some(serde_json::json!({"a": 1})));
        assert_eq!(config.require::<u8>("n"), Ok(5));
        assert_eq!(
            config.require::<u8>("nothing"),
            Err("plugin_config has no \"nothing\"".into())
        );
        let error = config.require::<u8>("key").unwrap_err();
        assert!(
            error.starts_with("plugin_config's \"key\" is not valid: invalid type"),
            "{error}"
        );
    }

    #[test]
    fn whole_config() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Settings {
            key: String,
            #[serde(default)]
            n: u32,
        }
        assert_eq!(
            Config::new(r#"{"key": "k"}"#).parse::<Settings>(),
            Ok(Settings { key: "k".into(), n: 0 })
        );
        let error = Config::new("{}").parse::<Settings>().unwrap_err();
        assert!(error.contains("missing field `key`"), "{error}");
    }

    #[test]
    fn blank_and_invalid_text() {
        for blank in ["", "  ", "{}"] {
            let config = Config::new(blank);
            assert_eq!(config.value(), Some(&serde_json::json!({})));
            assert_eq!(config.get::<String>("key"), None);
            assert_eq!(
                config.require::<String>("key"),
                Err("plugin_config has no \"key\"".into())
            );
        }
        let config = Config::new("{not json");
        assert_eq!(config.raw(), "{not json");
        assert_eq!(config.value(), None);
        assert_eq!(config.str("key"), None);
        assert!(
            config
                .require::<String>("key")
                .unwrap_err()
                .starts_with("plugin_config is not valid JSON")
        );
        assert!(
            config
                .parse::<Value>()
                .unwrap_err()
                .starts_with("plugin_config is not valid JSON")
        );
        let config = Config::new("[1]");
        assert_eq!(config.get::<u8>("0"), None);
        assert_eq!(
            config.require::<u8>("key"),
            Err("plugin_config is not a JSON object, so it has no \"key\"".into())
        );
        assert_eq!(Config::default().raw(), "{}");
    }
}
