//! Writing a config drive image, as nova's `ConfigDriveBuilder` does
//! (openstack/nova `nova/virt/configdrive.py`): the files in a private directory, then
//! `genisoimage` (nova's `mkisofs_cmd`) or `xorriso -as mkisofs` with nova's flags, ISO 9660
//! with Rock Ridge and Joliet, volume label `config-2`; or a 64 MiB vfat filesystem labelled
//! `config-2`, made with `mkfs.vfat` and filled with mtools (no loop mount, no root).
//!
//! The image holds the admin password, so it is made private (0600), in a temporary file next
//! to the destination, synced to disk and renamed into place only once complete. The working
//! directory a killed run leaves behind is removed by the next run for the same destination.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::file::DriveFile;
use super::interrupt;

/// The volume label nova gives a config drive.
pub const LABEL: &str = "config-2";
/// Size of a vfat config drive (nova's `CONFIGDRIVESIZE_BYTES`).
pub const VFAT_BYTES: u64 = 64 * 1024 * 1024;
/// The publisher recorded in an ISO image (nova writes its product and version there).
pub const PUBLISHER: &str = concat!("metaboot ", env!("CARGO_PKG_VERSION"));

/// The filesystem of a config drive (nova's `config_drive_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriveFormat {
    /// ISO 9660 with Rock Ridge and Joliet (nova's default).
    Iso9660,
    /// FAT, 64 MiB.
    Vfat,
}

/// A tool the image needs, and the Debian package that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub command: &'static str,
    pub package: &'static str,
}

/// nova's ISO tool, tried first.
pub const GENISOIMAGE: Tool = Tool {
    command: "genisoimage",
    package: "genisoimage",
};
/// The other ISO tool (`-as mkisofs` takes genisoimage's flags).
pub const XORRISO: Tool = Tool {
    command: "xorriso",
    package: "xorriso",
};
/// Makes the vfat filesystem.
pub const MKFS_VFAT: Tool = Tool {
    command: "mkfs.vfat",
    package: "dosfstools",
};
/// Copies the files into it.
pub const MCOPY: Tool = Tool {
    command: "mcopy",
    package: "mtools",
};

/// Why no image was written (nothing is left at the destination then).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "No ISO 9660 tool: install genisoimage or xorriso (apt-get install genisoimage), or use \
         --format vfat"
    )]
    NoIsoTool,
    #[error("{} is not installed: install the package {} (apt-get install {})", .0.command, .0.package, .0.package)]
    MissingTool(Tool),
    #[error("Cannot write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Cannot run {}", command.display())]
    CannotRun {
        command: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error(
        "{} exists and is not a regular file (a device, a directory or a symbolic link): the \
         drive is written as a new file there, which would replace it; give a file's path (then \
         copy the image where it goes, e.g. with dd)",
        .0.display()
    )]
    NotAFile(PathBuf),
    #[error("interrupted by a signal: nothing was written, and the working files were removed")]
    Interrupted,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where a tool is looked for after `PATH`: a user's `PATH` on Debian lacks them, and
