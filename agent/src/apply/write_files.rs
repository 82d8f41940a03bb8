//! `write_files` (docs/protocol.md §5.5): encodings b64 / gz / gz+b64, octal permissions,
//! `user:group` owners looked up in the root's passwd and group, append, and deferred entries. The
//! path is resolved inside the root. A final symlink only root could have made (root's, in a
//! directory only root may add to) is written through, its target replaced and the link kept, as
//! cloud-init's `open(path)` writes; appending reads the old file only when it is a regular file
//! with one link (never through another symlink, never a hard link to another file). A user or group
//! the entry leaves unchanged is the replaced file's only in a directory no user may add
//! entries to; elsewhere that file may be one a user planted, and the part is root's. The
//! directories made on the way get the entry's owner, as cloud-init's (23.1 and later) do:
//! only those this entry's walk made, never one that was there.

use std::path::{Path, PathBuf};

use base64::Engine;

use nix::sys::stat::SFlag;

use crate::apply::users::Accounts;
use crate::fsutil::{Dir, Owner, PathError, WriteOptions, kind, only_root_adds};
use crate::root::Root;
use crate::userdata::cloud_config::WriteFile;
use crate::userdata::gzip::{self, GzipError};

/// Mode of a written file when `permissions` is absent.
pub const DEFAULT_PERMISSIONS: u32 = 0o644;
/// Largest file content written (after decoding), as for decompressed user data.
pub const MAX_CONTENT_BYTES: usize = gzip::MAX_DECOMPRESSED_BYTES;

/// One entry that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteFilesError {
    #[error("write_files entry without a path")]
    NoPath,
    #[error("{path}: content is not valid base64")]
    Base64 { path: String },
    #[error("{path}: content")]
    Gzip {
        path: String,
        #[source]
        source: GzipError,
    },
    #[error("{path}: content is larger than {MAX_CONTENT_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path}: owner {owner:?}: no such {what} in the root's /etc/{file}")]
    Owner {
        path: String,
        owner: String,
        what: &'static str,
        file: &'static str,
    },
    #[error(transparent)]
    Io(#[from] PathError),
}

/// How `content` is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Plain,
    Base64,
    Gzip,
    GzipBase64,
}

/// Parses `encoding` as cloud-init does; unknown values are plain text (with a warning).
pub fn parse_encoding(encoding: Option<&str>) -> (Encoding, Option<String>) {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("text/plain") => (Encoding::Plain, None),
        Some("b64" | "base64") => (Encoding::Base64, None),
        Some("gz" | "gzip") => (Encoding::Gzip, None),
        Some("gz+b64" | "gz+base64" | "gzip+b64" | "gzip+base64") => (Encoding::GzipBase64, None),
        Some(other) => (
            Encoding::Plain,
            Some(format!("unknown encoding {other:?}; written as plain text")),
        ),
    }
}

fn base64_decode(path: &str, text: &str) -> Result<Vec<u8>, WriteFilesError> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|engine| engine.decode(&compact).ok())
        .ok_or_else(|| WriteFilesError::Base64 {
            path: path.to_owned(),
        })
}

