//! `packages`, `package_update`, `package_upgrade` (cloud-init's
//! cc_package_update_upgrade_install, per instance, first of its final stage): the package
//! lists refreshed, the system upgraded and packages installed with the image's `apt-get`, as
//! cloud-init runs it on the Debian family (`DEBIAN_FRONTEND=noninteractive`, the same
//! options, `dist-upgrade` for an upgrade, `name=version` for a pinned package, `eatmydata` in
//! front when the image has it). Only on the running system: under another root there is no
//! package manager of that system to run.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::apply::tool::{self, ToolError};
use crate::retry::{Retry, RetryError, Transient};
use crate::userdata::cloud_config::{CloudConfig, is_true};

/// apt-get and the options cloud-init gives it (`APT_GET_COMMAND`): keep the image's changed
/// configuration files, no fsync per file, no questions, quiet progress.
pub const APT_GET: &[&str] = &[
    "apt-get",
    "--option=Dpkg::Options::=--force-confold",
    "--option=Dpkg::options::=--force-unsafe-io",
    "--assume-yes",
    "--quiet",
];

/// How long an apt-get command waits for another apt or dpkg (the apt-daily timer at boot) to
/// let go of apt's locks: cloud-init's `APT_LOCK_WAIT_TIMEOUT`.
pub const LOCK_TIMEOUT_SECONDS: u32 = 30;

/// How often the locks are tried meanwhile (cloud-init: every second).
pub const LOCK_POLL: Duration = Duration::from_secs(1);

/// apt's and dpkg's lock files (cloud-init's `APT_LOCK_FILES`): `fcntl` locks their holders
/// keep while they run.
pub const APT_LOCKS: &[&str] = &[
    "/var/lib/dpkg/lock-frontend",
    "/var/lib/dpkg/lock",
    "/var/cache/apt/archives/lock",
    "/var/lib/apt/lists/lock",
];

/// Most packages one `packages` list may name.
pub const MAX_PACKAGES: usize = 1000;

/// The wrapper cloud-init puts in front of apt-get when the image has it (no syncs during the
/// install; `apt_get_wrapper`'s `auto`).
pub const WRAPPER: &str = "eatmydata";

/// What the user data asks of the package manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Refresh the package lists (also done before an upgrade or an install, as cloud-init).
    pub update: bool,
    /// Upgrade every installed package (`dist-upgrade`).
    pub upgrade: bool,
    /// Packages to install: `name` or `name=version`.
    pub install: Vec<String>,
}

impl Request {
    /// Whether anything is asked.
    pub fn is_empty(&self) -> bool {
        !self.update && !self.upgrade && self.install.is_empty()
    }
}

/// A `packages` entry cloud-init would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPackages {
    #[error("packages[{0}]: a package is a name or a [name, version] list")]
    Entry(usize),
    #[error("packages lists {0} packages, more than {MAX_PACKAGES}")]
    TooMany(usize),
}

/// The request of `config`: either spelling of each switch (`apt_update` / `package_update`,
/// `apt_upgrade` / `package_upgrade`, read as cloud-init's `get_cfg_option_bool`), and the
/// `packages` list (a lone string is a list of one, as cloud-init's `get_cfg_option_list`).
pub fn request(config: &CloudConfig) -> Result<Request, BadPackages> {
    let on = |values: [&Option<Value>; 2]| values.iter().any(|v| v.as_ref().is_some_and(is_true));
    let install = match &config.packages {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => expand(entries)?,
        // A lone value is a list of one (a number as its text, as cloud-init's `str`).
        Some(Value::Number(number)) => expand(&[Value::String(number.to_string())])?,
        Some(lone) => expand(std::slice::from_ref(lone))?,
    };
    Ok(Request {
        update: on([&config.apt_update, &config.package_update]),
        upgrade: on([&config.package_upgrade, &config.apt_upgrade]),
        install,
    })
}

/// cloud-init's `expand_package_list` for apt: a name, or `[name]`, or `[name, version]`
/// (`name=version`; an empty version is no pin).
fn expand(entries: &[Value]) -> Result<Vec<String>, BadPackages> {
    if entries.len() > MAX_PACKAGES {
        return Err(BadPackages::TooMany(entries.len()));
    }
    let word = |value: &Value| match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let bad = || BadPackages::Entry(index);
            let name = match entry {
                Value::String(name) => name.clone(),
                Value::Array(pair) => match pair.as_slice() {
                    [name] => word(name).ok_or_else(bad)?,
                    [name, version] => {
                        let name = word(name).ok_or_else(bad)?;
                        match version {
                            Value::Null => name,
                            version => match word(version).ok_or_else(bad)? {
                                v if v.is_empty() => name,
                                v => format!("{name}={v}"),
                            },
                        }
                    }
                    _ => return Err(bad()),
                },
                _ => return Err(bad()),
            };
            // A name apt-get would read as an option is refused, not passed on.
            if name.is_empty() || name.starts_with('-') {
                return Err(bad());
            }
            Ok(name)
        })
        .collect()
}

