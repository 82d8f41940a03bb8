//! Logging: every line to the console (stderr) and to `<root>/var/log/metaboot.log`.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

use nix::fcntl::OFlag;
use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;

use crate::root::Root;

/// The log file, under the root.
pub const LOG_FILE: &str = "/var/log/metaboot.log";
/// Mode of a new log file: script output lands there, and scripts may print anything.
pub const LOG_MODE: u32 = 0o600;

/// Opens the log for appending: created [`LOG_MODE`]; an existing log readable by others is
/// narrowed; a symlink there is refused (the console still gets everything).
fn open_log(root: &Root) -> io::Result<std::fs::File> {
    let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT;
    let file = root.open_file(LOG_FILE, flags, LOG_MODE, false, true)?;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & !0o007))?;
    }
    Ok(file)
}

/// Installs the global logger; returns a warning when the log file cannot be opened (the
/// console still gets everything). Safe to call more than once (later calls do nothing).
pub fn init(root: &Root, verbose: bool) -> Option<String> {
    let level = if verbose { Level::DEBUG } else { Level::INFO };
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level);
    match open_log(root) {
        Ok(file) => {
            let writer = std::io::stderr.and(Mutex::new(file));
            let _ = builder.with_writer(writer).try_init();
            None
        }
        Err(err) => {
            let _ = builder.with_writer(std::io::stderr).try_init();
            Some(format!(
                "cannot open {}: {err}; logging to the console only",
                root.host_path(LOG_FILE).display()
            ))
        }
    }
}
