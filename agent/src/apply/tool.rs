//! Running a program the image has (`xfs_growfs`, `btrfs`, `update-ca-certificates`) as
//! cloud-init runs it: absent is an answer of its own, a failure carries the program's words.

use std::io::{self, Write};
use std::process::{Command, Stdio};

/// systemd's runtime directory: present when systemd runs the system.
pub const SYSTEMD_RUNNING: &str = "/run/systemd/system";

/// True when systemd runs the system of `root`.
pub fn systemd_runs(root: &crate::root::Root) -> bool {
    root.is_dir(SYSTEMD_RUNNING)
}

/// A program that ran and failed, or could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {tool}")]
    Spawn {
        tool: String,
        #[source]
        source: io::Error,
    },
    #[error("{command} failed ({status}): {said}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        said: String,
    },
}

/// Runs `tool` with `args` and waits for it; `Ok(None)` when it is not installed.
pub fn run(tool: &str, args: &[&str]) -> Result<Option<()>, ToolError> {
    run_with_input(tool, args, &[])
}

/// [`run`], returning what the program wrote on its standard output.
pub fn output(tool: &str, args: &[&str]) -> Result<Option<Vec<u8>>, ToolError> {
    spawn(tool, args, &[], &[])
}

/// [`run`], with `input` on the program's standard input.
pub fn run_with_input(tool: &str, args: &[&str], input: &[u8]) -> Result<Option<()>, ToolError> {
    Ok(spawn(tool, args, input, &[])?.map(drop))
}

/// [`run`], with `env` added to the program's environment.
pub fn run_with_env(
    tool: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Option<()>, ToolError> {
    Ok(spawn(tool, args, &[], env)?.map(drop))
}

/// Where `tool` is in `PATH` (an executable file), if anywhere.
pub fn find(tool: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|file| {
            std::fs::metadata(file)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn spawn(
    tool: &str,
    args: &[&str],
    input: &[u8],
    env: &[(&str, &str)],
) -> Result<Option<Vec<u8>>, ToolError> {
    let spawned = Command::new(tool)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let output = match spawned.and_then(|mut child| {
        // A program that does not read its input is no error: it just never gets it.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input);
        }
        child.wait_with_output()
    }) {
        Ok(output) => output,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ToolError::Spawn {
                tool: tool.to_owned(),
                source,
            });
        }
    };
    if output.status.success() {
        return Ok(Some(output.stdout));
    }
    let mut said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if said.is_empty() {
        said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    }
    Err(ToolError::Failed {
        command: std::iter::once(tool)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" "),
        status: output.status,
        said,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_given_reaches_the_program_and_find_looks_in_path() {
        let err = run_with_env(
            "sh",
            &["-c", "echo \"$METABOOT_T\" >&2; exit 1"],
            &[("METABOOT_T", "seen")],
        )
        .unwrap_err();
        assert!(err.to_string().ends_with(": seen"), "{err}");
        assert!(find("sh").is_some());
        assert!(find("metaboot-no-such-tool").is_none());
    }

    #[test]
    fn absent_ran_and_failed_are_three_answers() {
        assert!(run("metaboot-no-such-tool", &[]).unwrap().is_none());
        assert_eq!(run("true", &[]).unwrap(), Some(()));
        let err = run("sh", &["-c", "echo broken >&2; exit 3"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sh -c echo broken >&2; exit 3 failed (exit status: 3): broken"
        );
        let err = run_with_input(
            "sh",
            &["-c", "read line; echo \"got $line\"; exit 1"],
            b"this\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("failed (exit status: 1): got this"),
            "{err}"
        );
    }
}
