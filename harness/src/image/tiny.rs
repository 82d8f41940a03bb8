//! The tiny image: a busybox initramfs with the Debian cloud kernel, the virtio modules,
//! dropbear and the static guest agent, built from the recipe in `images/tiny/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use super::cache::InputHash;
use super::cpio::{Archive, Entry};
use super::packages::{self, DownloadFailed, Package, PackageCache};
use super::{Image, Manifest, modules, output};
use crate::process::check;

/// A file of the recipe, placed into the image as is.
struct RecipeFile {
    /// Its name in `images/tiny/`.
    name: &'static str,
    /// Where it goes in the image.
    path: &'static str,
    mode: u32,
    content: &'static str,
}

macro_rules! recipe {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../images/tiny/",
            $name
        ))
    };
}

/// The recipe's files (every one is an input of the cache key).
const FILES: &[RecipeFile] = &[
    RecipeFile {
        name: "init",
        path: "init",
        mode: 0o755,
        content: recipe!("init"),
    },
    RecipeFile {
        name: "dropbear-connection",
        path: "usr/sbin/dropbear-connection",
        mode: 0o755,
        content: recipe!("dropbear-connection"),
    },
    RecipeFile {
        name: "shutdown",
        path: "sbin/shutdown",
        mode: 0o755,
        content: recipe!("shutdown"),
    },
    RecipeFile {
        name: "udhcpc.script",
        path: "etc/udhcpc.script",
        mode: 0o755,
        content: recipe!("udhcpc.script"),
    },
    RecipeFile {
        name: "metaboot.yaml",
        path: "etc/metaboot/metaboot.yaml",
        mode: 0o644,
        content: recipe!("metaboot.yaml"),
    },
    RecipeFile {
        name: "passwd",
        path: "etc/passwd",
        mode: 0o644,
        content: recipe!("passwd"),
    },
    RecipeFile {
        name: "group",
        path: "etc/group",
        mode: 0o644,
        content: recipe!("group"),
    },
    RecipeFile {
        name: "shadow",
        path: "etc/shadow",
        mode: 0o600,
        content: recipe!("shadow"),
    },
    RecipeFile {
        name: "shells",
        path: "etc/shells",
        mode: 0o644,
        content: recipe!("shells"),
    },
    RecipeFile {
        name: "nsswitch.conf",
        path: "etc/nsswitch.conf",
        mode: 0o644,
        content: recipe!("nsswitch.conf"),
    },
];

/// `ROLE PACKAGE` lines: which Debian packages the image is made of.
const PACKAGES: &str = recipe!("packages");

/// The kernel modules the init loads (dependencies are added).
const MODULES: &str = recipe!("modules");

/// The ELF interpreter of Debian's amd64 binaries, as they name it.
const LOADER: &str = "lib64/ld-linux-x86-64.so.2";

/// Where the loader finds libraries without ld.so.cache (glibc's built-in slibdir on Debian).
const LIB_DIR: &str = "lib/x86_64-linux-gnu";

/// What a line of `images/tiny/packages` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Kernel,
    Busybox,
    Dropbear,
    Lib,
}

fn recipe_packages() -> anyhow::Result<Vec<(Role, &'static str)>> {
    lines(PACKAGES)
        .map(|line| {
            let (role, name) = line
                .split_once(char::is_whitespace)
                .with_context(|| format!("images/tiny/packages: `{line}` is not `ROLE PACKAGE`"))?;
            let role = match role {
                "kernel" => Role::Kernel,
                "busybox" => Role::Busybox,
                "dropbear" => Role::Dropbear,
                "lib" => Role::Lib,
                other => bail!("images/tiny/packages: unknown role {other}"),
            };
            Ok((role, name.trim()))
        })
        .collect()
}

/// Non-empty lines without `#` comments.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Inputs of a tiny image build.
#[derive(Debug, Clone)]
pub struct TinyBuild {
    /// Directory the image goes to (`tiny-<key>/` inside it, and a `tiny` symlink to the newest).
    pub out: PathBuf,
    /// Package cache directory.
    pub package_cache: PathBuf,
    /// The static guest agent binary.
    pub agent: PathBuf,
}

