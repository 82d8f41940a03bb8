//! `ssh_pwauth`: `PasswordAuthentication yes|no` in an sshd drop-in (when `sshd_config.d` exists
//! and `sshd_config` includes it) or in `sshd_config` itself (other lines kept), plus a one-word
//! file for dropbear images.

use std::path::{Path, PathBuf};

use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;
use crate::state::State;

/// The sshd drop-in directory, under the root.
pub const SSHD_DROPIN_DIR: &str = "/etc/ssh/sshd_config.d";
/// metaboot's drop-in (cloud-init writes `50-cloud-init.conf`).
pub const SSHD_DROPIN_NAME: &str = "50-metaboot.conf";
/// The main sshd configuration, under the root.
pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
/// The option `ssh_pwauth` sets.
pub const PASSWORD_AUTHENTICATION: &str = "PasswordAuthentication";

/// Failures writing sshd settings.
#[derive(Debug, thiserror::Error)]
pub enum SshdError {
    #[error(transparent)]
    Io(#[from] PathError),
}

/// Sets `key value` in the global part of an sshd_config text: the first global occurrence is
/// replaced, later global ones dropped, `Match` blocks untouched; with none, the line goes just
/// before the first `Match` (or at the end).
pub fn set_option(text: &str, key: &str, value: &str) -> String {
    let wanted = format!("{key} {value}");
    let mut out: Vec<String> = Vec::new();
    let mut in_match = false;
    let mut done = false;
    for line in text.lines() {
        let word = line
            .trim_start()
            .split(|c: char| c.is_whitespace() || c == '=')
            .next()
            .unwrap_or("");
        if word.eq_ignore_ascii_case("match") {
            if !done && !in_match {
                out.push(wanted.clone());
                done = true;
            }
            in_match = true;
        }
        if !in_match && word.eq_ignore_ascii_case(key) {
            if !done {
                out.push(wanted.clone());
                done = true;
            }
            continue;
        }
        out.push(line.to_owned());
    }
    if !done {
        out.push(wanted);
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// Whether an sshd_config text includes the drop-in directory: an `Include` line (any case)
/// naming a pattern in it, absolute or relative to `/etc/ssh` (Debian's and Ubuntu's
/// `Include /etc/ssh/sshd_config.d/*.conf`).
pub fn includes_dropins(text: &str) -> bool {
    text.lines().any(|line| {
        let mut words = line.split_whitespace();
        words
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("include"))
            && words.any(|pattern| {
                pattern.starts_with(&format!("{SSHD_DROPIN_DIR}/"))
                    || pattern.starts_with("sshd_config.d/")
            })
    })
}

/// Applies `ssh_pwauth`; returns the files written (host paths).
pub fn set_password_auth(
    root: &Root,
    state: &State,
    allow: bool,
) -> Result<Vec<PathBuf>, SshdError> {
    let value = if allow { "yes" } else { "no" };
    let mut written = Vec::new();
    let config = Path::new(SSHD_CONFIG);
    let main = root
        .read_optional_text(config)
        .map_err(PathError::fail("read", root.host_path(config)))?;
    // The drop-in only where sshd reads it, as cloud-init's `_includes_dconf` decides: an image
    // with the directory but without the `Include` would ignore it.
    let reads_dropins = main.as_deref().is_none_or(includes_dropins);
    if root.is_dir(SSHD_DROPIN_DIR) && reads_dropins {
        let path = Path::new(SSHD_DROPIN_DIR).join(SSHD_DROPIN_NAME);
        let text =
            format!("# Written by metaboot from ssh_pwauth.\n{PASSWORD_AUTHENTICATION} {value}\n");
        root.write_atomic(&path, text.as_bytes(), &WriteOptions::keep_or(0o644))?;
        written.push(root.host_path(path));
    } else if let Some(old) = main {
        let new = set_option(&old, PASSWORD_AUTHENTICATION, value);
        if new != old {
            root.write_atomic(config, new.as_bytes(), &WriteOptions::keep_or(0o644))?;
        }
        written.push(root.host_path(config));
    }
    let marker = state.sshd_password_auth_path();
    root.write_atomic(
        &marker,
        format!("{value}\n").as_bytes(),
        &WriteOptions::exact(0o644, None),
    )?;
    written.push(root.host_path(marker));
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_global_setting_and_keeps_the_rest() {
        let text = "Port 22\n#PasswordAuthentication yes\nPasswordAuthentication yes\nUsePAM yes\n\
                    passwordauthentication=yes\nMatch User bob\n  PasswordAuthentication yes\n";
        assert_eq!(
            set_option(text, PASSWORD_AUTHENTICATION, "no"),
            "Port 22\n#PasswordAuthentication yes\nPasswordAuthentication no\nUsePAM yes\n\
             Match User bob\n  PasswordAuthentication yes\n"
        );
    }

    #[test]
    fn inserts_before_the_first_match_or_at_the_end() {
        assert_eq!(
            set_option(
                "Port 22\nMatch all\n  X11Forwarding no\n",
                PASSWORD_AUTHENTICATION,
                "yes"
            ),
            "Port 22\nPasswordAuthentication yes\nMatch all\n  X11Forwarding no\n"
        );
        assert_eq!(
            set_option("Port 22", PASSWORD_AUTHENTICATION, "yes"),
            "Port 22\nPasswordAuthentication yes\n"
        );
        let once = set_option("Port 22\n", PASSWORD_AUTHENTICATION, "yes");
        assert_eq!(set_option(&once, PASSWORD_AUTHENTICATION, "yes"), once);
    }

    #[test]
    fn drop_in_when_the_directory_exists_else_sshd_config_and_always_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let state = State::new(&root);
        // Neither: only the marker for dropbear images.
        let written = set_password_auth(&root, &state, false).unwrap();
        let marker = root.host_path(state.sshd_password_auth_path());
        assert_eq!(written, std::slice::from_ref(&marker));
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "no\n");

        std::fs::create_dir_all(root.host_path("/etc/ssh")).unwrap();
        std::fs::write(root.host_path(SSHD_CONFIG), "Port 22\n").unwrap();
        set_password_auth(&root, &state, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.host_path(SSHD_CONFIG)).unwrap(),
            "Port 22\nPasswordAuthentication yes\n"
        );

