//! Typed ids: a delivery id cannot be passed where a partner id is meant.
//!
//! Ids Postwire makes are a prefix and a ULID (`dlv_01JD7Y3M4W1Q9ZB6V2K8T5XH0C`): they sort by
//! the time they were made, which is what cursor pagination walks, and the prefix tells a
//! reader (and a secret scanner) what they name. Ids the platform sends (event ids, and partner
//! ids inside events) are taken as given once the event has been validated. Each type is its
//! text and nothing more: it serializes as a plain string and costs what a `String` costs.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident = $prefix:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix of the ids Postwire makes of this kind.
            pub const PREFIX: &'static str = $prefix;

            /// A new id: the prefix and a ULID.
            pub fn generate() -> $name {
                $name(format!("{}_{}", $prefix, ulid::Ulid::new()))
            }

            /// A new id made at `unix_ms`: ids made at different times sort by time whatever
            /// the clock said when each was made, so an id agrees with the time its row records.
            pub fn generate_at(unix_ms: i64) -> $name {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
                $name(format!("{}_{}", $prefix, ulid::Ulid::from_datetime(at)))
            }

            /// The id's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            /// An id read back from the store or given by the platform.
            fn from(text: String) -> $name {
                $name(text)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> $name {
                $name(text.to_owned())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    )*};
}

ids! {
    /// A partner (tenant): `ptn_…`.
    PartnerId = "ptn";
    /// An event, as the platform named it (unique per partner).
    EventId = "evt";
    /// One postback of one event to one partner: `dlv_…`. It is also the `webhook-id` the
    /// receiver sees on every attempt.
    DeliveryId = "dlv";
    /// One attempt of a delivery: `att_…`.
    AttemptId = "att";
    /// An uploaded plugin: `plg_…`.
    PluginId = "plg";
    /// An API key (its id, not its token): `key_…`.
    KeyId = "key";
}

impl DeliveryId {
    /// The id of a test postback, which is sent like a delivery but is none: `test_…`, so that
    /// a receiver can tell it apart.
    pub fn for_test() -> DeliveryId {
        DeliveryId(format!("test_{}", ulid::Ulid::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_at_a_time_sort_by_that_time() {
        let later = DeliveryId::generate_at(1_700_000_000_010);
        let earlier = DeliveryId::generate_at(1_700_000_000_000);
        assert!(earlier < later, "{earlier} < {later}");
        let again = DeliveryId::generate_at(1_700_000_000_000);
        assert_ne!(earlier, again, "ids of the same millisecond differ");
        assert_eq!(
            &earlier.as_str()[..14],
            &again.as_str()[..14],
            "they share the time part"
        );
    }

    #[test]
    fn made_ids_carry_their_prefix_and_sort_by_time() {
        let first = DeliveryId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = DeliveryId::generate();
        assert!(first.starts_with("dlv_") && first.len() == 4 + 26, "{first}");
        assert!(first < second);
        assert!(PartnerId::generate().as_str().starts_with("ptn_"));
        assert!(AttemptId::generate().as_str().starts_with("att_"));
        assert!(PluginId::generate().as_str().starts_with("plg_"));
    }

    #[test]
    fn ids_are_plain_strings_on_the_wire() {
        let id = PartnerId::from("ptn_demo");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""ptn_demo""#);
        assert_eq!(serde_json::from_str::<PartnerId>(r#""ptn_demo""#).unwrap(), id);
        assert_eq!(format!("{id} {id:?}"), r#"ptn_demo "ptn_demo""#);
        assert_eq!(id, "ptn_demo");
    }
}