/// Prefix of a tiny build's scratch directory in the image directory (see
/// [`leftovers`](super::leftovers)).
pub const SCRATCH_PREFIX: &str = ".tiny-";

/// Builds the tiny image unless an image with the same input key exists.
pub fn build(spec: &TinyBuild) -> anyhow::Result<Image> {
    // What builds killed before they could clean up left (a running build's stays).
    super::leftovers::remove_dead(&spec.out, SCRATCH_PREFIX);
    PackageCache::new(&spec.package_cache).remove_leftovers();
    match build_from_lists(spec) {
        // A version the local lists name is gone from the archive: once more, from fresh lists
        // (the new versions make a new image key).
        Err(err) if DownloadFailed::in_chain(&err) => {
            eprintln!("{err:#}: refreshing apt's package lists and resolving again");
            packages::refresh_lists().context(format!("{err:#}"))?;
            build_from_lists(spec)
        }
        done => done,
    }
}

/// The build with the versions apt's lists name now.
fn build_from_lists(spec: &TinyBuild) -> anyhow::Result<Image> {
    let started = Instant::now();
    let cache = PackageCache::new(&spec.package_cache);
    let resolved = resolve(&cache)?;
    let agent = fs::read(&spec.agent)
        .with_context(|| format!("failed to read the guest agent {}", spec.agent.display()))?;

    let mut key = InputHash::new("tiny");
    add_recipe_files(&mut key, FILES);
    key.add("recipe:packages", PACKAGES.as_bytes());
    key.add("recipe:modules", MODULES.as_bytes());
    for (_, package) in &resolved {
        key.add(
            &format!("package:{}", package.spec()),
            package.file_name().as_bytes(),
        );
    }
    key.add("agent:metaboot", &agent);
    let key_hex = key.key();
    let dir = spec.out.join(format!("tiny-{key_hex}"));
    if let Some(image) = cached(&spec.out, &dir)? {
        return Ok(image);
    }

    let mut archive = Archive::new();
    base_layout(&mut archive);
    for file in FILES {
        archive.file(file.path, file.mode, file.content.as_bytes().to_vec());
    }
    archive.file("usr/bin/metaboot", 0o755, agent);

    let unpacked = |role: Role| -> anyhow::Result<Vec<PathBuf>> {
        resolved
            .iter()
            .filter(|(r, _)| *r == role)
            .map(|(_, p)| cache.unpack(p))
            .collect()
    };
    let kernel_root = one(unpacked(Role::Kernel)?, "kernel")?;
    let busybox_root = one(unpacked(Role::Busybox)?, "busybox")?;
    let dropbear_root = one(unpacked(Role::Dropbear)?, "dropbear")?;
    let lib_roots = unpacked(Role::Lib)?;

    add_busybox(&mut archive, &busybox_root)?;
    add_dropbear(&mut archive, &dropbear_root, &lib_roots)?;
    let (vmlinuz, module_order) = add_kernel_modules(&mut archive, &kernel_root)?;

    let tmp = super::leftovers::scratch_path(&spec.out, SCRATCH_PREFIX, &key_hex);
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("failed to create {}", tmp.display()))?;
    let result = output::write_image(&tmp, &archive, &vmlinuz).and_then(|written| {
        let manifest = Manifest {
            kind: "tiny".into(),
            key: key_hex.clone(),
            inputs: key.inputs().to_vec(),
            packages: resolved.iter().map(|(_, p)| p.spec()).collect(),
            modules: module_order,
            kernel_file: vmlinuz
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            kernel_bytes: Some(written.kernel_bytes),
            initrd_bytes: written.initrd_bytes,
            content_bytes: archive.content_len() as u64,
            build_seconds: started.elapsed().as_secs_f64(),
        };
        let json = serde_json::to_vec_pretty(&manifest).context("failed to encode the manifest")?;
        fs::write(tmp.join(super::MANIFEST), json).context("failed to write the manifest")?;
        output::sync_staged(&tmp).map(drop)
    });
    if let Err(err) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(err);
    }
    place(&spec.out, &tmp, &dir)
}

