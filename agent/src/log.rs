//! Logging: every line to the console (stderr) and to `<root>/var/log/metaboot.log`, with
//! control characters escaped so that no name or path from user data can forge a log line.

use std::borrow::Cow;
use std::error::Error;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use nix::fcntl::OFlag;
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::root::Root;

mod record;

pub use record::rfc2822;

/// The log file, under the root.
pub const LOG_FILE: &str = "/var/log/metaboot.log";
/// Mode of a new log file: script output lands there, and scripts may print anything.
pub const LOG_MODE: u32 = 0o600;
/// Size past which a run starts a new log: the old one becomes `metaboot.log.1` (replacing
/// the one before), so every boot's lines and scripts' output never fill the disk.
pub const MAX_LOG_BYTES: i64 = 4 << 20;
/// The name the log is kept under when a run starts a new one.
pub const OLD_LOG_NAME: &str = "metaboot.log.1";

/// An error and its sources on one line, joined by ": ".
pub fn chain(err: &dyn Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out.replace('\n', " ")
}

/// `text` with every control character but tab escaped (`\n`, `\r`, `\x1b`, …), so that it
/// stays on one line and cannot drive a terminal.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            // C0, DEL and C1 controls are all below U+0100.
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The agent's logger: each record, its control characters escaped, to stderr and to the log
/// file if it opened, in one write each. A plain `Subscriber` rather than tracing-subscriber's
/// formatter: the agent logs events, never spans, and the static binary is size-bound.
struct Logger {
    max: Level,
    file: Option<&'static Mutex<std::fs::File>>,
}

/// The log file of the installed logger, where [`file_copy`] finds it.
static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

impl Subscriber for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let line = record::line(SystemTime::now(), event.metadata().level(), event);
        let line = escape_record(&line);
        let _ = io::stderr().write_all(line.as_bytes());
        if let Some(file) = self.file {
            let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = file.write_all(line.as_bytes());
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// A record with its control characters escaped, its own final newline kept.
fn escape_record(line: &str) -> Cow<'_, str> {
    let body = line.strip_suffix('\n').unwrap_or(line);
    match escape_controls(body) {
        Cow::Borrowed(_) => Cow::Borrowed(line),
        Cow::Owned(mut escaped) => {
            if body.len() < line.len() {
                escaped.push('\n');
            }
            Cow::Owned(escaped)
        }
    }
}

/// Keeps a log over [`MAX_LOG_BYTES`] as [`OLD_LOG_NAME`], so that the run starts a new one.
fn rotate(root: &Root) -> io::Result<()> {
    let (dir, name) = match root.parent(LOG_FILE, false) {
        Ok(found) => found,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let Some(stat) = dir.entry(&name)? else {
        return Ok(());
    };
    if crate::fsutil::kind(&stat) == nix::sys::stat::SFlag::S_IFREG && stat.st_size > MAX_LOG_BYTES
    {
        nix::fcntl::renameat(dir.fd(), name.as_os_str(), dir.fd(), OLD_LOG_NAME)?;
    }
    Ok(())
}

/// Opens the log for appending: created [`LOG_MODE`]; an existing log readable by others is
/// narrowed; a symlink there is refused (the console still gets everything).
fn open_log(root: &Root) -> io::Result<std::fs::File> {
    rotate(root)?;
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
    let (file, warning) = match open_log(root) {
        Ok(file) => (Some(file), None),
        Err(err) => (
            None,
            Some(format!(
                "cannot open {}: {err}; logging to the console only",
                root.host_path(LOG_FILE).display()
            )),
        ),
    };
    install(file, verbose);
    warning
}

/// Installs the global logger: stderr, and `file` (a log opened for appending) when given.
/// Later calls do nothing.
pub fn install(file: Option<std::fs::File>, verbose: bool) {
    let max = if verbose { Level::DEBUG } else { Level::INFO };
    let file = file.map(|file| FILE.get_or_init(|| Mutex::new(file)));
    let _ = tracing::subscriber::set_global_default(Logger { max, file });
}

/// A new descriptor of the installed logger's log file (for a process that goes on logging
/// to it, `apply::scripts`' output relay), `None` when it logs to the console only.
pub fn file_copy() -> Option<std::fs::File> {
    let file = FILE.get()?.lock().unwrap_or_else(PoisonError::into_inner);
    file.try_clone().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("Failed to write /etc/hostname")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_log_over_its_bound_is_kept_as_the_old_one_and_a_new_one_started() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let log = dir.path().join("var/log/metaboot.log");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(&log, "small\n").unwrap();
        drop(open_log(&root).unwrap());
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "small\n",
            "under the bound: kept"
        );
        let big = vec![b'x'; MAX_LOG_BYTES as usize + 1];
        std::fs::write(&log, &big).unwrap();
        let mut file = open_log(&root).unwrap();
        file.write_all(b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "new\n");
        let old = dir.path().join("var/log").join(OLD_LOG_NAME);
        assert_eq!(std::fs::metadata(old).unwrap().len(), big.len() as u64);
    }

    #[test]
    fn chain_joins_sources_on_one_line() {
        let err = Outer(std::io::Error::other("disk\nfull"));
        assert_eq!(chain(&err), "Failed to write /etc/hostname: disk full");
    }

    #[test]
    fn control_characters_are_escaped_and_tabs_kept() {
        assert_eq!(escape_controls("plain\tline"), "plain\tline");
        assert_eq!(
            escape_controls("a\nFORGED\r\u{1b}[2J\u{7f}\u{9b}"),
            "a\\nFORGED\\r\\x1b[2J\\x7f\\x9b"
        );
    }

    #[test]
    fn a_record_keeps_its_own_newline_only() {
        assert_eq!(
            escape_record("INFO group a\nb: bad\n"),
            "INFO group a\\nb: bad\n"
        );
        assert_eq!(escape_record("INFO plain\n"), "INFO plain\n");
    }
}
