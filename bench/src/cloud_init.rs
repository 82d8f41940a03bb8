//! The guest agent against cloud-init, one whole process each, same metadata from the same
//! chain: `metaboot run --root TMP --url URL` (fetch, decode, apply) and cloud-init 22.4 from
//! Debian (`apt-get download` + `dpkg -x` into the cache; never installed or run on the host)
//! reading the OpenStack metadata service and processing the user data's `#cloud-config`.
//!
//! What the cloud-init process does, all of it timed: start `/usr/bin/python3`, import
//! cloud-init, `MetadataReader(base).read_v2()` (the version list, the five OpenStack
//! documents, and the EC2 crawl, pointed at the same base URL instead of the hard-coded
//! 169.254.169.254), then `UserDataProcessor.process()` on the user data and the
//! `CloudConfigPartHandler` walk that merges the `#cloud-config` parts into the instance's
//! `cloud-config.txt`, and loads that back with `util.load_yaml` (what its config stage
//! reads). It applies nothing: a lower bound on cloud-init's first boot.
//!
//! `dpkg -x` leaves the modules without bytecode, which Debian compiles when it installs the
//! package (py3compile): so once unpacked, the modules are compiled once, untimed, into the
//! cache ([`compile_bytecode`]), and the timed runs load that bytecode as on an installed
//! image (they write none: `PYTHONDONTWRITEBYTECODE`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use metaboot_harness::image::packages::PackageCache;
use metaboot_harness::process::output_with_timeout;

use crate::measure::{ProcessCost, run_measured};
use crate::table::{Goal, Row, Unit};

/// The Python that runs cloud-init: Debian's, with the Debian Python packages cloud-init
/// depends on (not a pyenv or venv Python that may be first on PATH).
pub const PYTHON: &str = "/usr/bin/python3";
/// The Debian package.
pub const CLOUD_INIT_PACKAGE: &str = "cloud-init";
/// The upstream version the bench compares with (Debian 12's).
pub const CLOUD_INIT_VERSION: &str = "22.4";
/// Where `dpkg -x` puts cloud-init's modules, under the unpacked package.
pub const DIST_PACKAGES: &str = "usr/lib/python3/dist-packages";
/// Where Python keeps a directory's bytecode.
pub const BYTECODE_DIR: &str = "__pycache__";
/// Longest compiling cloud-init's modules may take (once per cache).
pub const COMPILE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest one run of either may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The cloud-init driver (see the module doc). argv: base URL, dist-packages dir, work dir.
pub const DRIVER: &str = r#"import sys
base, cloudinit_dir, work = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, cloudinit_dir)
from cloudinit import handlers, helpers, user_data, util
from cloudinit.handlers.cloud_config import CloudConfigPartHandler
from cloudinit.settings import PER_INSTANCE
from cloudinit.sources.helpers import ec2, openstack

class Reader(openstack.MetadataReader):
    """cloud-init's reader, its EC2 crawl pointed at the same base URL."""

    def _read_ec2_metadata(self):
        return ec2.get_instance_metadata(
            metadata_address=self.base_path,
            ssl_details=self.ssl_details,
            timeout=self.timeout,
            retries=self.retries,
        )

class Source:
    """What Paths needs of a datasource: the instance id."""

    def __init__(self, iid):
        self.iid = iid

    def get_instance_id(self):
        return self.iid

results = Reader(base).read_v2()
paths = helpers.Paths({"cloud_dir": work + "/cloud", "run_dir": work + "/run"})
paths.datasource = Source(results["metadata"]["instance-id"])
message = user_data.UserDataProcessor(paths).process(results["userdata"])
handler = CloudConfigPartHandler(paths)
data = {
    "handlers": {ctype: handler for ctype in handler.list_types()},
    "data": None,
    "frequency": PER_INSTANCE,
    "excluded": [],
    "handlerdir": work,
    "handlercount": 0,
}
handlers.run_part(handler, None, None, None, PER_INSTANCE, {"Content-Type": handlers.CONTENT_START})
handlers.walk(message, handlers.walker_callback, data)
handlers.run_part(handler, None, None, None, PER_INSTANCE, {"Content-Type": handlers.CONTENT_END})
config = util.load_yaml(util.load_file(paths.get_ipath("cloud_config")))
ec2_keys = len(results["ec2-metadata"])
print("instance-id=%s ec2-keys=%d cloud-config-keys=%s" % (
    results["metadata"]["instance-id"], ec2_keys, ",".join(sorted(config))))
if not ec2_keys or not config:
    sys.exit("the EC2 crawl or the cloud-config came back empty")
"#;

/// cloud-init, unpacked.
#[derive(Debug, Clone)]
pub struct CloudInit {
    /// Its Debian version.
    pub version: String,
    /// The directory holding the `cloudinit` package.
    pub dist_packages: PathBuf,
}

