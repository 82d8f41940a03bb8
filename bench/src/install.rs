//! What the bench needs on a fresh Debian 12 machine, installed with apt-get only when missing
//! (as root): nginx, haproxy and wrk for the chain's baselines, the Python packages cloud-init
//! imports, PostgreSQL for the storm, and (through scripts/install-lab-deps) the QEMU lab.
//! cloud-init itself is never installed: it is unpacked into the cache (see `cloud_init`).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use metaboot_harness::process::check_timeout;

use crate::baselines::which;

/// Deadline for one `apt-get` call.
pub const APT_TIMEOUT: Duration = Duration::from_secs(900);

/// Debian packages the bench installs, and how it tells they are there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A program on PATH (or in sbin).
    Tool(&'static str),
    /// A module `/usr/bin/python3` can import.
    PythonModule(&'static str),
    /// The PostgreSQL server binaries under /usr/lib/postgresql.
    Postgres,
}

/// Every package the bench needs, with its probe.
pub const PACKAGES: [(&str, Probe); 11] = [
    ("nginx-light", Probe::Tool("nginx")),
    ("haproxy", Probe::Tool("haproxy")),
    ("wrk", Probe::Tool("wrk")),
    ("python3-yaml", Probe::PythonModule("yaml")),
    ("python3-requests", Probe::PythonModule("requests")),
    ("python3-jinja2", Probe::PythonModule("jinja2")),
    ("python3-jsonpatch", Probe::PythonModule("jsonpatch")),
    ("python3-jsonschema", Probe::PythonModule("jsonschema")),
    ("python3-configobj", Probe::PythonModule("configobj")),
    ("python3-netifaces", Probe::PythonModule("netifaces")),
    ("postgresql", Probe::Postgres),
];

fn present(probe: Probe) -> bool {
    match probe {
        Probe::Tool(tool) => which(tool).is_file(),
        Probe::PythonModule(module) => Command::new(crate::cloud_init::PYTHON)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|out| out.status.success()),
        Probe::Postgres => std::fs::read_dir(metaboot_harness::postgres::POSTGRES_LIB_DIR)
            .is_ok_and(|dirs| {
                dirs.filter_map(Result::ok)
                    .any(|d| d.path().join("bin/initdb").is_file())
            }),
    }
}

/// The packages whose probe fails.
pub fn missing() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .filter(|(_, probe)| !present(*probe))
        .map(|(package, _)| *package)
        .collect()
}

/// Installs what is missing (apt-get update first, then one apt-get install); with `qemu`,
/// also runs scripts/install-lab-deps. Prints what it does.
pub fn ensure(qemu: bool) -> anyhow::Result<()> {
    let missing = missing();
    if missing.is_empty() {
        println!(
            "bench: nginx, haproxy, wrk, PostgreSQL and cloud-init's Python packages are installed"
        );
    } else {
        if !nix::unistd::geteuid().is_root() {
            bail!(
                "missing packages {}: run the bench as root (it installs them with apt-get)",
                missing.join(" ")
            );
        }
        println!("bench: installing {}", missing.join(" "));
        check_timeout(
            Command::new("apt-get")
                .args(["update", "-q"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            APT_TIMEOUT,
        )
        .context("failed to run apt-get update")?;
        check_timeout(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            APT_TIMEOUT,
        )
        .with_context(|| format!("failed to install {}", missing.join(" ")))?;
        let still = self::missing();
        if !still.is_empty() {
            bail!("still missing after apt-get install: {}", still.join(" "));
        }
    }
    if qemu {
        let script = metaboot_harness::workspace::root().join("scripts/install-lab-deps");
        check_timeout(&mut Command::new(&script), APT_TIMEOUT)
            .with_context(|| format!("failed to run {}", script.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_tell_present_from_absent() {
        assert!(present(Probe::Tool("sh")));
        assert!(!present(Probe::Tool("no-such-tool-metaboot")));
        assert!(!present(Probe::PythonModule("no_such_module_metaboot")));
    }
}
