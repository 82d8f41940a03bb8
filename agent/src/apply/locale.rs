//! `locale` (cloud-init's cc_locale with its Debian distro, per instance): the system locale
//! (`LANG` in `/etc/default/locale`, or `locale_configfile`) set to the one asked for, after
//! making sure the image can use it: on a Debian-family image the locale is enabled in
//! `/etc/locale.gen` (as the image's `locales` package lists it in
//! `/usr/share/i18n/SUPPORTED`) and `locale-gen` builds it. `C`, `C.UTF-8` and `POSIX` are
//! built into the C library and need no generating.

use crate::apply::tool::{self, ToolError};
use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;

/// cloud-init's default `locale_configfile` on Debian.
pub const LOCALE_FILE: &str = "/etc/default/locale";
/// The locales `locale-gen` builds (Debian's `locales` package).
pub const LOCALE_GEN: &str = "/etc/locale.gen";
/// Every locale the image's C library can build, with its character set.
pub const SUPPORTED: &str = "/usr/share/i18n/SUPPORTED";
/// The variable set.
pub const KEY: &str = "LANG";
/// The longest locale name taken (`de_DE.UTF-8@euro` is 16 characters).
pub const MAX_LOCALE_LEN: usize = 64;
/// The largest of those files read (Debian's SUPPORTED is about 10 KiB).
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// The locales built into the C library (cloud-init's list: no regeneration).
const BUILT_IN: &[&str] = &["c", "c.utf-8", "posix"];

/// A locale that could not be set; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum LocaleError {
    #[error(
        "locale {0:?} is not a locale name: want one like de_DE.UTF-8 (letters, digits, '_', \
         '.', '@', '-', at most {MAX_LOCALE_LEN} characters)"
    )]
    Name(String),
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: String },
    #[error(
        "locale {locale} is not one this image can build (not in {SUPPORTED}): see that file \
         for the names"
    )]
    Unsupported { locale: String },
    #[error(
        "locale {locale} needs building and this image cannot build locales: no {LOCALE_GEN} \
         (Debian's locales package)"
    )]
    NoLocaleGen { locale: String },
    #[error("locale-gen is not installed (Debian's locales package): {locale} cannot be built")]
    NoLocaleGenTool { locale: String },
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Io(#[from] PathError),
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The file already named the locale.
    Already,
    /// The locale was set; `generated` says how it came to be usable.
    Set { generated: Generated },
}

/// How the locale came to be usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    /// Built into the C library.
    BuiltIn,
    /// Enabled in `/etc/locale.gen` and built by `locale-gen`.
    Built,
    /// Enabled in `/etc/locale.gen`; not built, the root not being the running system's.
    EnabledOnly,
}

/// Checks a locale name.
pub fn check_name(locale: &str) -> Result<(), LocaleError> {
    let ok = !locale.is_empty()
        && locale.len() <= MAX_LOCALE_LEN
        && !locale.starts_with(['.', '-'])
        && locale
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(LocaleError::Name(locale.to_owned()))
    }
}

/// The value of `key` in a shell variables file (`KEY=value`, `KEY="value"`), as cloud-init's
/// `load_shell_content` reads it; the last assignment wins.
pub fn shell_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .map(|value| value.trim().trim_matches(['"', '\'']).to_owned())
        .next_back()
}

/// Sets the system locale to `locale` under `root`, in `file` (default [`LOCALE_FILE`]).
pub fn set(root: &Root, locale: &str, file: Option<&str>) -> Result<Applied, LocaleError> {
    check_name(locale)?;
    let file = file.unwrap_or(LOCALE_FILE);
    let current = read(root, file)?;
    let set_now = current
        .as_deref()
        .and_then(|text| shell_value(text, KEY))
        .filter(|value| !value.is_empty());
    if set_now.is_some_and(|value| value.eq_ignore_ascii_case(locale)) {
        return Ok(Applied::Already);
    }
    let generated = if BUILT_IN.contains(&locale.to_ascii_lowercase().as_str()) {
        Generated::BuiltIn
    } else {
        generate(root, locale)?
    };
    let text = with_value(current.as_deref().unwrap_or(""), KEY, locale);
    root.write_atomic(file, text.as_bytes(), &WriteOptions::keep_or(0o644))?;
    Ok(Applied::Set { generated })
}