/// Adds the recipe's files to the cache key: each one's name, where it goes in the image, its
/// mode and its content.
fn add_recipe_files(key: &mut InputHash, files: &[RecipeFile]) {
    for file in files {
        key.add(
            &format!("recipe:{} {} mode {:o}", file.name, file.path, file.mode),
            file.content.as_bytes(),
        );
    }
}

/// The complete image in `dir` (under `out`), reused: held, marked used and linked as the
/// newest. None when there is none; a directory there that is not a complete image is set
/// aside first, so that the build's rename can put a new one in its place (unless a run holds
/// it: then the build stops saying so).
fn cached(out: &Path, dir: &Path) -> anyhow::Result<Option<Image>> {
    if let Ok(image) = Image::open(dir) {
        output::mark_used(dir);
        output::link_latest(out, dir)?;
        return Ok(Some(Image {
            cached: true,
            ..image
        }));
    }
    let name = dir
        .file_name()
        .map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned());
    let aside = super::leftovers::scratch_path(out, SCRATCH_PREFIX, &format!("incomplete-{name}"));
    output::set_aside_incomplete(dir, &aside, Image::is_complete)?;
    Ok(None)
}

/// Renames the finished image `tmp` to `dir` (under `out`), links it as the newest and prunes
/// older ones; opens it.
fn place(out: &Path, tmp: &Path, dir: &Path) -> anyhow::Result<Image> {
    if let Err(err) = fs::rename(tmp, dir) {
        let _ = fs::remove_dir_all(tmp);
        // A concurrent build finished the same key first: use theirs.
        if !dir.is_dir() {
            return Err(err)
                .with_context(|| format!("failed to move the image to {}", dir.display()));
        }
    }
    output::link_latest(out, dir)?;
    output::prune(out, dir, output::MAX_CACHED_IMAGES);
    Image::open(dir)
}

fn one(mut roots: Vec<PathBuf>, role: &str) -> anyhow::Result<PathBuf> {
    if roots.len() != 1 {
        bail!(
            "images/tiny/packages must name exactly one {role} package, not {}",
            roots.len()
        );
    }
    roots.pop().context("one element")
}

fn base_layout(archive: &mut Archive) {
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "root",
    ] {
        archive.dir(dir, if dir == "root" { 0o700 } else { 0o755 });
    }
    for dir in ["tmp", "var/tmp"] {
        archive.dir(dir, 0o1777);
    }
    for dir in [
        "var/lib/metaboot",
        "persist",
        "etc/dropbear",
        "lib/modules",
        LIB_DIR,
    ] {
        archive.dir(dir, 0o755);
    }
    // The kernel opens /dev/console for /init before anything can mount devtmpfs.
    archive.add(
        "dev/console",
        Entry::CharDev {
            mode: 0o600,
            major: 5,
            minor: 1,
        },
    );
    archive.add(
        "dev/null",
        Entry::CharDev {
            mode: 0o666,
            major: 1,
            minor: 3,
        },
    );
    archive.file("etc/hostname", 0o644, b"tiny\n".to_vec());
}

fn add_busybox(archive: &mut Archive, root: &Path) -> anyhow::Result<()> {
    let busybox = root.join("bin/busybox");
    let data =
        fs::read(&busybox).with_context(|| format!("failed to read {}", busybox.display()))?;
    archive.file("bin/busybox", 0o755, data);
    // busybox-static is static: it runs on the host to list its own applets.
    let list = check(Command::new(&busybox).arg("--list-full"))
        .context("failed to list the busybox applets")?;
    for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // A symlink named busybox would replace the binary itself.
        if applet.rsplit('/').next() == Some("busybox") || archive.contains(applet) {
            continue;
        }
        archive.symlink(applet, "/bin/busybox");
    }
    Ok(())
}