        // The directory without an `Include` in sshd_config: sshd would not read a drop-in.
        std::fs::create_dir_all(root.host_path(SSHD_DROPIN_DIR)).unwrap();
        set_password_auth(&root, &state, false).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.host_path(SSHD_CONFIG)).unwrap(),
            "Port 22\nPasswordAuthentication no\n"
        );
        let dropin = root.host_path(SSHD_DROPIN_DIR).join(SSHD_DROPIN_NAME);
        assert!(!dropin.exists());

        std::fs::write(
            root.host_path(SSHD_CONFIG),
            "Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n",
        )
        .unwrap();
        set_password_auth(&root, &state, false).unwrap();
        assert!(
            std::fs::read_to_string(dropin)
                .unwrap()
                .ends_with("PasswordAuthentication no\n")
        );
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "no\n");
    }

    #[test]
    fn an_include_of_the_directory_is_recognised_in_its_forms() {
        for text in [
            "Include /etc/ssh/sshd_config.d/*.conf\n",
            "  include sshd_config.d/*.conf /etc/other\n",
            "Port 22\nInclude /etc/a /etc/ssh/sshd_config.d/50-x.conf\n",
        ] {
            assert!(includes_dropins(text), "{text}");
        }
        for text in [
            "#Include /etc/ssh/sshd_config.d/*.conf\n",
            "Include /etc/ssh/other.d/*.conf\n",
            "Port 22\n",
        ] {
            assert!(!includes_dropins(text), "{text}");
        }
    }

    #[test]
    fn a_config_that_is_not_utf8_is_left_as_it_is_with_an_error_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let state = State::new(&root);
        std::fs::create_dir_all(root.host_path("/etc/ssh")).unwrap();
        // A Latin-1 comment: a lossy read would write U+FFFD back over its byte.
        let latin1: &[u8] = b"# Gr\xfc\xdfe\nPort 22\n";
        std::fs::write(root.host_path(SSHD_CONFIG), latin1).unwrap();
        let err = set_password_auth(&root, &state, true).unwrap_err();
        let shown = crate::log::chain(&err);
        assert!(shown.contains("is not UTF-8 text"), "{shown}");
        assert!(shown.contains("sshd_config"), "{shown}");
        assert_eq!(std::fs::read(root.host_path(SSHD_CONFIG)).unwrap(), latin1);
    }
}
