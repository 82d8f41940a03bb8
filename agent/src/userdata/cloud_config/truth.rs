//! cloud-init's words for true and false (`util.is_true`, `util.is_false`), which every flag
//! metaboot reads loosely goes through.

/// cloud-init's `util.is_true`: `true`, or a value whose text is `true`, `1`, `on` or `yes`
/// (any case, spaces around ignored; a number by its text: `1`).
pub fn is_true(value: &serde_json::Value) -> bool {
    matches!(value, serde_json::Value::Bool(true)) || is_word(value, &["true", "1", "on", "yes"])
}

/// cloud-init's `util.is_false`: `false`, or a value whose text is `false`, `0`, `off` or `no`
/// (any case, spaces around ignored; a number by its text: `0`, but not `0.0`).
pub fn is_false(value: &serde_json::Value) -> bool {
    matches!(value, serde_json::Value::Bool(false)) || is_word(value, &["false", "0", "off", "no"])
}

/// Whether a value that is not a boolean reads as one of `words` the way cloud-init compares
/// it: `str(value).lower().strip()`.
fn is_word(value: &serde_json::Value, words: &[&str]) -> bool {
    let text = match value {
        serde_json::Value::Bool(_) => return false,
        serde_json::Value::String(text) => text.trim().to_ascii_lowercase(),
        other => other.to_string().to_ascii_lowercase(),
    };
    words.contains(&text.as_str())
}
