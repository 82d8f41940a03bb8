//! The guest's serial console: read live from QEMU, cleaned of ANSI escapes, written to a log
//! file with host timestamps, and searched for the tiny image's marker lines and for the lines
//! of a distribution's boot worth a timestamp (kernel, sshd, cloud-init or metaboot done).
//!
//! Times come from the host's monotonic clock around QEMU (the guest clock is wrong under TCG).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Prefix of the tiny image's marker lines (printed by its init).
pub const MARKER_PREFIX: &str = "metaboot-tiny: ";
/// The kernel ran /init.
pub const MARK_INIT: &str = "init reached";
/// DHCP gave the guest its address.
pub const MARK_NETWORK: &str = "network up";
/// `metaboot run` returned.
pub const MARK_METADATA: &str = "metadata fetched";
/// `metaboot run` is done and SSH listens: the guest is ready.
pub const MARK_PROVISIONED: &str = "provisioned";

/// The kernel started (a distribution's boot; the tiny image prints it too).
pub const MARK_KERNEL: &str = "kernel";
/// systemd started sshd (Debian's ssh.service).
pub const MARK_SSHD: &str = "sshd started";
/// cloud-init's final message ("Cloud-init v. 22.4.2 finished at …").
pub const MARK_CLOUD_INIT_FINISHED: &str = "cloud-init finished";
/// The guest agent's last line ("metaboot finished: status=done …").
pub const MARK_METABOOT_FINISHED: &str = "metaboot finished";

/// The marker a distribution's console line stands for, if any: its text is then the
/// marker's name, `: `, and the line.
pub fn distro_marker(line: &str) -> Option<&'static str> {
    if line.contains("Linux version ") {
        Some(MARK_KERNEL)
    } else if line.contains("Started ssh.service") {
        Some(MARK_SSHD)
    } else if line.contains("Cloud-init v. ") && line.contains(" finished at ") {
        Some(MARK_CLOUD_INIT_FINISHED)
    } else if line.contains("metaboot finished: ") {
        Some(MARK_METABOOT_FINISHED)
    } else {
        None
    }
}

/// Longest console line kept (a guest printing without newlines must not exhaust memory):
/// a longer one is read in pieces of this size.
pub const MAX_LINE_BYTES: usize = 4096;

/// How much of a piece cut at [`MAX_LINE_BYTES`] is matched again at the front of the next
/// piece: a marker across the cut is seen whole (the longest marker line /init prints is about
/// 150 bytes).
pub const MARKER_CARRY_BYTES: usize = 512;

/// A marker line and when the host read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Time since QEMU was started.
    pub at: Duration,
    /// The text after [`MARKER_PREFIX`].
    pub text: String,
}

#[derive(Debug, Default)]
struct Shared {
    markers: Vec<Marker>,
    closed: bool,
    panicked: bool,
}

/// Reads a console stream on a thread; see the module doc.
/// How often a wait looks at its stop flag.
pub const STOP_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct SerialMonitor {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    log: PathBuf,
}

impl SerialMonitor {
    /// Starts reading `console` (QEMU's stdout); `started` is when QEMU was started.
    pub fn start(
        console: impl Read + Send + 'static,
        log: &Path,
        started: Instant,
    ) -> anyhow::Result<Self> {
        let mut file = File::create(log).map_err(|e| {
            anyhow::anyhow!("failed to create the serial log {}: {e}", log.display())
        })?;
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let thread_shared = Arc::clone(&shared);
        thread::spawn(move || {
            let mut reader = BufReader::new(console);
            let mut raw = Vec::new();
            let mut matcher = Matcher::default();
            loop {
                raw.clear();
                let cut = match read_line_bounded(&mut reader, &mut raw) {
                    Ok(Some(piece)) => piece == Piece::Cut,
                    Ok(None) | Err(_) => break,
                };
                let at = started.elapsed();
                let line = strip_ansi(&String::from_utf8_lossy(&raw));
                // A failed log write loses log lines, not the markers the checks need.
                let _ = writeln!(file, "[{:>8.3}] {line}", at.as_secs_f64());
                let found = matcher.piece(&line, cut);
                let (lock, cvar) = &*thread_shared;
                let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(text) = found.marker {
                    state.markers.push(Marker { at, text });
                }
                if found.panicked {
                    state.panicked = true;
                }
                cvar.notify_all();
            }
            let _ = file.flush();
            let (lock, cvar) = &*thread_shared;
            lock.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
            cvar.notify_all();
        });
        Ok(Self {
            shared,
            log: log.to_owned(),
        })
    }