/// What apt-get did (`update`, `dist-upgrade`, `install`, in that order) and what failed.
#[derive(Debug, Default)]
pub struct Applied {
    pub done: Vec<&'static str>,
    pub errors: Vec<PackagesError>,
}

/// Why a part of a request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    #[error("apt-get is not installed: metaboot installs packages with apt-get (Debian, Ubuntu)")]
    NoAptGet,
    #[error("{what} failed ({status}): {said}")]
    Failed {
        /// `apt-get update`, `apt-get install hello` (the options left out).
        what: String,
        status: std::process::ExitStatus,
        said: String,
    },
    #[error(transparent)]
    Tool(ToolError),
    #[error("another apt or dpkg held apt's locks for {LOCK_TIMEOUT_SECONDS} s ({0})")]
    Locked(String),
}

impl Transient for PackagesError {
    /// A lock another process holds goes away; anything else is apt-get's own verdict.
    fn is_transient(&self) -> bool {
        matches!(self, PackagesError::Locked(_))
    }
}

/// Whether another process holds one of `locks` (a file that does not exist holds nothing).
/// The probe takes each lock and lets it go at once, as cloud-init's does.
pub fn locks_held(locks: &[&Path]) -> bool {
    use nix::fcntl::{FcntlArg, fcntl};
    locks.iter().any(|path| {
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) else {
            return false;
        };
        let lock = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        // Refused: another process holds it. Closing the file releases the probe's lock.
        fcntl(&file, FcntlArg::F_SETLK(&lock)).is_err()
    })
}

/// Runs `command` once apt's locks are free, and again when it failed while another process
/// took them meanwhile (cloud-init's `_wait_for_apt_command`); gives up after
/// [`LOCK_TIMEOUT_SECONDS`].
fn when_unlocked(
    what: &str,
    command: impl Fn() -> Result<(), PackagesError>,
) -> Result<(), PackagesError> {
    let locks: Vec<&Path> = APT_LOCKS.iter().map(Path::new).collect();
    let deadline = Instant::now() + Duration::from_secs(LOCK_TIMEOUT_SECONDS.into());
    let attempt = |_| {
        if locks_held(&locks) {
            return Err(PackagesError::Locked("held before the command".into()));
        }
        command().map_err(|err| {
            if locks_held(&locks) {
                PackagesError::Locked(crate::log::chain(&err))
            } else {
                err
            }
        })
    };
    Retry::until(deadline)
        .with_backoff(LOCK_POLL, LOCK_POLL)
        .run(what, attempt)
        .map_err(|err| match err {
            RetryError::Permanent(err) => err,
            RetryError::Deadline { last, .. } | RetryError::Attempts { last, .. } => last,
        })
}

/// The command line for apt-get's `subcommand` (`update`, `dist-upgrade`, `install`) with
/// `packages`, after `wrapper` when the image has one.
pub fn command_line(wrapper: Option<&str>, subcommand: &str, packages: &[String]) -> Vec<String> {
    let lock = format!("--option=DPkg::Lock::Timeout={LOCK_TIMEOUT_SECONDS}");
    wrapper
        .into_iter()
        .chain(APT_GET.iter().copied())
        .chain([lock.as_str(), subcommand])
        .map(str::to_owned)
        .chain(packages.iter().cloned())
        .collect()
}

/// Runs apt-get's `subcommand` with `packages` (`DEBIAN_FRONTEND=noninteractive`, after
/// `wrapper`), once apt's locks are free.
fn apt_get(
    wrapper: Option<&str>,
    subcommand: &str,
    packages: &[String],
) -> Result<(), PackagesError> {
    let run = || {
        let argv = command_line(wrapper, subcommand, packages);
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        match tool::run_with_env(&argv[0], &args, &[("DEBIAN_FRONTEND", "noninteractive")]) {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err(PackagesError::NoAptGet),
            Err(ToolError::Failed { status, said, .. }) => Err(PackagesError::Failed {
                what: std::iter::once(format!("apt-get {subcommand}"))
                    .chain(packages.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(" "),
                status,
                said,
            }),
            Err(err) => Err(PackagesError::Tool(err)),
        }
    };
    when_unlocked(&format!("apt-get {subcommand}"), run)
}

/// The wrapper to put in front of apt-get; an error when the image has no apt-get.
fn wrapper() -> Result<Option<&'static str>, PackagesError> {
    if tool::find("apt-get").is_none() {
        return Err(PackagesError::NoAptGet);
    }
    Ok(tool::find(WRAPPER).map(|_| WRAPPER))
}

/// `apt-get update` on the running system (cloud-init's `update_package_sources`).
pub fn update() -> Result<(), PackagesError> {
    apt_get(wrapper()?, "update", &[])
}