impl CloudInit {
    /// Downloads and unpacks cloud-init into the package cache (reused when cached).
    pub fn unpack(package_cache: &Path) -> anyhow::Result<Self> {
        let cache = PackageCache::new(package_cache);
        let package = cache
            .resolve(&[CLOUD_INIT_PACKAGE])?
            .pop()
            .context("apt resolved no cloud-init package")?;
        if !package.version.starts_with(CLOUD_INIT_VERSION) {
            bail!(
                "apt offers cloud-init {}, the bench compares with {CLOUD_INIT_VERSION} (Debian 12)",
                package.version
            );
        }
        let root = cache.unpack(&package)?;
        let dist_packages = root.join(DIST_PACKAGES);
        if !dist_packages
            .join("cloudinit/sources/helpers/openstack.py")
            .is_file()
        {
            bail!(
                "{} has no cloudinit/sources/helpers/openstack.py",
                dist_packages.display()
            );
        }
        compile_bytecode(&dist_packages)?;
        Ok(Self {
            version: package.version,
            dist_packages,
        })
    }

    /// Bytes of cloud-init's own Python files (Python and its libraries not counted; its
    /// bytecode neither).
    pub fn size_bytes(&self) -> u64 {
        tree_bytes(&self.dist_packages.join("cloudinit"))
    }

    /// One cloud-init run against `base_url`, working in `work` (must not exist yet).
    pub fn run(&self, driver: &Path, base_url: &str, work: &Path) -> anyhow::Result<ProcessCost> {
        std::fs::create_dir_all(work)
            .with_context(|| format!("failed to create {}", work.display()))?;
        let cost = run_measured(
            Command::new(PYTHON)
                .arg(driver)
                .arg(base_url)
                .arg(&self.dist_packages)
                .arg(work)
                .env_remove("PYTHONPATH")
                .env("PYTHONDONTWRITEBYTECODE", "1"),
            RUN_TIMEOUT,
        )?;
        if !cost.status.success() || !cost.stdout.contains("instance-id=") {
            bail!(
                "cloud-init's driver failed ({}): {}{}",
                cost.status,
                cost.stdout.trim(),
                tail(&cost.stderr)
            );
        }
        Ok(cost)
    }
}

/// Compiles every module under `dist_packages` to bytecode, as Debian does when it installs
/// the package, so that the timed runs do not compile them again each time. Modules already
/// compiled (a cache unpacked and compiled before) are left as they are.
pub fn compile_bytecode(dist_packages: &Path) -> anyhow::Result<()> {
    let out = output_with_timeout(
        Command::new(PYTHON)
            .args(["-m", "compileall", "-q"])
            .arg(dist_packages)
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONDONTWRITEBYTECODE")
            // With it set, py_compile writes checked-hash bytecode, which every timed run
            // would hash its sources against: timestamps, as Debian's install writes them.
            .env_remove("SOURCE_DATE_EPOCH"),
        COMPILE_TIMEOUT,
    )?;
    if !out.status.success() {
        bail!(
            "failed to compile the modules under {} ({}): {}{}; remove that directory's \
             package from the cache to unpack it again",
            dist_packages.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            tail(&String::from_utf8_lossy(&out.stderr))
        );
    }
    Ok(())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Sum of the sizes of the regular files under `dir`, bytecode ([`BYTECODE_DIR`]) left out.
pub fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() && entry.file_name() == BYTECODE_DIR => 0,
            Ok(kind) if kind.is_dir() => tree_bytes(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Writes the driver script into `dir`.
pub fn write_driver(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("cloud-init-driver.py");
    std::fs::write(&path, DRIVER).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

/// A fresh guest root for `metaboot run --root`: the files a minimal system has.
pub fn make_guest_root(root: &Path) -> anyhow::Result<()> {
    for sub in ["etc/metaboot", "root", "home", "tmp", "var/lib"] {
        let dir = root.join(sub);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    let files: [(&str, &str, u32); 6] = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
        ("etc/group", "root:x:0:\nsudo:x:27:\nusers:x:100:\n", 0o644),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640),
        ("etc/hostname", "localhost\n", 0o644),
        (
            "etc/hosts",
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n",
            0o644,
        ),
        // As on the tiny image: root is the only user and gets the keys unprefixed.
        ("etc/metaboot/metaboot.yaml", "disable_root: false\n", 0o644),
    ];
    for (path, text, mode) in files {
        let path = root.join(path);
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("failed to set the mode of {}", path.display()))?;
    }
    Ok(())
}

/// One `metaboot run --root ROOT --url URL` (ROOT is made fresh, so it is a first boot).
pub fn run_metaboot(agent: &Path, base_url: &str, root: &Path) -> anyhow::Result<ProcessCost> {
    make_guest_root(root)?;
    let cost = run_measured(
        Command::new(agent)
            .arg("run")
            .arg("--root")
            .arg(root)
            .arg("--url")
            .arg(base_url),
        RUN_TIMEOUT,
    )?;
    if !cost.status.success() || !cost.stderr.contains("status=done") {
        bail!(
            "metaboot run failed ({}): {}",
            cost.status,
            tail(&cost.stderr)
        );
    }
    Ok(cost)
}

/// The section's name in the table.
pub const SECTION: &str = "guest agent vs cloud-init 22.4 (same metadata, same chain)";
/// metaboot's wall time relative to cloud-init's it must reach.
pub const WALL_RATIO_GOAL: f64 = 1.0 / 30.0;
/// Runs of each per round: the runs are short, so a few more than the rounds.
pub const RUNS_PER_ROUND: usize = 3;
/// A tmpfs for the diagnostic run with a guest root where fsync costs nothing.
pub const TMPFS: &str = "/dev/shm";

/// Where a metaboot run's guest root lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootOn {
    /// An ext4 disk of its own (`disk.rs`): the goal's run, as in a guest.
    OwnDisk,
    /// A directory of the host's file system, shared with every other process.
    HostDirectory,
    /// tmpfs: syncs cost nothing.
    Tmpfs,
}