    /// Waits until a marker starting with `name` appears after index `from`; `None` at the
    /// deadline, when the console closed (QEMU exited) or the kernel panicked.
    pub fn wait_for(&self, name: &str, from: usize, deadline: Instant) -> Option<Marker> {
        let (lock, cvar) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(found) = state
                .markers
                .iter()
                .skip(from)
                .find(|m| m.text.starts_with(name))
            {
                return Some(found.clone());
            }
            let now = Instant::now();
            if state.closed || state.panicked || now >= deadline {
                return None;
            }
            state = cvar
                .wait_timeout(state, deadline - now)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// [`SerialMonitor::wait_for`], but looking at `stop` every [`STOP_POLL`] (a Ctrl-C's
    /// flag): `None` as soon as it is set, too.
    pub fn wait_for_unless(
        &self,
        name: &str,
        from: usize,
        deadline: Instant,
        stop: &AtomicBool,
    ) -> Option<Marker> {
        loop {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            let slice = (Instant::now() + STOP_POLL).min(deadline);
            if let Some(marker) = self.wait_for(name, from, slice) {
                return Some(marker);
            }
            let (lock, _) = &*self.shared;
            let state = lock.lock().unwrap_or_else(|p| p.into_inner());
            if state.closed || state.panicked || slice >= deadline {
                return None;
            }
        }
    }

    /// Waits until the console closes (QEMU exited) or the deadline passes; true when closed.
    pub fn wait_closed(&self, deadline: Instant) -> bool {
        let (lock, cvar) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !state.closed {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = cvar
                .wait_timeout(state, deadline - now)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }

    /// The markers seen so far.
    pub fn markers(&self) -> Vec<Marker> {
        let (lock, _) = &*self.shared;
        lock.lock()
            .unwrap_or_else(|p| p.into_inner())
            .markers
            .clone()
    }

    /// Whether the console closed (QEMU exited, or libvirt's domain is gone).
    pub fn closed(&self) -> bool {
        let (lock, _) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).closed
    }

    /// Whether the kernel panicked.
    pub fn panicked(&self) -> bool {
        let (lock, _) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).panicked
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

/// How a piece of console output read by [`read_line_bounded`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// At a newline, or where the console ended: the line is whole.
    Line,
    /// At [`MAX_LINE_BYTES`]: the line goes on in the next piece.
    Cut,
}

/// Reads one line (up to `\n`, which is not kept) into `out`, or its first
/// [`MAX_LINE_BYTES`] when it is longer: the rest is left for the next call, never dropped.
/// `None` at the end of the console. A read a signal interrupted (`boot`'s Ctrl-C handler is
/// installed without `SA_RESTART`) is read again: it is not the console's end.
fn read_line_bounded(
    reader: &mut impl BufRead,
    out: &mut Vec<u8>,
) -> std::io::Result<Option<Piece>> {
    let mut read_any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if buf.is_empty() {
            return Ok(read_any.then_some(Piece::Line));
        }
        read_any = true;
        let room = MAX_LINE_BYTES.saturating_sub(out.len());
        let newline = buf.iter().take(room + 1).position(|&b| b == b'\n');
        if let Some(i) = newline.filter(|&i| i <= room) {
            out.extend_from_slice(&buf[..i]);
            reader.consume(i + 1);
            return Ok(Some(Piece::Line));
        }
        let take = buf.len().min(room);
        out.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if out.len() >= MAX_LINE_BYTES {
            return Ok(Some(Piece::Cut));
        }
    }
}

