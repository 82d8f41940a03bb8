//! Arguments more than one command takes, and what they resolve to: `run`'s options, the lab
//! state root, where the guest agent and `metaboot-server` come from, and the images built from
//! them. The command line ([`crate::cli`]) and the `run` command ([`crate::run`]) both use them.

use std::path::PathBuf;

use anyhow::Context;

use crate::guest::Via;
use crate::image::disk::DiskImage;
use crate::image::{self, debian, tiny};
use crate::scenario::cloud_image::own;
use crate::scenario::matrix::MetadataPath;
use crate::{lab, progress, scenario, workspace};

/// Longest user name `useradd` takes.
pub const MAX_USER_NAME_BYTES: usize = 32;

/// `run --user`: a user name as `useradd` takes it (a letter or `_` first, then letters,
/// digits, `_`, `.` and `-`): it goes on ssh's command line.
fn user_name(name: &str) -> Result<String, String> {
    let mut bytes = name.bytes();
    let first = bytes.next();
    let good = name.len() <= MAX_USER_NAME_BYTES
        && first.is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if good {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} is not a user name: 1 to {MAX_USER_NAME_BYTES} letters, digits, _ . - \
             starting with a letter or _"
        ))
    }
}

/// Most seconds `run --timeout` takes (a day): the boot deadlines are instants that far (plus
/// [`PROVISION_TIMEOUT`](crate::scenario::cloud_image::PROVISION_TIMEOUT)) ahead, which a
/// larger number would overflow.
pub const MAX_BOOT_TIMEOUT_SECS: u64 = 86_400;

#[derive(Debug, clap::Args)]
pub struct Run {
    /// Scenarios: full names (router/script), a path (router, isolated), a variant or flow
    /// (gzip-script, reboot), `demo` (one guest per path) or `all` (default).
    pub scenarios: Vec<String>,
    /// Boot this cloud image instead (any disk image QEMU reads, e.g. a "genericcloud" qcow2
    /// with cloud-init or metaboot), on an overlay: the file is never written.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["scenarios", "list"])]
    pub image: Option<PathBuf>,
    /// The image's default user, who gets the instance's SSH key (`ubuntu` on Ubuntu images).
    #[arg(
        long,
        value_name = "NAME",
        default_value = own::DEFAULT_USER,
        requires = "image",
        value_parser = user_name
    )]
    pub user: String,
    /// The network the image boots on.
    #[arg(long, value_enum, default_value_t = MetadataPath::Router, requires = "image")]
    pub path: MetadataPath,
    /// Seconds from QEMU's start to the first key login as the default user (the sign that
    /// the image provisioned itself through the chain), at most a day.
    #[arg(
        long,
        value_name = "SECS",
        requires = "image",
        value_parser = clap::value_parser!(u64).range(1..=MAX_BOOT_TIMEOUT_SECS)
    )]
    pub timeout: Option<u64>,
    /// Who starts QEMU: the harness itself, or a real libvirtd (started in the lab's
    /// namespace, with transient domains made by `virsh create`).
    #[arg(long, value_enum, default_value_t = Via::Qemu)]
    pub via: Via,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Guests booting at once.
    #[arg(long, short = 'j', default_value_t = scenario::DEFAULT_JOBS)]
    pub jobs: usize,
    /// Directory for keys, disks and console logs (default: `<cache>/runs/run-<time>`; the newest
    /// `MAX_KEPT_RUNS` are kept, and any another run still uses).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Leave the lab up afterwards.
    #[arg(long)]
    pub keep_lab: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub lab: LabArgs,
}

/// Options every lab command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct LabArgs {
    /// Where labs keep their state.
    #[arg(long, env = "METABOOT_LAB_STATE", default_value = lab::state::DEFAULT_STATE_ROOT)]
    pub state_root: PathBuf,
}

impl LabArgs {
    /// The state root made absolute from the current directory: a lab's files are opened by
    /// daemons that change directory, and by later commands run from anywhere.
    pub fn make_absolute(&mut self) -> anyhow::Result<()> {
        self.state_root = std::path::absolute(&self.state_root).with_context(|| {
            format!(
                "failed to make {} an absolute path",
                self.state_root.display()
            )
        })?;
        Ok(())
    }
}

/// Where `metaboot-server` comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The `metaboot-server` binary (default: build it with cargo).
    #[arg(long, env = "METABOOT_SERVER_BIN")]
    pub server_bin: Option<PathBuf>,
}

impl ServerArgs {
    /// The server binary, built if not given.
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        match &self.server_bin {
            Some(path) => Ok(path.clone()),
            None => workspace::build(workspace::SERVER).context("failed to build metaboot-server"),
        }
    }
}

/// Where the guest agent comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// A static `metaboot` binary to put into the image (default: build it with cargo).
    #[arg(long, env = "METABOOT_AGENT_BIN")]
    pub agent: Option<PathBuf>,
}

