//! Logging: every line to the console (stderr) and to `<root>/var/log/metaboot.log`.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;

use crate::root::Root;

/// The log file, under the root.
pub const LOG_FILE: &str = "/var/log/metaboot.log";

/// Installs the global logger; returns a warning when the log file cannot be opened (the
/// console still gets everything). Safe to call more than once (later calls do nothing).
pub fn init(root: &Root, verbose: bool) -> Option<String> {
    let level = if verbose { Level::DEBUG } else { Level::INFO };
    let path = root.join(LOG_FILE);
    let file = path
        .parent()
        .map(std::fs::create_dir_all)
        .transpose()
        .and_then(|_| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&path)
        });
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level);
    match file {
        Ok(file) => {
            let writer = std::io::stderr.and(Mutex::new(file));
            let _ = builder.with_writer(writer).try_init();
            None
        }
        Err(err) => {
            let _ = builder.with_writer(std::io::stderr).try_init();
            Some(format!(
                "cannot open {}: {err}; logging to the console only",
                path.display()
            ))
        }
    }
}
