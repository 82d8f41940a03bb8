//! The namespaces a build step runs in: `unshare` with a mount namespace (the step's mounts
//! vanish with it, even if it is killed) and a PID namespace whose first process is the step,
//! so that everything it started ends with it; `unshare` itself stays outside, as the step's
//! parent, and kills the step when it dies (`--kill-child`), so a step dies with the harness
//! (see [`crate::process::ProcessGroup::spawn_tied`]).

use std::process::Command;

/// Whether a step may use the machine's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The host's (mmdebstrap downloads packages).
    Host,
    /// None: a network namespace of its own with only a loopback that is down.
    None,
}

/// `unshare` ready for the step's command line: append the program and its arguments.
pub fn unshare(network: Network) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.arg("--mount");
    if network == Network::None {
        cmd.arg("--net");
    }
    cmd.args(["--pid", "--fork", "--kill-child", "--"]);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The step is unshare's child, the first process of its PID namespace: `--kill-child`
    /// makes the kernel kill it (and with it the namespace) when unshare dies.
    #[test]
    fn a_step_in_namespaces_dies_with_unshare() {
        for (network, net) in [(Network::Host, false), (Network::None, true)] {
            let cmd = unshare(network);
            assert_eq!(cmd.get_program(), "unshare");
            let args: Vec<&str> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
            for wanted in ["--mount", "--pid", "--fork", "--kill-child"] {
                assert!(args.contains(&wanted), "{wanted} in {args:?}");
            }
            assert_eq!(args.contains(&"--net"), net, "{args:?}");
            assert_eq!(args.last(), Some(&"--"), "{args:?}");
        }
    }
}
