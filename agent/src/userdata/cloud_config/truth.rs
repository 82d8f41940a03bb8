//! cloud-init's words for true and false (`util.is_true`, `util.is_false`), which every flag
//! metaboot reads loosely goes through.

/// cloud-init's `util.is_true`: `true`, or a value whose text is `true`, `1`, `on` or `yes`
/// (any case, spaces around ignored).
pub fn is_true(value: &serde_json::Value) -> bool {
    let text = match value {
        serde_json::Value::Bool(flag) => return *flag,
        serde_json::Value::String(text) => text.trim().to_ascii_lowercase(),
        other => other.to_string().to_ascii_lowercase(),
    };
    ["true", "1", "on", "yes"].contains(&text.as_str())
}

/// cloud-init's `util.is_false`: `false`, or the text `false`, `0`, `off` or `no` (any case).
pub fn is_false(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Bool(flag) => !flag,
        serde_json::Value::String(text) => ["false", "0", "off", "no"]
            .iter()
            .any(|word| text.eq_ignore_ascii_case(word)),
        _ => false,
    }
}
