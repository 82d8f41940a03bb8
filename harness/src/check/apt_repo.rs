//! A Debian package repository on a lab network: one package (`hello`, from the host's apt
//! sources through the harness's package cache) served over HTTP at the lab's address, as a
//! flat repository signed with a key made for it (`apt_signing.rs`). The Debian guests' user
//! data gives apt the repository and its key (`apt: sources:`) and asks for the package
//! (`packages:`): cloud-init and metaboot both install it, and a check runs it over SSH.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::Digest as _;

use super::apt_signing::SigningKey;
use super::ns_server::{self, NsServer};
use crate::image::packages::PackageCache;

/// The package the guests install from the lab's repository: small, and needing only libc6.
pub const PACKAGE: &str = "hello";
/// The command it installs, and what that prints.
pub const PACKAGE_COMMAND: &str = "hello";
pub const PACKAGE_SAYS: &str = "Hello, world!";

/// The name of the repository's entry in the user data's `apt: sources:` (its list file is
/// `/etc/apt/sources.list.d/lab.list`, its key `/etc/apt/cloud-init.gpg.d/lab.gpg`).
pub const REPO_NAME: &str = "lab";
/// The one line of the `sources.list` the user data has rewritten (its `$RELEASE` filled in:
/// the Debian images' [`crate::image::debian::recipe::RELEASE`]).
pub const SOURCES_LIST_LINE: &str = "# $RELEASE: only the lab's repository, in sources.list.d";

/// The repository's package as a `.deb` in the harness's package cache (downloaded once with
/// `apt-get download` from the host's apt sources).
pub fn fetch_package(cache: &Path) -> anyhow::Result<PathBuf> {
    let packages = PackageCache::new(&cache.join("packages"));
    let resolved = packages.resolve(&[PACKAGE])?;
    let package = resolved
        .first()
        .with_context(|| format!("apt knows no package {PACKAGE}"))?;
    packages.fetch(package)
}

/// The `Packages` index of a flat repository holding `deb` alone (whose content is `bytes`):
/// its control fields (`dpkg-deb -f`), then where it is, its size and its SHA-256.
pub fn packages_index(deb: &Path, bytes: &[u8]) -> anyhow::Result<String> {
    let output = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .output()
        .context("failed to run dpkg-deb")?;
    if !output.status.success() {
        bail!(
            "dpkg-deb -f {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let control = String::from_utf8_lossy(&output.stdout);
    Ok(format!(
        "{}\nFilename: ./{}\nSize: {}\nSHA256: {}\n\n",
        control.trim_end(),
        file_name(deb)?,
        bytes.len(),
        hex::encode(sha2::Sha256::digest(bytes))
    ))
}

fn file_name(deb: &Path) -> anyhow::Result<String> {
    deb.file_name()
        .and_then(|name| name.to_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no file name", deb.display()))
}

/// The repository, served from a thread inside a lab namespace until dropped.
pub struct AptRepo {
    server: NsServer,
    key: SigningKey,
}

/// What a guest needs to use the repository: its URL and the key it is signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSource {
    /// `http://ADDR:PORT/`, a flat repository (`deb URL ./`).
    pub url: String,
    /// The signing key, ASCII-armored.
    pub key: String,
}

impl AptRepo {
    /// Serves `deb`, its index and the signed `InRelease` at `addr` (port 0: any) inside
    /// namespace `ns`.
    pub fn start_on(ns: &str, addr: SocketAddr, deb: &Path) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(deb).with_context(|| format!("failed to read {}", deb.display()))?;
        let index = packages_index(deb, &bytes)?.into_bytes();
        let key = SigningKey::new()?;
        let files = vec![
            ("/InRelease".to_owned(), key.in_release(&index)?),
            ("/Packages".to_owned(), index),
            (format!("/{}", file_name(deb)?), bytes),
        ];
        let server = NsServer::start("package repository", ns, addr, move |stream| {
            answer(&stream, &files);
        })?;
        Ok(Self { server, key })
    }

    /// The repository's URL and key.
    pub fn source(&self) -> RepoSource {
        RepoSource {
            url: format!("http://{}/", self.server.addr()),
            key: self.key.armored.clone(),
        }
    }
}

/// Answers one request: a file of `files` for GET or HEAD of its path, else 404; one request
/// per connection.
fn answer(stream: &TcpStream, files: &[(String, Vec<u8>)]) {
    let Some(request) = ns_server::read_request(stream, 0) else {
        return;
    };
    let target = file_path(&request.target);
    let found = files.iter().find(|(path, _)| *path == target);
    let head_only = request.method == "HEAD";
    match (request.method.as_str(), found) {
        ("GET" | "HEAD", Some((_, bytes))) => ns_server::answer(stream, "200 OK", bytes, head_only),
        _ => ns_server::answer(stream, "404 Not Found", b"", head_only),
    }
}

/// The file a request target names: apt asks a flat repository `./` for `/./Packages`.
fn file_path(target: &str) -> String {
    let mut path = target.to_owned();
    while path.contains("/./") {
        path = path.replace("/./", "/");
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_s_targets_of_a_flat_repository_name_its_files() {
        assert_eq!(file_path("/./Packages"), "/Packages");
        assert_eq!(
            file_path("/././hello_2.10-3_amd64.deb"),
            "/hello_2.10-3_amd64.deb"
        );
        assert_eq!(file_path("/Packages"), "/Packages");
    }

    #[test]
    fn the_index_names_the_file_its_size_and_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            "Package: lab-test\nVersion: 1.0\nArchitecture: all\nMaintainer: lab <lab@example.org>\n\
             Description: a test package\n",
        )
        .unwrap();
        let deb = dir.path().join("lab-test_1.0_all.deb");
        let built = Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&root)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(built.status.success(), "{built:?}");
        let bytes = std::fs::read(&deb).unwrap();
        let index = packages_index(&deb, &bytes).unwrap();
        assert!(
            index.starts_with("Package: lab-test\nVersion: 1.0\n"),
            "{index}"
        );
        assert!(
            index.contains("\nFilename: ./lab-test_1.0_all.deb\n"),
            "{index}"
        );
        assert!(
            index.contains(&format!("\nSize: {}\n", bytes.len())),
            "{index}"
        );
        assert!(
            index.ends_with(&format!(
                "SHA256: {}\n\n",
                hex::encode(sha2::Sha256::digest(&bytes))
            )),
            "{index}"
        );
    }
}