/// `mkfs.vfat` lives there.
pub const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// The executable file `command` in a `PATH` directory, else in [`SBIN_DIRS`]: the full path
/// the tool is run by. Relative `PATH` entries are skipped.
pub fn find_tool(command: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(command))
        .find(|file| {
            fs::metadata(file)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// [`find_tool`] for `tool`, or the error naming its package.
fn found(tool: Tool) -> Result<PathBuf, ImageError> {
    find_tool(tool.command).ok_or(ImageError::MissingTool(tool))
}

/// The tools an image is made with, by the full paths found.
enum Tools {
    Iso { tool: Tool, path: PathBuf },
    Vfat { mkfs: PathBuf, mcopy: PathBuf },
}

/// Writes `files` as a config drive of `format` to `out`: a new regular file renamed into
/// place (an existing regular file is replaced whole; anything else there is refused). Ctrl-C,
/// SIGTERM or SIGHUP while it works ends it with [`ImageError::Interrupted`], its working
/// directory (which holds the admin password and the user data) removed.
pub fn build(files: &[DriveFile], format: DriveFormat, out: &Path) -> Result<(), ImageError> {
    if fs::symlink_metadata(out).is_ok_and(|meta| !meta.is_file()) {
        return Err(ImageError::NotAFile(out.to_owned()));
    }
    let signals = interrupt::Caught::new();
    let parent = output_dir(out);
    let name = out.file_name().map_or_else(
        || "config-drive".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    remove_stale_scratch(&parent, &name);
    // Find the tools before writing anything.
    let tools = match format {
        DriveFormat::Iso9660 => [GENISOIMAGE, XORRISO]
            .into_iter()
            .find_map(|tool| find_tool(tool.command).map(|path| Tools::Iso { tool, path }))
            .ok_or(ImageError::NoIsoTool)?,
        DriveFormat::Vfat => Tools::Vfat {
            mkfs: found(MKFS_VFAT)?,
            mcopy: found(MCOPY)?,
        },
    };
    let work = Scratch(parent.join(scratch_name(&name, std::process::id(), rand::random())));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&work.0)
        .map_err(io(&work.0))?;
    let tree = work.0.join("tree");
    write_tree(files, &tree)?;
    interrupted(&signals)?;
    let image = work.0.join("image");
    let made = match &tools {
        Tools::Iso { tool, path } => make_iso(*tool, path, &tree, &image),
        Tools::Vfat { mkfs, mcopy } => make_vfat(mkfs, mcopy, &tree, &image),
    };
    // Ctrl-C ends the tool too (its process group): said as the interruption it is.
    interrupted(&signals)?;
    made?;
    // The tools create it with the umask's mode: it holds the admin password.
    fs::set_permissions(&image, fs::Permissions::from_mode(0o600)).map_err(io(&image))?;
    // The image on disk before its rename, the rename on disk after it: a crash leaves the old
    // file or the whole new image under `out`, never a short one. An admin command run once
    // per drive: the two fsyncs cost nothing that matters.
    fs::File::open(&image)
        .and_then(|file| file.sync_all())
        .map_err(io(&image))?;
    interrupted(&signals)?;
    fs::rename(&image, out).map_err(io(out))?;
    fs::File::open(&parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io(&parent))?;
    Ok(())
}

/// The directory `out` goes in, as the tools are given it: a relative one starts with `./`,
/// so that one named `-dir` is never read as a tool's option.
fn output_dir(out: &Path) -> PathBuf {
    match out.parent() {
        Some(dir) if dir.is_absolute() => dir.to_owned(),
        Some(dir) => Path::new(".").join(dir),
        None => PathBuf::from("."),
    }
}

/// [`ImageError::Interrupted`] once a caught signal came.
fn interrupted(signals: &interrupt::Caught) -> Result<(), ImageError> {
    if signals.caught() {
        Err(ImageError::Interrupted)
    } else {
        Ok(())
    }
}

/// The name of the private working directory next to the output `name`, for the process `pid`:
/// `.<name>.<pid>-<nonce in hex>`.
fn scratch_name(name: &str, pid: u32, nonce: u64) -> String {
    format!(".{name}.{pid}-{nonce:x}")
}

/// The process whose working directory for the output `name` is `entry`, when `entry` is
/// named as [`scratch_name`] names one.
fn scratch_pid(entry: &str, name: &str) -> Option<i32> {
    let rest = entry
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix('.')?;
    let (pid, nonce) = rest.split_once('-')?;
    let digits = |text: &str, radix| !text.is_empty() && text.chars().all(|c| c.is_digit(radix));
    if !digits(pid, 10) || !digits(nonce, 16) {
        return None;
    }
    pid.parse().ok().filter(|&pid| pid > 0)
}

/// What `build` puts in its working directory.
const SCRATCH_ENTRIES: [&str; 2] = ["tree", "image"];

/// Removes the working directories that runs killed before their end (`kill -9` runs no
/// [`Scratch`] drop) left next to the output `name`: they hold the admin password and the user
/// data. Only a directory named as [`scratch_name`] names one for this output, whose process
/// is gone, and holding nothing but [`SCRATCH_ENTRIES`]; a run still at work is left alone.
/// Best effort: what cannot be removed stays, as it would without this.
fn remove_stale_scratch(parent: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = scratch_pid(&entry.file_name().to_string_lossy(), name) else {
            continue;
        };
        // Signal 0 only asks whether the process exists (EPERM: it does, as another user).
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        let path = entry.path();
        let ours = fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir())
            && fs::read_dir(&path).is_ok_and(|inside| {
                inside
                    .flatten()
                    .all(|e| SCRATCH_ENTRIES.iter().any(|&known| e.file_name() == known))
            });
        if gone && ours {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// A private working directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The drive's files under `tree` (directories 0700, files 0600: the tools copy the data,
/// Rock Ridge records modes as 0444/0555 with `-r`).
fn write_tree(files: &[DriveFile], tree: &Path) -> Result<(), ImageError> {
    for file in files {
        let path = tree.join(&file.path);
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir))?;
        }
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(&file.data))
            .map_err(io(&path))?;
    }
    Ok(())
}