/// What one piece of console output showed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Found {
    /// A marker's text: a tiny image's (after [`MARKER_PREFIX`]), or a distribution's
    /// ([`distro_marker`]'s name, `: `, the line).
    marker: Option<String>,
    /// The kernel panicked.
    panicked: bool,
}

/// Finds the markers in console output read piece by piece: the last [`MARKER_CARRY_BYTES`]
/// of a piece cut at [`MAX_LINE_BYTES`] are matched again joined to the next piece, so a marker
/// across a cut is seen whole. A tiny image's marker runs to the end of its line: in a cut
/// piece it waits for the next one, unless it starts before the part carried over (a marker
/// longer than that is taken as far as it goes, as it was read).
#[derive(Debug, Default)]
struct Matcher {
    /// The end of the last piece, when it was cut.
    carry: String,
}

impl Matcher {
    /// Matches `text`, a piece of console output (without its newline), `cut` when the line
    /// goes on in the next piece.
    fn piece(&mut self, text: &str, cut: bool) -> Found {
        let window = format!("{}{text}", self.carry);
        let carried_from = if cut {
            window.floor_char_boundary(window.len().saturating_sub(MARKER_CARRY_BYTES))
        } else {
            window.len()
        };
        let tiny = window
            .find(MARKER_PREFIX)
            .filter(|&at| !cut || at < carried_from);
        let marker = if let Some(at) = tiny {
            Some(window[at + MARKER_PREFIX.len()..].trim().to_owned())
        } else {
            // One the last piece showed already (within what it carried) is not counted again.
            distro_marker(&window)
                .filter(|_| distro_marker(&self.carry).is_none())
                .map(|name| format!("{name}: {}", window.trim()))
        };
        let panicked = window.contains("Kernel panic");
        self.carry = if cut {
            window[carried_from..].to_owned()
        } else {
            String::new()
        };
        Found { marker, panicked }
    }
}

