//! Readers for fields cloud-init takes loosely: a flag given as text (`lock_passwd: "false"`,
//! which YAML keeps a string when quoted) and a name given as a number (`primary_group: 100`).
//! A field of one user read strictly would fail the whole `users` list, and a user the author
//! wrote would be left out.

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// A flag: a boolean, or the text or number cloud-init's `util.is_true` / `is_false` take
/// (`true`, `yes`, `on`, `1` and `false`, `no`, `off`, `0`, any case).
pub fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    let Some(value) = value else {
        return Ok(None);
    };
    if super::truth::is_true(&value) {
        return Ok(Some(true));
    }
    if super::truth::is_false(&value) {
        return Ok(Some(false));
    }
    Err(de::Error::custom("expected true or false"))
}

/// A top-level flag (`preserve_hostname: "true"`), read as [`flag`] reads one: cloud-init's
/// `util.get_cfg_option_bool` takes the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        flag(deserializer)?
            .map(Flag)
            .ok_or_else(|| de::Error::custom("expected true or false"))
    }
}

/// A name or path: text, or a number written as text (`primary_group: 100`).
pub fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<super::str_like::StrLike>::deserialize(deserializer)?.map(|text| text.0))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Fields {
        #[serde(default, deserialize_with = "super::flag")]
        flag: Option<bool>,
        #[serde(default, deserialize_with = "super::text")]
        text: Option<String>,
    }

    fn read(value: serde_json::Value) -> Result<Fields, String> {
        serde_json::from_value(value).map_err(|err| err.to_string())
    }

    #[test]
    fn flags_and_names_are_read_as_cloud_init_reads_them() {
        for (given, flag) in [
            (serde_json::json!(true), true),
            (serde_json::json!("False"), false),
            (serde_json::json!(" yes "), true),
            (serde_json::json!("off"), false),
            (serde_json::json!(1), true),
            (serde_json::json!(0), false),
        ] {
            assert_eq!(
                read(serde_json::json!({"flag": given})).unwrap().flag,
                Some(flag)
            );
        }
        assert!(read(serde_json::json!({"flag": "maybe"})).is_err());
        assert_eq!(read(serde_json::json!({})).unwrap().flag, None);
        assert_eq!(
            read(serde_json::json!({"text": 100}))
                .unwrap()
                .text
                .as_deref(),
            Some("100")
        );
        assert_eq!(read(serde_json::json!({"flag": null})).unwrap().flag, None);
        let top = |value| {
            serde_json::from_value::<super::Flag>(value)
                .map(|f| f.0)
                .ok()
        };
        assert_eq!(top(serde_json::json!("true")), Some(true));
        assert_eq!(top(serde_json::json!("No")), Some(false));
        assert_eq!(top(serde_json::json!(false)), Some(false));
        assert_eq!(top(serde_json::json!("sometimes")), None);
    }
}
