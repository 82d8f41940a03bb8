//! Logging: every line to the console (stderr) and to `<root>/var/log/metaboot.log`, with
//! control characters escaped so that no name or path from user data can forge a log line.

use std::borrow::Cow;
use std::error::Error;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

use nix::fcntl::OFlag;
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

use crate::root::Root;

/// The log file, under the root.
pub const LOG_FILE: &str = "/var/log/metaboot.log";
/// Mode of a new log file: script output lands there, and scripts may print anything.
pub const LOG_MODE: u32 = 0o600;

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

/// A writer factory whose writers escape control characters in each log record (the
/// formatter writes one whole record, newline included, per call).
struct Escaped<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaped<M> {
    type Writer = EscapedWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapedWriter(self.0.make_writer())
    }
}

struct EscapedWriter<W>(W);

impl<W: Write> Write for EscapedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, newline) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (buf, false),
        };
        let text = String::from_utf8_lossy(body);
        let mut out = escape_controls(&text).into_owned();
        if newline {
            out.push('\n');
        }
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The log file if it opened (writes go nowhere otherwise): one writer type either way, so
/// the formatter is instantiated once in the size-bound static binary.
struct LogFile(Option<Mutex<std::fs::File>>);

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter(self.0.as_ref().map(|file| {
            file.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }))
    }
}

struct LogFileWriter<'a>(Option<std::sync::MutexGuard<'a, std::fs::File>>);

impl Write for LogFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(file) => file.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

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
    let (file, warning) = match open_log(root) {
        Ok(file) => (Some(Mutex::new(file)), None),
        Err(err) => (
            None,
            Some(format!(
                "cannot open {}: {err}; logging to the console only",
                root.host_path(LOG_FILE).display()
            )),
        ),
    };
    let _ = builder
        .with_writer(Escaped(std::io::stderr.and(LogFile(file))))
        .try_init();
    warning
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("Failed to write /etc/hostname")]
    struct Outer(#[source] std::io::Error);

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
        let mut out = Vec::new();
        let mut writer = EscapedWriter(&mut out);
        writer.write_all(b"INFO group a\nb: bad\n").unwrap();
        assert_eq!(out, b"INFO group a\\nb: bad\n");
    }
}