/// Builds (or reuses) the tiny image.
pub fn build_tiny(
    cache: &std::path::Path,
    out: Option<PathBuf>,
    agent: &AgentArgs,
) -> anyhow::Result<image::Image> {
    let agent = match &agent.agent {
        Some(path) => path.clone(),
        None => workspace::build(workspace::GUEST_AGENT)
            .context("failed to build the static guest agent")?,
    };
    let spec = tiny::TinyBuild {
        out: out.unwrap_or_else(|| cache.join("images")),
        package_cache: cache.join("packages"),
        agent,
    };
    std::fs::create_dir_all(&spec.out)
        .with_context(|| format!("failed to create {}", spec.out.display()))?;
    tiny::build(&spec).context("failed to build the tiny image")
}

/// Builds (or reuses) the Debian images of `flavours`, in that order.
pub fn build_debian(
    cache: &std::path::Path,
    out: Option<PathBuf>,
    agent: &AgentArgs,
    flavours: &[debian::Flavour],
    progress: &dyn progress::Progress,
) -> anyhow::Result<Vec<DiskImage>> {
    let agent = agent_after_preflight(debian::preflight, flavours, agent, || {
        workspace::build(workspace::GUEST_AGENT).context("failed to build the static guest agent")
    })?;
    let spec = debian::DebianBuild {
        out: out.unwrap_or_else(|| cache.join("images")),
        agent,
        flavours: flavours.to_vec(),
    };
    debian::build(&spec, progress)
}

/// The guest agent the Debian images of `flavours` need (`--agent`, else `build`'s), once
/// `preflight` ([`debian::preflight`]) passed: as non-root, or without mmdebstrap, the build
/// says so at once, not after minutes of cargo.
fn agent_after_preflight(
    preflight: impl FnOnce() -> anyhow::Result<()>,
    flavours: &[debian::Flavour],
    agent: &AgentArgs,
    build: impl FnOnce() -> anyhow::Result<PathBuf>,
) -> anyhow::Result<Option<PathBuf>> {
    preflight()?;
    if !flavours.contains(&debian::Flavour::Metaboot) {
        return Ok(None);
    }
    match &agent.agent {
        Some(path) => Ok(Some(path.clone())),
        None => build().map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `run` alone, as the command line parses it.
    #[derive(Debug, clap::Parser)]
    struct RunLine {
        #[command(flatten)]
        run: Run,
    }

    /// `--timeout` takes 1 s to a day; more is refused by the parser, before a lab is up,
    /// instead of overflowing the boot deadline's instant.
    #[test]
    fn a_boot_timeout_is_at_most_a_day() {
        use clap::Parser;
        let timeout = |secs: &str| {
            RunLine::try_parse_from(["run", "--image", "f.qcow2", "--timeout", secs])
                .map(|line| line.run.timeout)
        };
        assert_eq!(timeout("1").unwrap(), Some(1));
        let most = MAX_BOOT_TIMEOUT_SECS.to_string();
        assert_eq!(timeout(&most).unwrap(), Some(MAX_BOOT_TIMEOUT_SECS));
        for bad in ["0", "86401", "18446744073709551615", "1.5"] {
            let err = timeout(bad).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
        // The furthest deadline a run sets is an instant the clock can hold.
        let furthest = std::time::Duration::from_secs(MAX_BOOT_TIMEOUT_SECS)
            + crate::scenario::cloud_image::PROVISION_TIMEOUT;
        assert!(std::time::Instant::now().checked_add(furthest).is_some());
    }

    /// A machine that cannot build the Debian images says so before the agent is built.
    #[test]
    fn the_debian_preflight_comes_before_the_agent_build() {
        use debian::Flavour::{CloudInit, Metaboot};
        let none = AgentArgs { agent: None };
        let built = std::cell::Cell::new(false);
        let build = || {
            built.set(true);
            Ok(PathBuf::from("/target/metaboot"))
        };
        let refused = || anyhow::bail!("building the Debian images needs root");
        let err = agent_after_preflight(refused, &[Metaboot], &none, build).unwrap_err();
        assert!(err.to_string().contains("needs root"), "{err}");
        assert!(!built.get(), "no cargo build before the preflight passed");

        let agent = agent_after_preflight(|| Ok(()), &[Metaboot], &none, build).unwrap();
        assert_eq!(
            agent.as_deref(),
            Some(std::path::Path::new("/target/metaboot"))
        );
        assert!(built.get());
        let given = AgentArgs {
            agent: Some("/given/metaboot".into()),
        };
        let never = || -> anyhow::Result<PathBuf> { panic!("built though given") };
        let agent = agent_after_preflight(|| Ok(()), &[CloudInit, Metaboot], &given, never);
        assert_eq!(agent.unwrap(), Some(PathBuf::from("/given/metaboot")));
        let agent = agent_after_preflight(|| Ok(()), &[CloudInit], &none, never).unwrap();
        assert_eq!(agent, None);
    }

    #[test]
    fn user_names_are_what_useradd_takes() {
        for good in [
            "debian",
            "ubuntu",
            "_svc",
            "a.b-c_1",
            &"u".repeat(MAX_USER_NAME_BYTES),
        ] {
            assert!(user_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-oProxyCommand=touch /x",
            "1abc",
            "a b",
            "a@b",
            &"u".repeat(MAX_USER_NAME_BYTES + 1),
        ] {
            assert!(user_name(bad).is_err(), "{bad}");
        }
    }
}
