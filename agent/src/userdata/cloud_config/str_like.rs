//! `StrLike`: a YAML scalar read as text, as cloud-init str()s whatever PyYAML made of it.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// `v` as Python's `str` writes a float: the shortest digits that read back as it, `2.0` with
/// its `.0`, an exponent (below 1e-4, from 1e16 on) signed and of two digits at least
/// (`1e+16`, `1.5e-05`). Rust's `{:?}` picks the same digits and the same switch to an exponent.
fn python_float(v: f64) -> String {
    let text = format!("{v:?}");
    match text.split_once('e') {
        Some((digits, exponent)) => {
            let (sign, power) = exponent
                .strip_prefix('-')
                .map_or(("+", exponent), |power| ("-", power));
            format!("{digits}e{sign}{power:0>2}")
        }
        None => text,
    }
}

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
                Ok(StrLike(python_float(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<StrLike, E> {
                // PyYAML turns `yes` into True and cloud-init then str()s it.
                Ok(StrLike(if v { "True" } else { "False" }.to_owned()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list-form `runcmd` item is what cloud-init's `shellify` makes of it, `str()` of what
    /// PyYAML read: `2.0` stays `2.0` (a float), `10` an int, `yes` Python's `True`.
    #[test]
    fn scalars_read_as_python_str_writes_them() {
        let yaml = "[echo, 2.0, 10, 1.10, 0.5, -3.25, 1.5e+3, 0.00001, 12345678901234567.0, yes]";
        let value = crate::userdata::yaml::parse_value(yaml).unwrap();
        let argv: Vec<StrLike> = serde_json::from_value(value).unwrap();
        let argv: Vec<&str> = argv.iter().map(|arg| &**arg).collect();
        assert_eq!(
            argv,
            [
                "echo",
                "2.0",
                "10",
                "1.1",
                "0.5",
                "-3.25",
                "1500.0",
                "1e-05",
                "1.2345678901234568e+16",
                "True"
            ]
        );
    }
}