fn add_dropbear(archive: &mut Archive, root: &Path, lib_roots: &[PathBuf]) -> anyhow::Result<()> {
    let dropbear = root.join("usr/sbin/dropbear");
    archive.file("usr/sbin/dropbear", 0o755, read(&dropbear)?);
    if root.join("usr/bin/dropbearkey").is_file() {
        archive.file(
            "usr/bin/dropbearkey",
            0o755,
            read(&root.join("usr/bin/dropbearkey"))?,
        );
    }
    // Ask the packaged loader which libraries dropbear needs, searching only the packages.
    let loader = lib_roots
        .iter()
        .map(|r| r.join(LIB_DIR).join("ld-linux-x86-64.so.2"))
        .find(|p| p.is_file())
        .context("no package in images/tiny/packages provides the ELF loader (libc6)")?;
    let search: Vec<String> = lib_roots
        .iter()
        .flat_map(|r| [r.join(LIB_DIR), r.join("usr").join(LIB_DIR)])
        .filter(|d| d.is_dir())
        .map(|d| d.display().to_string())
        .collect();
    let listing = check(
        Command::new(&loader)
            .arg("--list")
            .arg("--library-path")
            .arg(search.join(":"))
            .arg(&dropbear),
    )
    .context("failed to list dropbear's libraries")?;
    for (soname, path) in parse_loader_list(&listing)? {
        archive.file(&format!("{LIB_DIR}/{soname}"), 0o755, read(&path)?);
    }
    archive.file(LOADER, 0o755, read(&loader)?);
    Ok(())
}

/// `(soname, path)` pairs from `ld.so --list`; fails on a library it could not find.
fn parse_loader_list(listing: &str) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut libs = Vec::new();
    for line in listing.lines() {
        let Some((name, rest)) = line.trim().split_once(" => ") else {
            continue;
        };
        if name.starts_with('/') {
            continue; // the loader itself
        }
        if rest.starts_with("not found") {
            bail!("dropbear needs {name}, which no package in images/tiny/packages provides");
        }
        let path = rest.rsplit_once(" (").map_or(rest, |(p, _)| p);
        libs.push((name.to_owned(), PathBuf::from(path)));
    }
    Ok(libs)
}

