//! The programs the renderers run on the running system for their live changes (`networkctl`,
//! `ifup`, `ip`; root `/` only), behind one type so that tests record the calls instead.

use std::process::Command;

/// What runs `PROGRAM ARGS` for a renderer's live changes: [`run`] on a guest, a recorder in
/// tests. An error is the message to report (the command and what it wrote on standard error).
pub type Run<'a> = &'a mut dyn FnMut(&str, &[String]) -> Result<(), String>;

/// Runs `program` with `args`; an error says the command and its standard error.
pub fn run(program: &str, args: &[String]) -> Result<(), String> {
    let shown = || {
        std::iter::once(program)
            .chain(args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{}: {}",
            shown(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(err) => Err(format!("{}: {err}", shown())),
    }
}
