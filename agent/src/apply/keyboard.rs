//! cloud-init's `keyboard` (once per instance): the system's keyboard layout. cloud-init 22.4 on
//! Debian runs `localectl set-x11-keymap LAYOUT MODEL VARIANT OPTIONS`, whose Debian
//! systemd-localed writes `/etc/default/keyboard`, then restarts `console-setup`. metaboot
//! writes that file itself (under any root, no D-Bus needed; systemd-localed reads it on each
//! request): `XKBLAYOUT`, `XKBMODEL` (default `pc105`), `XKBVARIANT`, `XKBOPTIONS` set where
//! they are, the file's other lines kept; then on the running system `console-setup` is
//! restarted when it runs (without waiting for it).

use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;

/// The keyboard configuration file of the Debian family (keyboard(5)).
pub const KEYBOARD_FILE: &str = "/etc/default/keyboard";
/// cloud-init's `DEFAULT_KEYBOARD_MODEL`.
pub const DEFAULT_MODEL: &str = "pc105";
/// The unit that applies the file to the consoles.
pub const CONSOLE_SETUP: &str = "console-setup.service";
/// The longest value taken (XKB names and option lists are short).
pub const MAX_VALUE: usize = 256;

/// What `keyboard` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keymap {
    pub layout: String,
    pub model: String,
    pub variant: String,
    pub options: String,
}

/// `keyboard: {layout, model, variant, options}`: `None` when absent; `layout` is required, and
/// a value that would not stay one quoted shell word (a quote, a backslash, a newline) is
/// refused.
pub fn request(
    keyboard: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Option<Keymap>, String> {
    let Some(keyboard) = keyboard else {
        return Ok(None);
    };
    let value = |key: &str, default: &str| -> Result<String, String> {
        let text = match keyboard.get(key) {
            None | Some(serde_json::Value::Null) => return Ok(default.to_owned()),
            Some(serde_json::Value::String(text)) => text.trim().to_owned(),
            Some(other) => return Err(format!("keyboard: `{key}` is {other}, not a string")),
        };
        if text.len() > MAX_VALUE
            || text
                .chars()
                .any(|c| matches!(c, '"' | '\\' | '`' | '$') || c.is_control())
        {
            return Err(format!("keyboard: `{key}` {text:?} is not an XKB name"));
        }
        Ok(text)
    };
    let layout = value("layout", "")?;
    if layout.is_empty() {
        return Err("keyboard: `layout` is required".to_owned());
    }
    Ok(Some(Keymap {
        layout,
        model: value("model", DEFAULT_MODEL)?,
        variant: value("variant", "")?,
        options: value("options", "")?,
    }))
}

/// Where systemd finds unit files.
pub const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// True when the image has [`CONSOLE_SETUP`] (systemctl fails on a unit it does not know).
pub fn has_console_setup(root: &Root) -> bool {
    UNIT_DIRS
        .iter()
        .any(|dir| root.exists(std::path::Path::new(dir).join(CONSOLE_SETUP)))
}

/// Writes `keymap` into [`KEYBOARD_FILE`] under `root`, the file's other lines kept.
pub fn write(root: &Root, keymap: &Keymap) -> Result<(), PathError> {
    let current = root
        .read_optional_text(KEYBOARD_FILE)
        .map_err(PathError::fail("read", root.host_path(KEYBOARD_FILE)))?;
    let mut text = current.unwrap_or_else(|| "# KEYBOARD CONFIGURATION FILE\n".to_owned());
    for (key, value) in [
        ("XKBMODEL", &keymap.model),
        ("XKBLAYOUT", &keymap.layout),
        ("XKBVARIANT", &keymap.variant),
        ("XKBOPTIONS", &keymap.options),
    ] {
        text = crate::apply::locale::with_value(&text, key, &format!("\"{value}\""));
    }
    root.write_atomic(
        KEYBOARD_FILE,
        text.as_bytes(),
        &WriteOptions::exact(0o644, None),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn asked(value: serde_json::Value) -> Result<Option<Keymap>, String> {
        let serde_json::Value::Object(map) = value else {
            panic!("a map")
        };
        request(Some(&map))
    }

    #[test]
    fn layout_required_model_defaults_and_bad_values() {
        assert_eq!(request(None), Ok(None));
        assert_eq!(
            asked(json!({"layout": "us"})),
            Ok(Some(Keymap {
                layout: "us".into(),
                model: DEFAULT_MODEL.into(),
                variant: String::new(),
                options: String::new(),
            }))
        );
        assert_eq!(
            asked(json!({"model": "pc104"})),
            Err("keyboard: `layout` is required".into())
        );
        assert!(
            asked(json!({"layout": "de\"; rm -rf /"}))
                .unwrap_err()
                .contains("not an XKB name")
        );
        assert!(asked(json!({"layout": "de", "variant": "a\nb"})).is_err());
        assert!(
            asked(json!({"layout": 1}))
                .unwrap_err()
                .contains("not a string")
        );
        assert!(asked(json!({"layout": "x".repeat(MAX_VALUE + 1)})).is_err());
        assert!(asked(json!({"layout": "x".repeat(MAX_VALUE)})).is_ok());
    }

    #[test]
    fn the_file_keeps_its_other_lines() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("etc/default")).unwrap();
        std::fs::write(
            dir.path().join("etc/default/keyboard"),
            "# KEYBOARD CONFIGURATION FILE\n\nXKBMODEL=\"pc105\"\nXKBLAYOUT=\"us\"\nXKBVARIANT=\"\"\nXKBOPTIONS=\"\"\n\nBACKSPACE=\"guess\"\n",
        )
        .unwrap();
        let keymap = asked(json!({"layout": "de", "variant": "nodeadkeys",
                                  "options": "compose:rwin"}))
        .unwrap()
        .unwrap();
        write(&root, &keymap).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/default/keyboard")).unwrap(),
            "# KEYBOARD CONFIGURATION FILE\n\nXKBMODEL=\"pc105\"\nXKBLAYOUT=\"de\"\n\
             XKBVARIANT=\"nodeadkeys\"\nXKBOPTIONS=\"compose:rwin\"\n\nBACKSPACE=\"guess\"\n"
        );
        assert!(!has_console_setup(&root));
        std::fs::create_dir_all(dir.path().join("lib/systemd/system")).unwrap();
        std::fs::write(
            dir.path().join("lib/systemd/system/console-setup.service"),
            "",
        )
        .unwrap();
        assert!(has_console_setup(&root));
        // No file: made with the four lines.
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        write(&root, &keymap).unwrap();
        let text = std::fs::read_to_string(dir.path().join("etc/default/keyboard")).unwrap();
        assert!(text.contains("XKBLAYOUT=\"de\"\n"), "{text}");
    }
}