/// Runs a tool, its output captured; a failure carries its stderr.
fn run(cmd: &mut Command) -> Result<(), ImageError> {
    let shown = format!("{cmd:?}");
    let output = cmd
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(|source| ImageError::CannotRun {
            command: PathBuf::from(cmd.get_program()),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(ImageError::Failed {
        command: shown,
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// nova's `_make_iso9660`: genisoimage's flags (xorriso takes them with `-as mkisofs`).
fn make_iso(tool: Tool, path: &Path, tree: &Path, image: &Path) -> Result<(), ImageError> {
    let mut cmd = Command::new(path);
    if tool == XORRISO {
        cmd.args(["-as", "mkisofs"]);
    }
    cmd.arg("-o")
        .arg(image)
        .args([
            "-ldots",
            "-allow-lowercase",
            "-allow-multidot",
            "-l",
            "-publisher",
            PUBLISHER,
            "-quiet",
            "-J",
            "-r",
            "-V",
            LABEL,
        ])
        .arg(tree);
    run(&mut cmd)
}

/// nova's `_make_vfat`, without the loop mount: a 64 MiB file, `mkfs.vfat -n config-2`, then
/// the tree copied in with mcopy.
fn make_vfat(mkfs: &Path, mcopy: &Path, tree: &Path, image: &Path) -> Result<(), ImageError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(image)
        .and_then(|f| f.set_len(VFAT_BYTES))
        .map_err(io(image))?;
    run(Command::new(mkfs).args(["-n", LABEL]).arg(image))?;
    let mut entries: Vec<PathBuf> = fs::read_dir(tree)
        .map_err(io(tree))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(tree))?;
    entries.sort();
    if entries.is_empty() {
        return Ok(());
    }
    run(Command::new(mcopy)
        .args(["-s", "-Q", "-i"])
        .arg(image)
        .args(&entries)
        .arg("::/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process id no process has now: a child that has exited and been waited for.
    fn dead_pid() -> u32 {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_killed_run_s_scratch_directory_is_removed_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        let dead = dead_pid();
        // What a run killed while mkisofs ran leaves: the tree, a partial image.
        let stale = at(&scratch_name("drive.iso", dead, 0xabc));
        fs::create_dir_all(stale.join("tree/openstack/latest")).unwrap();
        fs::write(stale.join("tree/openstack/latest/meta_data.json"), "pw").unwrap();
        fs::write(stale.join("image"), "partial").unwrap();
        // A run still at work, another output's, a directory holding something else, and
        // names `scratch_name` does not make: all left alone.
        let live = at(&scratch_name("drive.iso", std::process::id(), 0xdef));
        let other = at(&scratch_name("other.iso", dead, 0xabc));
        let foreign = at(&scratch_name("drive.iso", dead, 0x123));
        let odd = at(&format!(".drive.iso.{dead}-xyz"));
        let suffixed = at(&format!(".drive.iso.{dead}-abc.bak"));
        for kept in [&live, &other, &odd, &suffixed] {
            fs::create_dir_all(kept.join("tree")).unwrap();
        }
        fs::create_dir_all(foreign.join("notes")).unwrap();
        let out = at("drive.iso");
        // The tools may be missing here: the stale directory goes first all the same.
        let _ = build(&[], DriveFormat::Iso9660, &out);
        assert!(!stale.exists(), "the killed run's directory is still there");
        for kept in [&live, &other, &foreign, &odd, &suffixed] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
    }

    #[test]
    fn scratch_names_are_read_back_only_for_their_output() {
        assert_eq!(
            scratch_pid(&scratch_name("d.iso", 42, 0xbeef), "d.iso"),
            Some(42)
        );
        assert_eq!(scratch_pid(&scratch_name("d.iso", 42, 0xbeef), "d"), None);
        assert_eq!(scratch_pid(".d.iso.0-1", "d.iso"), None);
        assert_eq!(scratch_pid(".d.iso.-1", "d.iso"), None);
        assert_eq!(scratch_pid(".d.iso.1-", "d.iso"), None);
        assert_eq!(scratch_pid("d.iso.1-1", "d.iso"), None);
    }
}
