//! `StrLike`: a YAML scalar read as text, as cloud-init str()s whatever PyYAML made of it.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A scalar read as text whatever YAML made of it (`hostname: 1234`, `password: 0123`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StrLike(pub String);

impl std::ops::Deref for StrLike {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for StrLike {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StrLike;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrLike, E> {
                Ok(StrLike(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrLike, E> {
                Ok(StrLike(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrLike, E> {
                Ok(StrLike(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrLike, E> {
                Ok(StrLike(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<StrLike, E> {
                // PyYAML turns `yes` into True and cloud-init then str()s it.
                Ok(StrLike(if v { "True" } else { "False" }.to_owned()))
            }
        }
        deserializer.deserialize_any(V)
    }
}
