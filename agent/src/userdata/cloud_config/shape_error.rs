//! What is wrong with a value of the wrong shape, said without the value: serde's messages
//! quote it (`invalid type: string "root:S3cret", expected struct Chpasswd`), and the message
//! goes to the log and to `status.json`, which every user of the guest can read. A password
//! given as a string where a map was expected must not land there.

/// The words serde puts before a value it quotes (`serde::de::Unexpected`'s Display), longest
/// first so that `unit variant` is not taken for `unit`.
const KINDS: &[&str] = &[
    "floating point",
    "newtype variant",
    "newtype struct",
    "struct variant",
    "tuple variant",
    "unit variant",
    "Option value",
    "byte array",
    "boolean",
    "integer",
    "sequence",
    "string",
    "char",
    "unit",
    "enum",
    "null",
    "map",
];

/// `error`'s message with every value it quotes left out: `invalid type: string, expected
/// struct Chpasswd`. Messages that quote no value of the document (`missing field `name``)
/// are kept as they are.
pub fn without_values(error: &serde_json::Error) -> String {
    let message = error.to_string();
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let kind = KINDS
                .iter()
                .find(|kind| rest.starts_with(*kind))
                .copied()
                .unwrap_or("a value");
            // What was expected comes from the agent's own types, never from the document.
            return match rest.rfind(", expected ") {
                Some(at) => format!("{prefix}{kind}{}", &rest[at..]),
                None => format!("{prefix}{kind}"),
            };
        }
    }
    for prefix in ["unknown variant ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return match rest.rfind(", expected ") {
                Some(at) => format!("{}{}", prefix.trim_end(), &rest[at..]),
                None => prefix.trim_end().to_owned(),
            };
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Chpasswd {
        users: Vec<String>,
        expire: Option<bool>,
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Plain,
    }

    fn message(value: serde_json::Value) -> String {
        without_values(&serde_json::from_value::<Chpasswd>(value).unwrap_err())
    }

    #[test]
    fn no_value_of_the_document_is_quoted() {
        let secret = "S3cret, expected \"x\"";
        for (value, said) in [
            (
                serde_json::json!(format!("root:{secret}")),
                "invalid type: string, expected struct Chpasswd",
            ),
            (
                serde_json::json!({"users": [format!("root:{secret}")], "expire": secret}),
                "invalid type: string, expected a boolean",
            ),
            (
                serde_json::json!({"users": 31337}),
                "invalid type: integer, expected a sequence",
            ),
            (
                serde_json::json!({"users": [], "mode": secret}),
                "unknown variant, expected `plain`",
            ),
            (serde_json::json!({}), "missing field `users`"),
        ] {
            let got = message(value);
            assert_eq!(got, said);
            assert!(!got.contains("S3cret") && !got.contains("31337"), "{got}");
        }
    }
}