/// Removes ANSI escape sequences (SeaBIOS paints the screen with them) and control characters.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte @..~
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ST (ESC \)
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                // Two-character sequences (ESC c, ESC 7, …)
                _ => {}
            },
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_seabios_escapes_and_carriage_returns() {
        assert_eq!(
            strip_ansi("\u{1b}[2J\u{1b}[01;01HSeaBIOS (version 1.16)\r"),
            "SeaBIOS (version 1.16)"
        );
        assert_eq!(strip_ansi("\u{1b}]0;title\u{7}ok\u{1b}c!"), "ok!");
        assert_eq!(strip_ansi("a\tb"), "a\tb");
    }

    #[test]
    fn finds_markers_in_order_and_stops_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let console = "\u{1b}[1mnoise\r\nmetaboot-tiny: init reached\r\n[ 1.0] x\nmetaboot-tiny: network up\n\
            metaboot-tiny: provisioned hostname=g1\n";
        let log = dir.path().join("serial.log");
        let monitor = SerialMonitor::start(
            std::io::Cursor::new(console.to_owned()),
            &log,
            Instant::now(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let init = monitor.wait_for(MARK_INIT, 0, deadline).unwrap();
        let done = monitor.wait_for(MARK_PROVISIONED, 0, deadline).unwrap();
        assert_eq!(done.text, "provisioned hostname=g1");
        assert!(init.at <= done.at);
        assert!(monitor.wait_closed(deadline));
        assert_eq!(
            monitor.wait_for(MARK_METADATA, 0, deadline),
            None,
            "closed console: no waiting"
        );
        assert_eq!(
            monitor.wait_for(MARK_INIT, 1, deadline),
            None,
            "only markers after index 1"
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("] noise\n"), "{text}");
        assert!(!text.contains('\u{1b}'));
    }

    /// A Ctrl-C while a guest boots ends the wait within a poll, not at the boot's deadline.
    #[test]
    fn a_wait_ends_soon_after_its_stop_flag_is_set() {
        let dir = tempfile::tempdir().unwrap();
        // A console that stays open and quiet.
        let (reader, _writer) = std::io::pipe().unwrap();
        let monitor =
            SerialMonitor::start(reader, &dir.path().join("serial.log"), Instant::now()).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let setter = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            setter.store(true, Ordering::SeqCst);
        });
        let began = Instant::now();
        let deadline = began + Duration::from_secs(120);
        assert_eq!(
            monitor.wait_for_unless(MARK_PROVISIONED, 0, deadline, &stop),
            None
        );
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "{:?}",
            began.elapsed()
        );
        assert!(STOP_POLL <= Duration::from_secs(1));
    }

    #[test]
    fn a_distributions_boot_lines_are_markers_too() {
        let dir = tempfile::tempdir().unwrap();
        let console = "\u{1b}[0m[    0.000000] Linux version 6.1.0-57-cloud-amd64 (debian-kernel@lists)\n\
            [\u{1b}[0;32m  OK  \u{1b}[0m] Started \u{1b}[0;1;39mssh.service\u{1b}[0m - OpenBSD Secure Shell server.\n\
            [   50.1] cloud-init[512]: Cloud-init v. 22.4.2 finished at Tue, 01 Dec 2026 23:55:01 +0000. Up 50.10 seconds\n\
            2026-12-01T23:55:01Z  INFO metaboot finished: status=done instance=i-1 errors=0 duration_ms=40\n";
        let monitor = SerialMonitor::start(
            std::io::Cursor::new(console.to_owned()),
            &dir.path().join("log"),
            Instant::now(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        for name in [
            MARK_KERNEL,
            MARK_SSHD,
            MARK_CLOUD_INIT_FINISHED,
            MARK_METABOOT_FINISHED,
        ] {
            let marker = monitor.wait_for(name, 0, deadline).unwrap();
            assert!(marker.text.starts_with(&format!("{name}: ")), "{marker:?}");
        }
        assert!(monitor.wait_closed(deadline));
        assert_eq!(monitor.markers().len(), 4);
        assert_eq!(distro_marker("Cloud-init v. 22.4.2 running 'init'"), None);
    }

    #[test]
    fn long_lines_are_cut_not_buffered_forever() {
        let mut reader = BufReader::new(std::io::Cursor::new(vec![b'x'; MAX_LINE_BYTES * 3]));
        let mut line = Vec::new();
        let piece = read_line_bounded(&mut reader, &mut line).unwrap();
        assert_eq!((piece, line.len()), (Some(Piece::Cut), MAX_LINE_BYTES));
        const { assert!(MARKER_CARRY_BYTES >= 2 * MARKER_PREFIX.len()) };
        const { assert!(MARKER_CARRY_BYTES <= MAX_LINE_BYTES / 4) };
    }

    /// Nothing past a cut is lost: the rest of a long line is the next piece, a line of
    /// exactly the limit is whole, and the console's end ends a line too.
    #[test]
    fn a_long_line_is_read_in_pieces_without_losing_bytes() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"end\n");
        input.extend_from_slice(&vec![b'y'; MAX_LINE_BYTES]);
        input.extend_from_slice(b"\nlast");
        // A small buffer: a piece comes in several reads.
        let mut reader = BufReader::with_capacity(1000, std::io::Cursor::new(input));
        let mut pieces = Vec::new();
        loop {
            let mut out = Vec::new();
            match read_line_bounded(&mut reader, &mut out).unwrap() {
                Some(piece) => pieces.push((piece, String::from_utf8(out).unwrap())),
                None => break,
            }
        }
        let x = "x".repeat(MAX_LINE_BYTES);
        let y = "y".repeat(MAX_LINE_BYTES);
        assert_eq!(
            pieces,
            [
                (Piece::Cut, x),
                (Piece::Line, format!("{}end", "x".repeat(10))),
                (Piece::Line, y),
                (Piece::Line, "last".to_owned()),
            ]
        );
    }

    /// A console whose reads a signal interrupts now and then (EINTR).
    struct Interrupted {
        data: std::io::Cursor<Vec<u8>>,
        calls: usize,
    }

    impl Read for Interrupted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls % 2 == 1 {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            // A few bytes at a time: a line takes several reads.
            let n = buf.len().min(4);
            self.data.read(&mut buf[..n])
        }
    }

    /// A read interrupted by a signal (a Ctrl-C handler without `SA_RESTART`) is not the end
    /// of the console: the markers after it are still read, and the console closes only at
    /// its real end.
    #[test]
    fn an_interrupted_read_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let console = Interrupted {
            data: std::io::Cursor::new(
                b"metaboot-tiny: init reached\nmetaboot-tiny: provisioned hostname=g1\n".to_vec(),
            ),
            calls: 0,
        };
        let monitor =
            SerialMonitor::start(console, &dir.path().join("serial.log"), Instant::now()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(monitor.wait_closed(deadline));
        let texts: Vec<String> = monitor.markers().into_iter().map(|m| m.text).collect();
        assert_eq!(texts, ["init reached", "provisioned hostname=g1"]);
    }

    /// A marker line after a long run of output without a newline (a boot menu painting the
    /// screen) is found whole wherever the cut falls: inside the prefix, inside the text, or
    /// with the marker far from it.
    #[test]
    fn a_marker_across_a_cut_is_found_whole() {
        let marker = "metaboot-tiny: provisioned hostname=g1 metaboot-rc=0 password-auth=no";
        for cut_inside in [0, 5, 14, 15, 30, marker.len() - 1, marker.len()] {
            let mut console = "=".repeat(MAX_LINE_BYTES - cut_inside);
            console.push_str(marker);
            console.push_str("\r\nnext line\n");
            let dir = tempfile::tempdir().unwrap();
            let monitor = SerialMonitor::start(
                std::io::Cursor::new(console),
                &dir.path().join("serial.log"),
                Instant::now(),
            )
            .unwrap();
            assert!(monitor.wait_closed(Instant::now() + Duration::from_secs(5)));
            let texts: Vec<String> = monitor.markers().into_iter().map(|m| m.text).collect();
            assert_eq!(
                texts,
                ["provisioned hostname=g1 metaboot-rc=0 password-auth=no"],
                "cut {cut_inside} bytes into the marker"
            );
        }
        // A distribution's line across a cut, counted once.
        let mut matcher = Matcher::default();
        let first = format!("{}Started ss", "-".repeat(MAX_LINE_BYTES - 10));
        assert_eq!(matcher.piece(&first, true), Found::default());
        let found = matcher.piece("h.service - OpenBSD Secure Shell server.", false);
        assert!(
            found
                .marker
                .as_deref()
                .is_some_and(|m| m.starts_with("sshd started: ") && m.ends_with("Shell server.")),
            "{found:?}"
        );
        let mut matcher = Matcher::default();
        let whole = format!("Started ssh.service{}", "-".repeat(MAX_LINE_BYTES - 19));
        assert!(matcher.piece(&whole, true).marker.is_some());
        assert_eq!(matcher.piece("more", false), Found::default());
        // A marker longer than what is carried is taken as far as it goes, once.
        let mut matcher = Matcher::default();
        let long = format!("metaboot-tiny: init reached {}", "z".repeat(MAX_LINE_BYTES));
        let found = matcher.piece(&long[..MAX_LINE_BYTES], true);
        assert!(
            found
                .marker
                .as_deref()
                .is_some_and(|m| m.starts_with("init reached z")),
            "{found:?}"
        );
        assert_eq!(matcher.piece(&long[MAX_LINE_BYTES..], false).marker, None);
    }

    #[test]
    fn a_kernel_panic_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        let monitor = SerialMonitor::start(rx, &dir.path().join("log"), Instant::now()).unwrap();
        tx.write_all(b"Kernel panic - not syncing: Attempted to kill init!\n")
            .unwrap();
        let start = Instant::now();
        assert_eq!(
            monitor.wait_for(MARK_INIT, 0, start + Duration::from_secs(10)),
            None
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(monitor.panicked());
    }
}