/// Decodes `content` given its encoding.
pub fn decode(path: &str, content: &str, encoding: Encoding) -> Result<Vec<u8>, WriteFilesError> {
    let gunzip = |data: &[u8]| {
        gzip::gunzip(data, MAX_CONTENT_BYTES).map_err(|source| WriteFilesError::Gzip {
            path: path.to_owned(),
            source,
        })
    };
    let data = match encoding {
        Encoding::Plain => content.as_bytes().to_vec(),
        Encoding::Base64 => base64_decode(path, content)?,
        Encoding::Gzip => gunzip(content.as_bytes())?,
        Encoding::GzipBase64 => gunzip(&base64_decode(path, content)?)?,
    };
    if data.len() > MAX_CONTENT_BYTES {
        return Err(WriteFilesError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(data)
}

/// An owner as a `write_files` entry gives it: each part an id, or `None` where it is left
/// unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerSpec {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl OwnerSpec {
    /// The owner of the file written: a part left unchanged is `replaced`'s (the owner of the
    /// file it replaces, when that one may be kept), else root's.
    pub fn or(self, replaced: Option<Owner>) -> Owner {
        let replaced = replaced.unwrap_or(Owner { uid: 0, gid: 0 });
        Owner {
            uid: self.uid.unwrap_or(replaced.uid),
            gid: self.gid.unwrap_or(replaced.gid),
        }
    }
}

/// Resolves `user[:group]` in the root's account files (`None`: the root has no passwd), as
/// cloud-init's `extract_usergroup` and `chownbyname` read it: a user or group that is empty,
/// `-1` or `none` is left unchanged. A number is taken as an id.
pub fn resolve_owner(
    accounts: Option<&Accounts>,
    path: &str,
    owner: &str,
) -> Result<OwnerSpec, WriteFilesError> {
    let (user, group) = match owner.split_once(':') {
        Some((user, group)) => (user.trim(), group.trim()),
        None => (owner.trim(), ""),
    };
    // One part: unchanged, a number, root on a root without passwd, or a name looked up.
    let id = |name: &str,
              lookup: fn(&Accounts, &str) -> Option<u32>,
              what: &'static str,
              file: &'static str| {
        if name.is_empty() || name == "-1" || name.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        if let Ok(id) = name.parse::<u32>() {
            return Ok(Some(id));
        }
        if name == "root" && accounts.is_none() {
            return Ok(Some(0));
        }
        accounts
            .and_then(|accounts| lookup(accounts, name))
            .map(Some)
            .ok_or_else(|| WriteFilesError::Owner {
                path: path.to_owned(),
                owner: owner.to_owned(),
                what,
                file,
            })
    };
    Ok(OwnerSpec {
        uid: id(
            user,
            |a, name| a.user(name).map(|u| u.uid),
            "user",
            "passwd",
        )?,
        gid: id(group, Accounts::gid, "group", "group")?,
    })
}

/// Gives the directories made for an entry (`created`, see [`Root::parent_created`]) the
/// entry's owner, as cloud-init's `util.ensure_dir(dirname, user=, group=)` gives every
/// directory it made for the file (docs/protocol.md §5.5): a user or group left unchanged is
/// the directory's own (root's, or the group a set-group-id parent gave it, as a chown to `-1`
/// leaves it), and the mode stays the one it was made with (cloud-init passes no mode).
fn own_created(created: &[Dir], spec: OwnerSpec) -> Result<(), PathError> {
    if spec.uid.is_none() && spec.gid.is_none() {
        return Ok(());
    }
    for dir in created {
        let stat = dir.stat().map_err(PathError::fail("read", dir.path()))?;
        let owner = spec.or(Some(Owner {
            uid: stat.st_uid,
            gid: stat.st_gid,
        }));
        // A chown keeps a directory's set-group-id bit (the kernel drops it on files only), so
        // the mode given back is the one it has.
        dir.set_owner_mode(Some(owner), stat.st_mode & 0o7777)
            .map_err(PathError::fail("set owner and mode of", dir.path()))?;
    }
    Ok(())
}

/// `path` as cloud-init's `os.path.abspath` makes it before writing: from `/` (its working
/// directory), `.` and `..` taken in the text, so `/etc/app/../motd` is `/etc/motd` and no
/// `/etc/app` is made on the way.
fn absolute(path: &str) -> String {
    let mut names: Vec<&str> = Vec::new();
    for name in path.split('/') {
        match name {
            "" | "." => {}
            ".." => {
                names.pop();
            }
            name => names.push(name),
        }
    }
    format!("/{}", names.join("/"))
}