/// The samples of one round: every run of cloud-init and of metaboot on each root.
#[derive(Debug, Default)]
struct Round {
    cloud_init: Vec<ProcessCost>,
    own_disk: Vec<ProcessCost>,
    host_directory: Vec<ProcessCost>,
    tmpfs: Vec<ProcessCost>,
}

fn ms(cost: &ProcessCost) -> f64 {
    cost.wall.as_secs_f64() * 1e3
}

/// Interleaved runs (cloud-init, metaboot on its own disk, in a host directory, on tmpfs,
/// cloud-init, …) against `base_url`, [`RUNS_PER_ROUND`] of each per round; the section's
/// rows, the wall time ratios judged round by round.
pub fn measure(
    cloud_init: &CloudInit,
    agent: &Path,
    base_url: &str,
    dir: &Path,
    rounds: usize,
) -> anyhow::Result<Vec<Row>> {
    let driver = write_driver(dir)?;
    let disk = crate::disk::OwnDisk::create(dir)?;
    let tmpfs = tempfile::Builder::new()
        .prefix("metaboot-bench-")
        .tempdir_in(TMPFS)
        .ok();
    let mut all: Vec<Round> = Vec::new();
    for round in 1..=rounds {
        let mut samples = Round::default();
        for run in 1..=RUNS_PER_ROUND {
            crate::interrupt::check()?;
            let n = (round - 1) * RUNS_PER_ROUND + run;
            let theirs = cloud_init.run(&driver, base_url, &dir.join(format!("cloud-init-{n}")))?;
            let root = |on: RootOn| match on {
                RootOn::OwnDisk => disk.path().join(format!("root-{n}")),
                RootOn::HostDirectory => dir.join(format!("metaboot-root-{n}")),
                RootOn::Tmpfs => tmpfs.as_ref().map_or_else(
                    || dir.join(format!("tmpfs-root-{n}")),
                    |t| t.path().join(format!("root-{n}")),
                ),
            };
            make_guest_root(&root(RootOn::OwnDisk))?;
            disk.settle()?;
            let own = run_metaboot(agent, base_url, &root(RootOn::OwnDisk))?;
            make_guest_root(&root(RootOn::HostDirectory))?;
            let host = run_metaboot(agent, base_url, &root(RootOn::HostDirectory))?;
            println!(
                "  run {n}: cloud-init {:>6.1} ms (cpu {:>6.1} ms, {:>5.1} MiB), metaboot on its disk {:>6.1} ms (cpu {:>5.1} ms, {:>4.1} MiB), in a host directory {:>6.1} ms",
                ms(&theirs),
                theirs.cpu.as_secs_f64() * 1e3,
                theirs.max_rss_kib as f64 / 1024.0,
                ms(&own),
                own.cpu.as_secs_f64() * 1e3,
                own.max_rss_kib as f64 / 1024.0,
                ms(&host),
            );
            samples.cloud_init.push(theirs);
            samples.own_disk.push(own);
            samples.host_directory.push(host);
            if tmpfs.is_some() {
                let on_tmpfs = root(RootOn::Tmpfs);
                make_guest_root(&on_tmpfs)?;
                samples
                    .tmpfs
                    .push(run_metaboot(agent, base_url, &on_tmpfs)?);
                // Keep the tmpfs small.
                let _ = std::fs::remove_dir_all(&on_tmpfs);
            }
        }
        let median_ms = |v: &[ProcessCost]| {
            crate::measure::median(&v.iter().map(ms).collect::<Vec<_>>()).unwrap_or(f64::NAN)
        };
        let (theirs, own) = (median_ms(&samples.cloud_init), median_ms(&samples.own_disk));
        println!(
            "  round {round}: cloud-init {theirs:.1} ms, metaboot on its disk {own:.1} ms: 1/{:.2} ({})",
            theirs / own,
            if own / theirs <= WALL_RATIO_GOAL {
                "meets 1/30"
            } else {
                "misses 1/30"
            }
        );
        all.push(samples);
    }
    drop(disk);
    let per_round = |f: fn(&Round) -> &Vec<ProcessCost>, value: fn(&ProcessCost) -> f64| {
        all.iter()
            .map(|round| f(round).iter().map(value).collect::<Vec<f64>>())
            .collect::<Vec<_>>()
    };
    let wall = |c: &ProcessCost| c.wall.as_secs_f64();
    let cpu = |c: &ProcessCost| c.cpu.as_secs_f64();
    let rss = |c: &ProcessCost| c.max_rss_kib as f64;
    let agent_bytes = std::fs::metadata(agent)
        .with_context(|| format!("failed to stat {}", agent.display()))?
        .len() as f64;
    Ok(vec![
        Row::in_rounds(
            SECTION,
            "wall time, root on an ext4 disk of its own (vs cloud-init)",
            Unit::Seconds,
            &per_round(|r| &r.cloud_init, wall),
            &per_round(|r| &r.own_disk, wall),
            Goal::RatioAtMost(WALL_RATIO_GOAL),
        ),
        Row::in_rounds(
            SECTION,
            "wall time, root in a shared host directory: syncfs also writes others' data (vs cloud-init)",
            Unit::Seconds,
            &per_round(|r| &r.cloud_init, wall),
            &per_round(|r| &r.host_directory, wall),
            Goal::None,
        ),
        Row::in_rounds(
            SECTION,
            "wall time, root on tmpfs: no sync cost (vs cloud-init)",
            Unit::Seconds,
            &per_round(|r| &r.cloud_init, wall),
            &per_round(|r| &r.tmpfs, wall),
            Goal::None,
        ),
        Row::in_rounds(
            SECTION,
            "CPU time user+sys, own disk (vs cloud-init)",
            Unit::Seconds,
            &per_round(|r| &r.cloud_init, cpu),
            &per_round(|r| &r.own_disk, cpu),
            Goal::None,
        ),
        Row::new(
            SECTION,
            "peak RSS (vs cloud-init)",
            Unit::KiB,
            per_round(|r| &r.cloud_init, rss).concat(),
            per_round(|r| &r.own_disk, rss).concat(),
            Goal::None,
        ),
        Row::new(
            SECTION,
            "size: static binary (vs cloud-init's .py files)",
            Unit::Bytes,
            vec![cloud_init.size_bytes() as f64],
            vec![agent_bytes],
            Goal::None,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_root_has_what_metaboot_edits() {
        let dir = tempfile::tempdir().unwrap();
        make_guest_root(dir.path()).unwrap();
        for file in [
            "etc/passwd",
            "etc/shadow",
            "etc/hosts",
            "etc/metaboot/metaboot.yaml",
        ] {
            assert!(dir.path().join(file).is_file(), "{file}");
        }
        assert!(tree_bytes(dir.path()) > 50);
    }

    /// Unpacked modules get the bytecode an installed package has, once; the size row still
    /// counts the sources only.
    #[test]
    fn unpacked_modules_are_compiled_once_and_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join("cloudinit");
        std::fs::create_dir_all(package.join("sources")).unwrap();
        std::fs::write(package.join("__init__.py"), "").unwrap();
        std::fs::write(
            package.join("sources/reader.py"),
            "def read():\n    return 1\n",
        )
        .unwrap();
        let sources = tree_bytes(dir.path());
        compile_bytecode(dir.path()).unwrap();
        for module in [package.clone(), package.join("sources")] {
            let compiled: Vec<String> = std::fs::read_dir(module.join(BYTECODE_DIR))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                compiled.len() == 1 && compiled[0].ends_with(".pyc"),
                "{}: {compiled:?}",
                module.display()
            );
        }
        assert_eq!(tree_bytes(dir.path()), sources);
        // A second compile (a cached tree) finds nothing to do.
        compile_bytecode(dir.path()).unwrap();
        std::fs::write(package.join("broken.py"), "def (:\n").unwrap();
        let err = compile_bytecode(dir.path()).unwrap_err().to_string();
        assert!(err.contains("from the cache"), "{err}");
    }

    #[test]
    fn the_driver_points_the_ec2_crawl_at_the_base_url() {
        assert!(DRIVER.contains("metadata_address=self.base_path"));
        assert!(DRIVER.contains("read_v2()"));
    }
}
