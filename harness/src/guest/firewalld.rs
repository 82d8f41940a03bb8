//! A host running firewalld: the harness's libvirtd (libvirt before 10.4, as Debian 12's 9.0)
//! sets up its networks' NAT and nwfilter's rules through firewalld when firewalld runs, over
//! the system D-Bus, which no network namespace separates: the rules would land in the host's
//! firewall, not the lab's namespace. The libvirt preflight ([`super::libvirtd::preflight`])
//! refuses then ([`refuse_if_running`]).

use anyhow::bail;

use crate::process;

/// The program's name (`/usr/sbin/firewalld`, a Python script: its process's `comm`, or the
/// script after the interpreter in its command line).
pub const PROGRAM: &str = "firewalld";

/// Whether a command line is firewalld's: the script run by its `#!/usr/bin/python3 -s` line
/// (`/usr/bin/python3 -s /usr/sbin/firewalld --nofork --nopid` as systemd starts it), or a
/// program named firewalld.
pub fn is_firewalld(argv: &[&str]) -> bool {
    fn name(arg: &str) -> Option<&str> {
        std::path::Path::new(arg).file_name()?.to_str()
    }
    let Some((program, args)) = argv.split_first() else {
        return false;
    };
    if name(program) == Some(PROGRAM) {
        return true;
    }
    // The interpreter's options come before the script.
    name(program).is_some_and(|n| n.starts_with("python"))
        && args
            .iter()
            .find(|arg| !arg.starts_with('-'))
            .is_some_and(|script| name(script) == Some(PROGRAM))
}

/// Why the libvirt host cannot run beside the firewalld processes `pids` (`None` when there are
/// none), and what to do.
pub fn refusal(pids: &[u32]) -> Option<String> {
    let pid = pids.first()?;
    Some(format!(
        "firewalld (pid {pid}) is running: the harness's libvirtd would set up NAT and nwfilter \
         rules through it, over D-Bus, in the host's firewall instead of the lab's namespace; \
         stop it for the run (systemctl stop firewalld, and start it again afterwards), or run \
         without --via libvirt"
    ))
}

/// The running firewalld processes.
fn running() -> Vec<u32> {
    process::pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let text = String::from_utf8_lossy(&cmdline);
                let argv: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
                is_firewalld(&argv) && process::is_alive(*pid)
            })
        })
        .collect()
}

/// Fails, saying why and what to do, when firewalld is running.
pub fn refuse_if_running() -> anyhow::Result<()> {
    if let Some(why) = refusal(&running()) {
        bail!("{why}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firewalld_is_known_by_its_command_line() {
        for argv in [
            &[
                "/usr/bin/python3",
                "-s",
                "/usr/sbin/firewalld",
                "--nofork",
                "--nopid",
            ][..],
            &["/usr/bin/python3", "/usr/sbin/firewalld"],
            &["python3.11", "-Es", "/usr/sbin/firewalld"],
            &["/usr/sbin/firewalld", "--nofork"],
        ] {
            assert!(is_firewalld(argv), "{argv:?}");
        }
        for argv in [
            &["/usr/bin/firewall-cmd", "--state"][..],
            &["vim", "/usr/sbin/firewalld"],
            &["/usr/bin/python3", "/usr/bin/firewall-cmd", "firewalld"],
            &["/usr/bin/python3", "-s"],
            &[],
        ] {
            assert!(!is_firewalld(argv), "{argv:?}");
        }
    }

    #[test]
    fn the_libvirt_host_is_refused_while_firewalld_runs() {
        assert_eq!(refusal(&[]), None);
        let why = refusal(&[812]).unwrap();
        assert!(why.contains("pid 812"), "{why}");
        assert!(why.contains("systemctl stop firewalld"), "{why}");
        assert!(why.contains("without --via libvirt"), "{why}");
        // This machine's processes are read without failing.
        let _ = running();
    }
}