/// Writes one entry; returns the file written and any warnings.
pub fn write_entry(
    root: &Root,
    accounts: Option<&Accounts>,
    entry: &WriteFile,
) -> Result<(PathBuf, Vec<String>), WriteFilesError> {
    if entry.path.trim().is_empty() {
        return Err(WriteFilesError::NoPath);
    }
    let path = &absolute(entry.path.trim());
    let mut warnings = Vec::new();
    if entry.source.is_some() {
        warnings.push(format!(
            "{path}: `source` is not supported; `content` is written"
        ));
    }
    let (encoding, warning) = parse_encoding(entry.encoding.as_deref());
    warnings.extend(warning.map(|w| format!("{path}: {w}")));
    let content = entry.content.as_ref().map(|c| c.0.as_str()).unwrap_or("");
    let mut data = decode(path, content, encoding)?;
    // A name the root does not know fails the entry before any directory is made.
    let spec = resolve_owner(
        accounts,
        path,
        entry.owner.as_deref().unwrap_or("root:root"),
    )?;
    let target = root.host_path(path);
    let (dir, name, created) = root
        .parent_created(Path::new(path))
        .map_err(PathError::fail("create directory", &target))?;
    root.refuse_user_dir_in_sticky(&dir, spec.uid)
        .map_err(PathError::fail("write", &target))?;
    // The owner of the file replaced, for a user or group left unchanged: only where no user
    // could have put that file there.
    let replaced = if only_root_adds(&dir.stat().map_err(PathError::fail("read", dir.path()))?) {
        dir.entry(&name)
            .map_err(PathError::fail("read", &target))?
            .filter(|stat| kind(stat) == SFlag::S_IFREG)
            .map(|stat| Owner {
                uid: stat.st_uid,
                gid: stat.st_gid,
            })
    } else {
        None
    };
    let owner = Some(spec.or(replaced));
    if entry.append == Some(true) {
        let old = dir
            .read_unshared(&name)
            .map_err(PathError::fail("read", &target))?;
        if let Some(mut old) = old {
            old.extend_from_slice(&data);
            data = old;
        }
    }
    let mode = entry.permissions.map_or(DEFAULT_PERMISSIONS, |p| p.0);
    own_created(&created, spec)?;
    dir.write_atomic_as(&name, &target, &data, &WriteOptions::exact(mode, owner))?;
    Ok((target, warnings))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use crate::userdata::cloud_config::CloudConfig;
    use crate::userdata::gzip::tests::gz;
    use crate::userdata::yaml::parse_map;

    fn entries(text: &str) -> Vec<WriteFile> {
        let (cfg, errors) = CloudConfig::from_map(&parse_map(text).unwrap());
        assert!(errors.is_empty(), "{errors:?}");
        cfg.write_files.unwrap().entries().cloned().collect()
    }

    fn root() -> (tempfile::TempDir, Root, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        std::fs::create_dir_all(root.host_path("/etc")).unwrap();
        std::fs::write(
            root.host_path("/etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            root.host_path("/etc/group"),
            "root:x:0:\nbob:x:1000:\nadm:x:4:\n",
        )
        .unwrap();
        let accounts = Accounts::load(&root).unwrap();
        (dir, root, accounts)
    }

    #[test]
    fn every_encoding() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let gzb64 = b64.encode(gz(b"zipped\n"));
        let text = format!(
            "write_files:\n- {{path: /a, content: plain}}\n- {{path: /b, encoding: b64, content: {}}}\n\
             - {{path: /c, encoding: gz+b64, content: {gzb64}}}\n- {{path: /d, encoding: gzip+base64, content: {gzb64}}}\n\
             - {{path: /e, encoding: base64, content: \"aGVs\\nbG8=\"}}\n",
            b64.encode("decoded")
        );
        let (_dir, root, accounts) = root();
        for entry in entries(&text) {
            write_entry(&root, Some(&accounts), &entry).unwrap();
        }
        let read = |p: &str| std::fs::read_to_string(root.host_path(p)).unwrap();
        assert_eq!(read("/a"), "plain");
        assert_eq!(read("/b"), "decoded");
        assert_eq!(read("/c"), "zipped\n");
        assert_eq!(read("/d"), "zipped\n");
        assert_eq!(read("/e"), "hello");
    }

    /// A path is taken as cloud-init's `os.path.abspath` takes it: `..` and `.` in the text,
    /// a relative path from `/`; no directory named before a `..` is made.
    #[test]
    fn dot_dot_and_relative_paths_are_read_as_cloud_init_reads_them() {
        let (_dir, root, accounts) = root();
        let text = "write_files:\n- {path: /etc/app/../motd, content: a}\n\
                    - {path: srv/./rel, content: b}\n- {path: /../../etc/up, content: c}\n";
        for entry in entries(text) {
            write_entry(&root, Some(&accounts), &entry).unwrap();
        }
        let read = |p: &str| std::fs::read_to_string(root.host_path(p)).unwrap();
        assert_eq!(read("/etc/motd"), "a");
        assert_eq!(read("/srv/rel"), "b");
        assert_eq!(read("/etc/up"), "c");
        assert!(!root.host_path("/etc/app").exists());
        let not_a_file = entries("write_files:\n- {path: /etc/.., content: x}\n");
        assert!(write_entry(&root, Some(&accounts), &not_a_file[0]).is_err());
    }

    #[test]
    fn permissions_owner_and_append() {
        let (_dir, root, accounts) = root();
        // Root's directory (one the entry made would be bob's: see
        // `the_directories_made_for_an_entry_are_its_owners`).
        std::fs::create_dir(root.host_path("/etc/app")).unwrap();
        let text = "write_files:\n- path: /etc/app/conf\n  content: |\n    line1\n  permissions: 0640\n  owner: bob:adm\n\
                    - path: /etc/app/conf\n  content: line2\n  append: true\n  permissions: '0600'\n  owner: bob\n";
        let list = entries(text);
        write_entry(&root, Some(&accounts), &list[0]).unwrap();
        let meta = std::fs::metadata(root.host_path("/etc/app/conf")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        if crate::testutil::require_root() {
            assert_eq!((meta.uid(), meta.gid()), (1000, 4));
        }
        write_entry(&root, Some(&accounts), &list[1]).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.host_path("/etc/app/conf")).unwrap(),
            "line1\nline2"
        );
        let meta = std::fs::metadata(root.host_path("/etc/app/conf")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        if crate::testutil::require_root() {
            // `owner: bob` leaves the group as it was, as cloud-init's chown does: /etc/app is
            // root's, so no user put the file there.
            assert_eq!((meta.uid(), meta.gid()), (1000, 4));
        }
    }

    /// `append` and `defer` take the words cloud-init's `get_cfg_option_bool` takes.
    #[test]
    fn append_and_defer_may_be_words() {
        let list = entries(
            "write_files:\n- {path: /a, append: 'yes', defer: 'false'}\n- {path: /b, append: 'on'}\n",
        );
        assert_eq!((list[0].append, list[0].defer), (Some(true), Some(false)));
        assert_eq!(list[1].append, Some(true));
    }

    /// A user or group that is empty, `-1` or `none` is left unchanged (root's for a new file,
    /// the replaced file's otherwise), as cloud-init's `extract_usergroup` reads it.
    #[test]
    fn an_owner_part_left_out_is_unchanged() {
        let (_dir, root, accounts) = root();
        let owner = |spec: &str, unchanged| {
            resolve_owner(Some(&accounts), "/f", spec).map(|spec| spec.or(unchanged))
        };
        let of = |uid, gid| Owner { uid, gid };
        assert_eq!(owner(":adm", None).unwrap(), of(0, 4));
        assert_eq!(owner("none:adm", Some(of(7, 8))).unwrap(), of(7, 4));
        assert_eq!(owner("-1:-1", Some(of(7, 8))).unwrap(), of(7, 8));
        assert_eq!(owner("bob", None).unwrap(), of(1000, 0));
        assert_eq!(owner("bob:", Some(of(7, 8))).unwrap(), of(1000, 8));
        assert_eq!(owner("1234:55", None).unwrap(), of(1234, 55));
        // A root without passwd knows root alone.
        assert_eq!(
            resolve_owner(None, "/f", "root:root").unwrap().or(None),
            of(0, 0)
        );
        let err = resolve_owner(None, "/f", "bob").unwrap_err().to_string();
        assert_eq!(
            err,
            "/f: owner \"bob\": no such user in the root's /etc/passwd"
        );
        if crate::testutil::require_root() {
            let text = "write_files:\n- {path: /etc/g, content: x, owner: ':adm'}\n";
            write_entry(&root, Some(&accounts), &entries(text)[0]).unwrap();
            let meta = std::fs::metadata(root.host_path("/etc/g")).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (0, 4));
        }
    }

    /// A directory a user made in /var/tmp (which survives reboots and snapshots) before the
    /// entry was written: root's script is not put where that user could swap it; the file of
    /// that very user may go there.
    #[test]
    fn a_users_directory_in_var_tmp_is_refused_unless_the_file_is_theirs() {
        if !crate::testutil::require_root() {
            return;
        }
        let (_dir, root, accounts) = root();
        let tmp = root.host_path("/var/tmp");
        std::fs::create_dir_all(tmp.join("setup")).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::os::unix::fs::chown(tmp.join("setup"), Some(1000), Some(1000)).unwrap();
        let text = "write_files:\n- {path: /var/tmp/setup/install.sh, content: x, permissions: '0755'}\n\
                    - {path: /var/tmp/setup/bobs.conf, content: x, owner: bob}\n";
        let list = entries(text);
        let err = write_entry(&root, Some(&accounts), &list[0]).unwrap_err();
        assert!(
            format!("{:#}", anyhow::Error::from(err)).contains("setup belongs to uid 1000"),
            "the reason is told"
        );
        assert!(!tmp.join("setup/install.sh").exists());
        write_entry(&root, Some(&accounts), &list[1]).unwrap();
        assert!(tmp.join("setup/bobs.conf").exists());
    }

    /// A file a user put where an entry goes (a hard link to root's file of another group,
    /// where `fs.protected_hardlinks` is 0, or their own file) gives the new file nothing: a
    /// user or group the entry leaves unchanged is root's, as for a new file. Only in a
    /// directory no user may add to is the replaced file's kept (see
    /// `permissions_owner_and_append`).
    #[test]
    fn a_file_a_user_planted_gives_the_new_file_no_owner() {
        if !crate::testutil::require_root() {
            return;
        }
        let (_dir, root, accounts) = root();
        let chown = |path: &str, uid, gid| {
            std::os::unix::fs::chown(root.host_path(path), Some(uid), Some(gid)).unwrap();
        };
        std::fs::create_dir_all(root.host_path("/srv/drop")).unwrap();
        chown("/srv/drop", 1000, 1000);
        std::fs::write(root.host_path("/etc/secret"), "s").unwrap();
        chown("/etc/secret", 0, 42);
        std::fs::hard_link(
            root.host_path("/etc/secret"),
            root.host_path("/srv/drop/linked"),
        )
        .unwrap();
        std::fs::write(root.host_path("/srv/drop/own"), "x").unwrap();
        chown("/srv/drop/own", 1000, 1000);
        let text = "write_files:\n- {path: /srv/drop/linked, content: new, owner: bob}\n\
                    - {path: /srv/drop/own, content: new, owner: ':adm'}\n";
        for entry in entries(text) {
            write_entry(&root, Some(&accounts), &entry).unwrap();
        }
        let owner = |path: &str| {
            let meta = std::fs::metadata(root.host_path(path)).unwrap();
            (meta.uid(), meta.gid())
        };
        assert_eq!(owner("/srv/drop/linked"), (1000, 0), "not group 42");
        assert_eq!(owner("/srv/drop/own"), (0, 4), "not bob's");
        assert_eq!(owner("/etc/secret"), (0, 42));
        assert_eq!(
            std::fs::read_to_string(root.host_path("/etc/secret")).unwrap(),
            "s"
        );
    }

    /// The directories an entry's path lacks are made for it and are given its owner, as
    /// cloud-init's `ensure_dir(dirname, user=, group=)` gives them: a part left unchanged is
    /// the new directory's own, the mode the one it was made with (0755), not the file's. A
    /// directory that was there keeps its owner, whoever the entry is for.
    #[test]
    fn the_directories_made_for_an_entry_are_its_owners() {
        if !crate::testutil::require_root() {
            return;
        }
        let (_dir, root, accounts) = root();
        std::fs::create_dir_all(root.host_path("/opt/tools")).unwrap();
        std::os::unix::fs::chown(root.host_path("/opt"), Some(0), Some(4)).unwrap();
        let text = "write_files:\n\
                    - {path: /opt/tools/app/etc/conf, content: x, owner: 'bob:bob', permissions: '0600'}\n\
                    - {path: /opt/bobs/conf, content: x, owner: bob}\n\
                    - {path: /opt/adm/log/conf, content: x, owner: ':adm', append: true}\n\
                    - {path: /opt/roots/conf, content: x}\n\
                    - {path: /opt/tools/app/lib/conf, content: x, owner: ':adm', defer: true}\n";
        for entry in entries(text) {
            write_entry(&root, Some(&accounts), &entry).unwrap();
        }
        let mode_owner = |path: &str| {
            let meta = std::fs::metadata(root.host_path(path)).unwrap();
            (meta.mode() & 0o7777, meta.uid(), meta.gid())
        };
        assert_eq!(mode_owner("/opt/tools/app"), (0o755, 1000, 1000));
        assert_eq!(mode_owner("/opt/tools/app/etc"), (0o755, 1000, 1000));
        assert_eq!(mode_owner("/opt/tools/app/etc/conf"), (0o600, 1000, 1000));
        assert_eq!(mode_owner("/opt/bobs"), (0o755, 1000, 0), "group unchanged");
        assert_eq!(mode_owner("/opt/adm"), (0o755, 0, 4));
        assert_eq!(mode_owner("/opt/adm/log"), (0o755, 0, 4));
        assert_eq!(mode_owner("/opt/roots"), (0o755, 0, 0));
        assert_eq!(mode_owner("/opt/tools/app/lib"), (0o755, 0, 4));
        // Directories that were there, whoever the entries below them are for.
        assert_eq!(mode_owner("/opt"), (0o755, 0, 4));
        assert_eq!(mode_owner("/opt/tools"), (0o755, 0, 0));
    }

    /// In a set-group-id directory a new one takes the parent's group and the bit; an entry
    /// that leaves the group unchanged leaves both, as cloud-init's chown to group `-1` does.
    #[test]
    fn a_directory_made_in_a_set_group_id_one_keeps_its_group_and_the_bit() {
        if !crate::testutil::require_root() {
            return;
        }
        let (_dir, root, accounts) = root();
        let shared = root.host_path("/srv/shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::os::unix::fs::chown(&shared, Some(0), Some(4)).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o2775)).unwrap();
        let text = "write_files:\n- {path: /srv/shared/bob/conf, content: x, owner: bob}\n";
        write_entry(&root, Some(&accounts), &entries(text)[0]).unwrap();
        let meta = std::fs::metadata(shared.join("bob")).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o2755, 1000, 4)
        );
    }

    #[test]
    fn bad_entries_are_clear_errors_and_write_nothing() {
        let (_dir, root, accounts) = root();
        let text = "write_files:\n- {path: /x, owner: nobody}\n- {path: /y, encoding: b64, content: '!!!'}\n\
                    - {path: /z, encoding: gz, content: notgzip}\n- {path: '', content: x}\n";
        let errs: Vec<String> = entries(text)
            .iter()
            .map(|e| crate::log::chain(&write_entry(&root, Some(&accounts), e).unwrap_err()))
            .collect();
        assert_eq!(
            errs[0],
            "/x: owner \"nobody\": no such user in the root's /etc/passwd"
        );
        assert_eq!(errs[1], "/y: content is not valid base64");
        assert!(
            errs[2].starts_with("/z: content: Corrupt gzip data"),
            "{}",
            errs[2]
        );
        assert_eq!(errs[3], "write_files entry without a path");
        for p in ["/x", "/y", "/z"] {
            assert!(!root.host_path(p).exists());
        }
    }

    /// A symlink a user could have planted (in a directory others may write, or a user's own
    /// link) and a hard link are never read through.
    #[test]
    fn append_never_reads_through_a_planted_symlink_or_a_hard_link() {
        let (dir, root, accounts) = root();
        std::fs::write(root.host_path("/etc/secret"), "SECRET\n").unwrap();
        let drop = root.host_path("/srv/drop");
        std::fs::create_dir_all(&drop).unwrap();
        std::fs::set_permissions(&drop, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::symlink("/etc/secret", drop.join("motd")).unwrap();
        std::fs::hard_link(root.host_path("/etc/secret"), root.host_path("/etc/issue")).unwrap();
        let mut text = "write_files:\n- {path: /srv/drop/motd, content: x, append: true}\n\
                        - {path: /etc/issue, content: x, append: true}\n"
            .to_owned();
        if crate::testutil::require_root() {
            std::os::unix::fs::symlink("/etc/secret", root.host_path("/etc/bobs")).unwrap();
            std::os::unix::fs::lchown(root.host_path("/etc/bobs"), Some(1000), Some(1000)).unwrap();
            text.push_str("- {path: /etc/bobs, content: x, append: true}\n");
        }
        let list = entries(&text);
        for entry in &list {
            let err = crate::log::chain(&write_entry(&root, Some(&accounts), entry).unwrap_err());
            let shown = root.host_path(&entry.path);
            assert!(
                err.starts_with(&format!("Failed to read {}: ", shown.display())),
                "{err}"
            );
        }
        assert!(
            std::fs::symlink_metadata(drop.join("motd"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/issue")).unwrap(),
            "SECRET\n"
        );
    }

    /// Root's symlinks in root's directories (Ubuntu's `/etc/resolv.conf`, relative, and a
    /// chain of two) are written through as cloud-init's `open(path)` writes: the target gets
    /// the content and the mode, the links stay.
    #[test]
    fn roots_symlinks_are_written_through_and_kept() {
        let (_dir, root, accounts) = root();
        let stub = root.host_path("/run/systemd/resolve/stub-resolv.conf");
        std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
        std::fs::write(&stub, "nameserver 127.0.0.53\n").unwrap();
        let link = |target: &str, path: &str| {
            std::os::unix::fs::symlink(target, root.host_path(path)).unwrap();
        };
        link(
            "../run/systemd/resolve/stub-resolv.conf",
            "/etc/resolv.conf",
        );
        std::fs::create_dir(root.host_path("/etc/alternatives")).unwrap();
        // Absolute: taken from the root, not from the host's `/`.
        link("/etc/alternatives/motd", "/etc/motd");
        link("../motd.real", "/etc/alternatives/motd");
        let text = "write_files:\n- {path: /etc/resolv.conf, content: search lan, append: true}\n\
                    - {path: /etc/motd, content: hello, permissions: '0600'}\n";
        for entry in entries(text) {
            write_entry(&root, Some(&accounts), &entry).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&stub).unwrap(),
            "nameserver 127.0.0.53\nsearch lan"
        );
        let real = std::fs::metadata(root.host_path("/etc/motd.real")).unwrap();
        assert_eq!(real.mode() & 0o7777, 0o600);
        assert_eq!(
            std::fs::read_to_string(root.host_path("/etc/motd.real")).unwrap(),
            "hello"
        );
        for path in ["/etc/resolv.conf", "/etc/motd", "/etc/alternatives/motd"] {
            let meta = std::fs::symlink_metadata(root.host_path(path)).unwrap();
            assert!(meta.file_type().is_symlink(), "{path}");
        }
    }

    /// Makes `path` under the root a directory of `uid`'s with `mode`.
    fn dir_of(root: &Root, path: &str, uid: u32, mode: u32) {
        let host = root.host_path(path);
        std::fs::create_dir_all(&host).unwrap();
        std::os::unix::fs::chown(&host, Some(uid), Some(uid)).unwrap();
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Ubuntu's `/etc/resolv.conf` as systemd-resolved keeps it: root's link into
    /// `/run/systemd/resolve`, a directory of the daemon's system account (and its file too), is
    /// written through as cloud-init writes it; a person's account's directory is not.
    #[test]
    fn roots_symlink_into_a_system_accounts_directory_is_written_through() {
        if !crate::testutil::require_root() {
            return;
        }
        const RESOLVED_UID: u32 = 990;
        let (_dir, root, accounts) = root();
        dir_of(&root, "/run/systemd/resolve", RESOLVED_UID, 0o755);
        file_of(
            &root,
            "/run/systemd/resolve/stub-resolv.conf",
            RESOLVED_UID,
            "nameserver 127.0.0.53\n",
        );
        std::os::unix::fs::symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            root.host_path("/etc/resolv.conf"),
        )
        .unwrap();
        let text = "write_files:\n- {path: /etc/resolv.conf, content: search lan, append: true}\n";
        write_entry(&root, Some(&accounts), &entries(text)[0]).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.host_path("/run/systemd/resolve/stub-resolv.conf"))
                .unwrap(),
            "nameserver 127.0.0.53\nsearch lan"
        );
        assert!(
            std::fs::symlink_metadata(root.host_path("/etc/resolv.conf"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // The same directory of a person's account is a user's choice: refused.
        std::os::unix::fs::chown(
            root.host_path("/run/systemd/resolve"),
            Some(crate::fsutil::FIRST_USER_UID),
            None,
        )
        .unwrap();
        assert!(write_entry(&root, Some(&accounts), &entries(text)[0]).is_err());
    }

    /// Makes `path` under the root a file of `uid`'s holding `text`.
    fn file_of(root: &Root, path: &str, uid: u32, text: &str) {
        std::fs::write(root.host_path(path), text).unwrap();
        std::os::unix::fs::chown(root.host_path(path), Some(uid), Some(uid)).unwrap();
    }

    /// Root's symlink into a directory users may add entries to (sticky `/tmp`), or through
    /// one (a root's directory below a world-writable one, which a user may swap), or into a
    /// user's directory, is not followed: no write and no append takes a file a user may have
    /// planted there, and nothing is written.
    #[test]
    fn roots_symlinks_into_or_through_directories_users_write_are_refused() {
        if !crate::testutil::require_root() {
            return;
        }
        let (_dir, root, accounts) = root();
        dir_of(&root, "/tmp", 0, 0o1777);
        file_of(&root, "/tmp/app.conf", 1000, "bob's\n");
        dir_of(&root, "/srv/open", 0, 0o777);
        dir_of(&root, "/srv/open/conf", 0, 0o755);
        file_of(&root, "/srv/open/conf/app.conf", 1000, "bob's\n");
        dir_of(&root, "/srv/open/bob", 1000, 0o755);
        file_of(&root, "/srv/open/bob/app.conf", 1000, "bob's\n");
        let links = [
            ("/etc/tmp.conf", "/tmp/app.conf"),
            ("/etc/through.conf", "../srv/open/conf/app.conf"),
            ("/etc/bobs.conf", "/srv/open/bob/app.conf"),
        ];
        for (link, target) in links {
            std::os::unix::fs::symlink(target, root.host_path(link)).unwrap();
            for append in [true, false] {
                let text =
                    format!("write_files:\n- {{path: {link}, content: x, append: {append}}}\n");
                let entry = &entries(&text)[0];
                let err = write_entry(&root, Some(&accounts), entry).unwrap_err();
                let err = crate::log::chain(&err);
                assert!(
                    err.contains("a directory users may add entries to"),
                    "{err}"
                );
                let meta = std::fs::symlink_metadata(root.host_path(link)).unwrap();
                assert!(meta.file_type().is_symlink(), "{link}");
            }
        }
        for file in [
            "/tmp/app.conf",
            "/srv/open/conf/app.conf",
            "/srv/open/bob/app.conf",
        ] {
            let host = root.host_path(file);
            assert_eq!(std::fs::read_to_string(&host).unwrap(), "bob's\n", "{file}");
            assert_eq!(std::fs::metadata(&host).unwrap().uid(), 1000, "{file}");
        }
    }

    #[test]
    fn gzip_bombs_in_content_are_refused() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let bomb = b64.encode(gz(&vec![0u8; MAX_CONTENT_BYTES + 1]));
        assert!(matches!(
            decode("/bomb", &bomb, Encoding::GzipBase64),
            Err(WriteFilesError::Gzip {
                source: GzipError::TooLarge { .. },
                ..
            })
        ));
    }

    #[test]
    fn unknown_encoding_is_plain_with_a_warning_and_source_warns() {
        let (_dir, root, accounts) = root();
        let list = entries(
            "write_files:\n- {path: /w, content: x, encoding: rot13, source: {uri: 'http://1.2.3.4/'}}\n",
        );
        let (_, warnings) = write_entry(&root, Some(&accounts), &list[0]).unwrap();
        assert_eq!(warnings.len(), 2);
        assert_eq!(std::fs::read_to_string(root.host_path("/w")).unwrap(), "x");
    }
}
