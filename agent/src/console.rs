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

/// [`show_secret`], with whether stderr is a terminal (a person's, not the journal).
fn show_secret_or(root: &Root, text: &str, stderr_is_terminal: bool) {
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .open(root.host_path(CONSOLE));
    let written = opened.and_then(|mut console| console.write_all(text.as_bytes()));
    match written {
        Ok(()) => {}
        Err(_) if stderr_is_terminal => eprint!("{text}"),
        Err(err) => tracing::warn!(
            "a secret (a generated password) could not be shown on {CONSOLE}: {err}; it is not \
             written to the log: run metaboot from a terminal, or give the root a console"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_of_the_root_gets_the_secret_and_stderr_does_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        // A file stands for the device: what is written to it is what the console shows.
        std::fs::write(dir.path().join("dev/console"), "").unwrap();
        let root = Root::open(dir.path()).unwrap();
        show_secret(&root, "root:secret\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("dev/console")).unwrap(),
            "root:secret\n"
        );
    }
}
