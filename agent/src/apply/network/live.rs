//! The programs the renderers run on the running system for their live changes (`networkctl`,
//! `ifup`, `ip`; root `/` only), behind one type so that tests record the calls instead.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// What runs `PROGRAM ARGS` for a renderer's live changes: [`run`] on a guest, a recorder in
/// tests. An error is the message to report (the command and what it wrote on standard error).
pub type Run<'a> = &'a mut dyn FnMut(&str, &[String]) -> Result<(), String>;

/// Longest a live command runs before it is killed: `ifup` of a DHCP link whose server does
/// not answer lasts as long as its client waits (dhclient: 60 s), link after link, and the
/// boot waits for metaboot (agent/systemd/metaboot.service starts before ssh). Longer than
/// networkd's wait for its links (`networkd::WAIT_ONLINE_TIMEOUT_SECS`), which ends on its own
/// and says why.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(35);
/// Longest pause between two looks at a running command (and reads of what it wrote on
/// standard error): the pauses start at [`FIRST_POLL`] and double, so that a command that ends
/// at once (`ip`, `networkctl`) is not waited for longer than it ran.
const POLL: Duration = Duration::from_millis(20);
/// The first pause between two looks at a running command.
const FIRST_POLL: Duration = Duration::from_millis(1);

/// Runs `program` with `args`, for at most [`COMMAND_TIMEOUT`]; an error says the command and
/// its standard error.
pub fn run(program: &str, args: &[String]) -> Result<(), String> {
    run_within(program, args, COMMAND_TIMEOUT)
}

/// [`run`], killed after `bound`, with every process it started and left in its process
/// group (the DHCP client `ifup` runs).
pub(super) fn run_within(program: &str, args: &[String], bound: Duration) -> Result<(), String> {
    use std::os::unix::process::CommandExt as _;
    let shown = std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|err| format!("{shown}: {err}"))?;
    // Read as it comes, never waited for: a process it started (a DHCP client) may hold it
    // open after it ended.
    let mut stderr = child.stderr.take();
    if let Some(pipe) = &stderr {
        let _ = fcntl(pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    }
    let mut text = Vec::new();
    let deadline = Instant::now() + bound;
    let mut pause = FIRST_POLL;
    let ended = loop {
        if let Some(pipe) = stderr.as_mut() {
            let _ = pipe.read_to_end(&mut text);
        }
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(_)) => break true,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(POLL);
            }
            Ok(None) => {
                // The group the command leads: a DHCP client it started still trying would
                // configure the link after this step said it stays down.
                if let Ok(group) = i32::try_from(child.id()) {
                    // SAFETY: kill(2) with a negative pid signals that process group only.
                    unsafe { nix::libc::kill(-group, nix::libc::SIGKILL) };
                }
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            Err(err) => return Err(format!("{shown}: {err}")),
        }
    };
    if let Some(pipe) = stderr.as_mut() {
        let _ = pipe.read_to_end(&mut text);
    }
    let text = String::from_utf8_lossy(&text);
    if ended {
        return Err(format!("{shown}: {}", text.trim()));
    }
    let said = if text.trim().is_empty() { "" } else { ": " };
    Err(format!(
        "{shown}: killed after {} s without an end (a DHCP client without an answer waits that \
         long: check the network's DHCP server){said}{}",
        bound.as_secs_f32(),
        text.trim()
    ))
}