fn add_kernel_modules(
    archive: &mut Archive,
    root: &Path,
) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let boot = root.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .with_context(|| format!("failed to list {}", boot.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("the kernel package has no /boot/vmlinuz-*")?;
    let modules_dir = root.join("lib/modules");
    let version_dir = fs::read_dir(&modules_dir)
        .with_context(|| format!("failed to list {}", modules_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .context("the kernel package has no /lib/modules/<version>")?;
    let index = modules::index(&version_dir)?;
    let roots: Vec<String> = lines(MODULES).map(str::to_owned).collect();
    let order = modules::load_order(&roots, |name| {
        let path = index
            .get(name)
            .with_context(|| format!("the kernel has no module {name}"))?;
        Ok(modules::depends(&read(path)?))
    })?;
    for name in &order {
        let path = index
            .get(name)
            .with_context(|| format!("the kernel has no module {name}"))?;
        archive.file(&format!("lib/modules/{name}.ko"), 0o644, read(path)?);
    }
    archive.file(
        "etc/modules.order",
        0o644,
        format!("{}\n", order.join("\n")).into_bytes(),
    );
    Ok((vmlinuz, order))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("failed to read {}", path.display()))
}

/// The recipe's packages at the versions apt would install, with their roles.
fn resolve(cache: &PackageCache) -> anyhow::Result<Vec<(Role, Package)>> {
    let recipe = recipe_packages()?;
    let mut names = Vec::new();
    for (role, name) in &recipe {
        names.push(match role {
            Role::Kernel => cache.resolve_meta(name)?,
            _ => (*name).to_owned(),
        });
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let packages = cache.resolve(&refs)?;
    Ok(recipe
        .into_iter()
        .map(|(role, _)| role)
        .zip(packages)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_parses() {
        let packages = recipe_packages().unwrap();
        assert_eq!(
            packages.iter().filter(|(r, _)| *r == Role::Kernel).count(),
            1
        );
        assert!(packages.contains(&(Role::Dropbear, "dropbear-bin")));
        assert!(lines(MODULES).any(|m| m == "virtio_net"));
        assert!(
            FILES
                .iter()
                .any(|f| f.path == "init" && f.content.starts_with("#!/bin/sh"))
        );
        // The init hands each SSH connection to the script it names.
        let init = FILES.iter().find(|f| f.path == "init").unwrap();
        let connection = FILES
            .iter()
            .find(|f| f.name == "dropbear-connection")
            .unwrap();
        assert!(init.content.contains(&format!("-e /{}", connection.path)));
        assert!(connection.content.contains("dropbear -i") && connection.mode == 0o755);
    }

    /// A finished image in `dir`: manifest, kernel and initramfs.
    fn complete_image(dir: &Path, key: &str) {
        fs::create_dir_all(dir).unwrap();
        let manifest = Manifest {
            kind: "tiny".into(),
            key: key.into(),
            inputs: Vec::new(),
            packages: Vec::new(),
            modules: Vec::new(),
            kernel_file: "vmlinuz-test".into(),
            kernel_bytes: Some(KERNEL_CONTENT.len() as u64),
            initrd_bytes: INITRD_CONTENT.len() as u64,
            content_bytes: 1,
            build_seconds: 0.0,
        };
        fs::write(
            dir.join(super::super::MANIFEST),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        fs::write(dir.join(super::super::KERNEL), KERNEL_CONTENT).unwrap();
        fs::write(dir.join(super::super::INITRD), INITRD_CONTENT).unwrap();
    }

    /// The kernel [`complete_image`] writes.
    const KERNEL_CONTENT: &[u8] = b"kernel";
    /// The initramfs [`complete_image`] writes.
    const INITRD_CONTENT: &[u8] = b"initrd";

    /// A kernel or initramfs shorter than its manifest records (a power loss before it reached
    /// the disk) makes the image incomplete, built anew; a manifest from before the kernel's
    /// size was recorded is still read.
    #[test]
    fn a_file_cut_short_under_a_complete_manifest_is_built_anew() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("tiny-0123abcd");
        complete_image(&dir, "0123abcd");
        assert!(Image::is_complete(&dir));
        for file in [super::super::INITRD, super::super::KERNEL] {
            complete_image(&dir, "0123abcd");
            fs::File::options()
                .write(true)
                .open(dir.join(file))
                .unwrap()
                .set_len(2)
                .unwrap();
            let err = format!("{:#}", Image::open(&dir).unwrap_err());
            assert!(
                err.contains("has 2 bytes where its manifest records 6"),
                "{err}"
            );
        }
        assert!(cached(out.path(), &dir).unwrap().is_none());
        assert!(!dir.exists(), "set aside for the build");

        complete_image(&dir, "0123abcd");
        let manifest = dir.join(super::super::MANIFEST);
        let mut old: serde_json::Value =
            serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("kernel_bytes");
        fs::write(&manifest, serde_json::to_vec(&old).unwrap()).unwrap();
        assert!(Image::is_complete(&dir), "an older manifest");
    }

    /// A `tiny-<key>` directory that is not a complete image (a prune cut short, a file
    /// deleted) is set aside, and the new build takes its place: the next run reuses that.
    #[test]
    fn a_damaged_image_of_the_key_is_built_anew() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("tiny-0123abcd");
        complete_image(&dir, "0123abcd");
        fs::remove_file(dir.join(super::super::INITRD)).unwrap();

        assert!(cached(out.path(), &dir).unwrap().is_none());
        assert!(!dir.exists(), "the damaged directory is set aside");
        let tmp = super::super::leftovers::scratch_path(out.path(), SCRATCH_PREFIX, "0123abcd");
        complete_image(&tmp, "0123abcd");
        let image = place(out.path(), &tmp, &dir).unwrap();
        assert_eq!(image.dir, dir);
        assert!(image.initrd.is_file() && !tmp.exists());
        let left: Vec<String> = fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left.len(),
            2,
            "the image and its link, nothing aside: {left:?}"
        );
        assert_eq!(
            fs::read_link(out.path().join("tiny")).unwrap(),
            Path::new("tiny-0123abcd")
        );

        let again = cached(out.path(), &dir).unwrap().expect("reused");
        assert!(again.cached && again.initrd.is_file());
    }

    /// A damaged directory a process holds is left to it (and the build stops: see
    /// [`a_build_stops_when_a_run_holds_the_damaged_image`]); nothing under the name is touched
    /// when it is complete.
    #[test]
    fn only_an_incomplete_image_no_one_holds_is_set_aside() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("tiny-held");
        fs::create_dir(&dir).unwrap();
        let held = super::super::in_use::hold(&dir).unwrap();
        let aside = out.path().join(".tiny-incomplete-tiny-held.1");
        assert!(output::set_aside_incomplete(&dir, &aside, Image::is_complete).is_err());
        assert!(dir.is_dir() && !aside.exists());
        drop(held);
        complete_image(&dir, "held");
        assert!(!output::set_aside_incomplete(&dir, &aside, Image::is_complete).unwrap());
        assert!(Image::is_complete(&dir) && !aside.exists());
        let gone = out.path().join("tiny-gone");
        assert!(output::set_aside_incomplete(&gone, &aside, Image::is_complete).unwrap());
    }

    /// A damaged `tiny-<key>` a run holds cannot be replaced (the new image could not be
    /// renamed into its place): the build stops before building, saying why, and the run keeps
    /// its directory.
    #[test]
    fn a_build_stops_when_a_run_holds_the_damaged_image() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("tiny-0123abcd");
        complete_image(&dir, "0123abcd");
        fs::remove_file(dir.join(super::super::INITRD)).unwrap();
        let run = super::super::in_use::hold(&dir).unwrap();

        let err = cached(out.path(), &dir).unwrap_err();
        assert!(
            format!("{err:#}").contains("a run still uses it"),
            "{err:#}"
        );
        assert!(
            dir.join(super::super::MANIFEST).is_file(),
            "the run's files stay"
        );

        drop(run);
        assert!(cached(out.path(), &dir).unwrap().is_none());
        assert!(!dir.exists(), "set aside once the run ends");
    }

    /// Every part of a recipe file is an input of the key: a file moved elsewhere in the image
    /// makes another image, as a changed mode or content does.
    #[test]
    fn a_recipe_files_destination_is_part_of_the_key() {
        let key = |path: &'static str, mode: u32, content: &'static str| {
            let mut key = InputHash::new("tiny");
            add_recipe_files(
                &mut key,
                &[RecipeFile {
                    name: "udhcpc.script",
                    path,
                    mode,
                    content,
                }],
            );
            key.key()
        };
        let base = key("etc/udhcpc.script", 0o755, "#!/bin/sh\n");
        assert_eq!(base, key("etc/udhcpc.script", 0o755, "#!/bin/sh\n"));
        assert_ne!(
            base,
            key("usr/share/udhcpc/default.script", 0o755, "#!/bin/sh\n")
        );
        assert_ne!(base, key("etc/udhcpc.script", 0o644, "#!/bin/sh\n"));
        assert_ne!(base, key("etc/udhcpc.script", 0o755, "#!/bin/sh -e\n"));
    }

    #[test]
    fn parses_the_loader_listing() {
        let listing = "\tlinux-vdso.so.1 (0x00007fd4)\n\
            \tlibz.so.1 => /c/zlib1g/lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\
            \t/lib64/ld-linux-x86-64.so.2 => /c/libc6/ld.so (0x7f)\n";
        assert_eq!(
            parse_loader_list(listing).unwrap(),
            [(
                "libz.so.1".to_owned(),
                PathBuf::from("/c/zlib1g/lib/x86_64-linux-gnu/libz.so.1")
            )]
        );
        let err = parse_loader_list("\tlibgmp.so.10 => not found\n").unwrap_err();
        assert!(err.to_string().contains("libgmp.so.10"), "{err}");
    }
}
