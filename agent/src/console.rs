//! Secrets shown to whoever has the machine's console (a random password, one the post-back
//! could not post), as cloud-init shows them: written to the root's `/dev/console`, never to
//! stderr, which the units send to the journal as well (readable by the `adm` group, and kept
//! on disk where the journal is persistent). A root without a console (a test root, a
//! container that has none) gets them on stderr only when stderr is a terminal; otherwise a
//! warning without the secret says where it could not be shown.

use std::io::{IsTerminal, Write};

use crate::root::Root;

/// The console device, under the root.
pub const CONSOLE: &str = "/dev/console";

/// Writes `text` to the console only; see the module's documentation.
pub fn show_secret(root: &Root, text: &str) {
    show_secret_or(root, text, std::io::stderr().is_terminal());
}

/// Where a secret was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Console,
    Stderr,
    /// Nowhere: only the warning saying so.
    Nowhere,
}

/// [`show_secret`], with whether stderr is a terminal (a person's, not the journal).
fn show_secret_or(root: &Root, text: &str, stderr_is_terminal: bool) -> Shown {
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .open(root.host_path(CONSOLE));
    let written = opened.and_then(|mut console| console.write_all(text.as_bytes()));
    match written {
        Ok(()) => Shown::Console,
        Err(_) if stderr_is_terminal => {
            eprint!("{text}");
            Shown::Stderr
        }
        Err(err) => {
            tracing::warn!(
                "a secret (a generated password) could not be shown on {CONSOLE}: {err}; it is \
                 not written to the log: run metaboot from a terminal, or give the root a console"
            );
            Shown::Nowhere
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_of_the_root_gets_the_secret_whatever_stderr_is() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        for terminal in [false, true] {
            // A file stands for the device: what is written to it is what the console shows.
            std::fs::write(dir.path().join("dev/console"), "").unwrap();
            let shown = show_secret_or(&root, "root:secret\n", terminal);
            assert_eq!(shown, Shown::Console);
            assert_eq!(
                std::fs::read_to_string(dir.path().join("dev/console")).unwrap(),
                "root:secret\n"
            );
        }
    }

    /// Without a console the secret goes to stderr only when it is a terminal: else nowhere
    /// (the journal keeps stderr), and no console file is made in the root.
    #[test]
    fn without_a_console_the_secret_goes_nowhere_unless_stderr_is_a_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert_eq!(
            show_secret_or(&root, "root:secret\n", false),
            Shown::Nowhere
        );
        assert!(!dir.path().join("dev").exists());
        assert_eq!(show_secret_or(&root, "", true), Shown::Stderr);
    }
}