/// `text` with `key` set to `value`: its assignment replaced where it is, else appended; every
/// other line kept (what `update-locale` does).
pub fn with_value(text: &str, key: &str, value: &str) -> String {
    let line = format!("{key}={value}");
    let mut replaced = false;
    let mut lines: Vec<String> = text
        .lines()
        .filter_map(|old| {
            let assigns = old
                .trim()
                .strip_prefix(key)
                .is_some_and(|r| r.starts_with('='));
            match (assigns, replaced) {
                (false, _) => Some(old.to_owned()),
                (true, false) => {
                    replaced = true;
                    Some(line.clone())
                }
                (true, true) => None,
            }
        })
        .collect();
    if !replaced {
        lines.push(line);
    }
    lines.join("\n") + "\n"
}

/// Enables `locale` in `/etc/locale.gen` (its line added uncommented: the one a commented
/// entry has, else its `SUPPORTED` line) and, on the running system, runs `locale-gen`.
fn generate(root: &Root, locale: &str) -> Result<Generated, LocaleError> {
    let Some(enabled) = read(root, LOCALE_GEN)? else {
        return Err(LocaleError::NoLocaleGen {
            locale: locale.to_owned(),
        });
    };
    let entry = |line: &str| {
        let mut words = line.split_whitespace();
        words.next() == Some(locale) && words.next().is_some() && words.next().is_none()
    };
    let is_on = enabled.lines().any(entry);
    if !is_on {
        let commented = enabled.lines().find(|line| {
            line.trim_start().starts_with('#') && entry(line.trim_start_matches(['#', ' ']))
        });
        let line = match commented {
            Some(line) => line.trim_start_matches(['#', ' ']).to_owned(),
            None => read(root, SUPPORTED)?
                .as_deref()
                .and_then(|supported| {
                    supported
                        .lines()
                        .find(|line| entry(line))
                        .map(str::to_owned)
                })
                .ok_or_else(|| LocaleError::Unsupported {
                    locale: locale.to_owned(),
                })?,
        };
        let mut text = enabled.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
        text.push('\n');
        root.write_atomic(LOCALE_GEN, text.as_bytes(), &WriteOptions::keep_or(0o644))?;
    }
    if !root.is_host() {
        return Ok(Generated::EnabledOnly);
    }
    // locale-gen reads the file: the run's staged writes go in place first.
    root.publish();
    match tool::run("locale-gen", &["--keep-existing"])? {
        Some(()) => Ok(Generated::Built),
        None => Err(LocaleError::NoLocaleGenTool {
            locale: locale.to_owned(),
        }),
    }
}

/// A text file under `root`, bounded; `None` when it does not exist.
fn read(root: &Root, path: &str) -> Result<Option<String>, LocaleError> {
    let text = root
        .read_optional_text(path)
        .map_err(PathError::fail("read", root.host_path(path)))?;
    if text.as_ref().is_some_and(|t| t.len() > MAX_FILE_BYTES) {
        return Err(LocaleError::TooLarge {
            path: root.host_path(path).display().to_string(),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_shell_values() {
        for good in ["de_DE.UTF-8", "C", "sr_RS@latin", "C.UTF-8", "en_US"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_LOCALE_LEN + 1);
        for bad in [
            "",
            "de DE",
            "de_DE\nLC_ALL=x",
            "../x",
            "-x",
            "x;y",
            long.as_str(),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let text = "# comment\nLANG=C.UTF-8\nLC_TIME=\"de_DE.UTF-8\"\nLANGUAGE=en\n";
        assert_eq!(shell_value(text, "LANG").as_deref(), Some("C.UTF-8"));
        assert_eq!(shell_value(text, "LC_TIME").as_deref(), Some("de_DE.UTF-8"));
        assert_eq!(shell_value(text, "LC_ALL"), None);
    }

    #[test]
    fn the_value_replaces_its_line_and_keeps_the_others() {
        assert_eq!(
            with_value(
                "# x\nLANG=C.UTF-8\nLANGUAGE=en\nLANG=old\n",
                "LANG",
                "de_DE.UTF-8"
            ),
            "# x\nLANG=de_DE.UTF-8\nLANGUAGE=en\n"
        );
        assert_eq!(with_value("", "LANG", "C.UTF-8"), "LANG=C.UTF-8\n");
        assert_eq!(with_value("LC_TIME=C", "LANG", "C"), "LC_TIME=C\nLANG=C\n");
    }
}
