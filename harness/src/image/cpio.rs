//! A newc cpio archive built in memory: the initramfs, with device nodes and owners set
//! without root and with a fixed mtime so the same inputs give the same bytes.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// Mode bits of the entry types (`stat.h`).
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// What a path in the archive is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory with permission bits.
    Dir { mode: u32 },
    /// A regular file with permission bits and content.
    File { mode: u32, data: Vec<u8> },
    /// A symbolic link.
    Symlink { target: String },
    /// A character device node.
    CharDev { mode: u32, major: u32, minor: u32 },
}

/// An archive under construction: paths (without a leading `/`) in sorted order, owned by root.
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `path` (a later add of the same path replaces it) and any missing parent directories.
    pub fn add(&mut self, path: &str, entry: Entry) {
        let path = path.trim_matches('/');
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.entries
                .entry(parent.clone())
                .or_insert(Entry::Dir { mode: 0o755 });
        }
        self.entries.insert(path.to_owned(), entry);
    }

    /// Adds a directory with `mode`.
    pub fn dir(&mut self, path: &str, mode: u32) {
        self.add(path, Entry::Dir { mode });
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.add(path, Entry::File { mode, data });
    }

    /// Adds a symlink.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.add(
            path,
            Entry::Symlink {
                target: target.to_owned(),
            },
        );
    }

    /// Whether `path` is in the archive.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_matches('/'))
    }

    /// Total bytes of file content.
    pub fn content_len(&self) -> usize {
        self.entries
            .values()
            .map(|e| match e {
                Entry::File { data, .. } => data.len(),
                _ => 0,
            })
            .sum()
    }

    /// Writes the archive in the newc format the kernel unpacks.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut written = 0usize;
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let (mode, data, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match entry {
                Entry::Dir { mode } => (S_IFDIR | mode, &[], 2, (0, 0)),
                Entry::File { mode, data } => (S_IFREG | mode, data, 1, (0, 0)),
                Entry::Symlink { target } => (S_IFLNK | 0o777, target.as_bytes(), 1, (0, 0)),
                Entry::CharDev { mode, major, minor } => (S_IFCHR | mode, &[], 1, (*major, *minor)),
            };
            written += write_header(out, ino + 1, mode, nlink, data.len(), rdev, path)?;
            out.write_all(data)?;
            written += data.len();
            written += pad(out, written)?;
        }
        write_header(out, 0, 0, 1, 0, (0, 0), "TRAILER!!!").map(|_| ())
    }
}

fn write_header(
    out: &mut impl Write,
    ino: usize,
    mode: u32,
    nlink: u32,
    size: usize,
    rdev: (u32, u32),
    name: &str,
) -> io::Result<usize> {
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} is too large for cpio"),
        )
    };
    let size = u32::try_from(size).map_err(|_| too_big())?;
    let ino = u32::try_from(ino).map_err(|_| too_big())?;
    let namesize = u32::try_from(name.len() + 1).map_err(|_| too_big())?;
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, 0, 0, 0, 0, rdev.0, rdev.1, 0
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    let len = header.len() + name.len() + 1;
    Ok(len + pad(out, len)?)
}

/// Pads to the next multiple of 4 bytes; returns the padding written.
fn pad(out: &mut impl Write, len: usize) -> io::Result<usize> {
    let n = (4 - len % 4) % 4;
    out.write_all(&[0; 3][..n])?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn cpio_lists_what_we_wrote_with_parents_and_device_nodes() {
        let mut archive = Archive::new();
        archive.file("usr/bin/hello", 0o755, b"#!/bin/sh\necho hi\n".to_vec());
        archive.symlink("bin/sh", "/bin/busybox");
        archive.add(
            "dev/console",
            Entry::CharDev {
                mode: 0o600,
                major: 5,
                minor: 1,
            },
        );
        let mut bytes = Vec::new();
        archive.write_to(&mut bytes).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let mut cpio = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cpio is installed by scripts/install-lab-deps");
        cpio.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = cpio.wait_with_output().unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        for expect in [
            "bin/sh -> /bin/busybox",
            "usr\n",
            "usr/bin\n",
            "usr/bin/hello",
            "5,   1",
        ] {
            assert!(
                listing.contains(expect.trim_end_matches('\n')),
                "{expect} in\n{listing}"
            );
        }
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with("crw-------") && l.ends_with("dev/console"))
        );
    }

    #[test]
    fn same_inputs_give_the_same_bytes() {
        let build = || {
            let mut a = Archive::new();
            a.file("b", 0o644, vec![1, 2, 3]);
            a.dir("a", 0o700);
            let mut out = Vec::new();
            a.write_to(&mut out).unwrap();
            out
        };
        assert_eq!(build(), build());
    }
}