/// Carries `request` out on the running system as cloud-init does: the lists refreshed
/// whenever anything is asked (unless `refreshed`: `apt` did it for this instance), then the
/// upgrade, then the install, each tried even when one before it failed (old lists may do);
/// every failure is kept.
pub fn apply(request: &Request, refreshed: bool) -> Applied {
    let mut applied = Applied::default();
    let wrapper = match wrapper() {
        Ok(wrapper) => wrapper,
        Err(err) => {
            applied.errors.push(err);
            return applied;
        }
    };
    let mut steps: Vec<(&'static str, &[String])> = Vec::new();
    if !refreshed {
        steps.push(("update", &[]));
    }
    if request.upgrade {
        steps.push(("dist-upgrade", &[]));
    }
    if !request.install.is_empty() {
        steps.push(("install", &request.install));
    }
    for (subcommand, packages) in steps {
        match apt_get(wrapper, subcommand, packages) {
            Ok(()) => applied.done.push(subcommand),
            Err(err) => applied.errors.push(err),
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_pins_and_both_spellings_of_the_switches() {
        let asked = request(&CloudConfig::from_json(json!({
            "packages": ["hello", ["tree", "2.1.0-1"], ["jq"], ["curl", null], ["vim", ""]],
            "apt_update": "yes",
            "package_upgrade": true,
        })))
        .unwrap();
        assert_eq!(
            asked,
            Request {
                update: true,
                upgrade: true,
                install: ["hello", "tree=2.1.0-1", "jq", "curl", "vim"]
                    .map(String::from)
                    .to_vec(),
            }
        );
        let lone = request(&CloudConfig::from_json(
            json!({"packages": "hello", "apt_upgrade": "on"}),
        ))
        .unwrap();
        assert_eq!(lone.install, ["hello"]);
        assert_eq!(
            request(&CloudConfig::from_json(json!({"packages": "-y"}))).unwrap_err(),
            BadPackages::Entry(0)
        );
        assert!(lone.upgrade && !lone.update);
        let nothing = request(&CloudConfig::from_json(
            json!({"package_update": false, "packages": []}),
        ))
        .unwrap();
        assert!(nothing.is_empty());
        assert!(request(&CloudConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn an_entry_cloud_init_refuses_is_an_error_naming_it() {
        for bad in [
            json!(["hello", {"name": "tree"}]),
            json!(["hello", ["a", "b", "c"]]),
            json!(["hello", []]),
            json!(["hello", "--allow-unauthenticated"]),
            json!(["hello", ""]),
        ] {
            let err = request(&CloudConfig::from_json(json!({ "packages": bad }))).unwrap_err();
            assert_eq!(err, BadPackages::Entry(1), "{bad}");
            assert_eq!(
                err.to_string(),
                "packages[1]: a package is a name or a [name, version] list"
            );
        }
    }

    #[test]
    fn at_most_max_packages() {
        let names: Vec<Value> = (0..=MAX_PACKAGES).map(|n| json!(format!("p{n}"))).collect();
        let err = request(&CloudConfig::from_json(json!({ "packages": names }))).unwrap_err();
        assert_eq!(err, BadPackages::TooMany(MAX_PACKAGES + 1));
        let names: Vec<Value> = (0..MAX_PACKAGES).map(|n| json!(format!("p{n}"))).collect();
        assert_eq!(
            request(&CloudConfig::from_json(json!({ "packages": names })))
                .unwrap()
                .install
                .len(),
            MAX_PACKAGES
        );
    }

    #[test]
    fn a_lock_another_process_holds_is_seen_and_a_free_or_missing_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock");
        std::fs::write(&lock, "").unwrap();
        let missing = dir.path().join("missing");
        assert!(!locks_held(&[&lock, &missing]));
        // Another process takes the lock as apt does (fcntl), and says so.
        let mut holder = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import fcntl, sys, time\n\
                 f = open(sys.argv[1], 'r+')\n\
                 fcntl.lockf(f, fcntl.LOCK_EX)\n\
                 print('held', flush=True)\n\
                 time.sleep(30)\n",
            )
            .arg(&lock)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut said = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
            &mut said,
        )
        .unwrap();
        assert_eq!(said, "held\n");
        assert!(locks_held(&[&missing, &lock]));
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert!(!locks_held(&[&lock]));
        assert_eq!(
            std::fs::read(&lock).unwrap(),
            b"",
            "the probe leaves the file alone"
        );
    }

    #[test]
    fn apt_get_runs_as_cloud_init_runs_it() {
        assert_eq!(
            command_line(
                Some("eatmydata"),
                "install",
                &["hello".into(), "tree=2".into()]
            )
            .join(" "),
            "eatmydata apt-get --option=Dpkg::Options::=--force-confold \
             --option=Dpkg::options::=--force-unsafe-io --assume-yes --quiet \
             --option=DPkg::Lock::Timeout=30 install hello tree=2"
        );
        assert_eq!(command_line(None, "update", &[])[0], "apt-get");
        assert_eq!(command_line(None, "update", &[]).last().unwrap(), "update");
    }
}
