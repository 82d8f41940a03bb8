//! In-root resolution: links stay inside the root, loops end, foreign links are refused.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::MAX_SYMLINKS;
use crate::fsutil::{Refused, WriteOptions};
use crate::root::Root;

fn root() -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    fs::write(dir.path().join("etc/passwd"), "inside\n").unwrap();
    let root = Root::open(dir.path()).unwrap();
    (dir, root)
}

fn refused(err: &io::Error) -> Option<&Refused> {
    err.get_ref().and_then(|e| e.downcast_ref::<Refused>())
}

#[test]
fn absolute_targets_restart_at_the_root() {
    let (dir, root) = root();
    symlink("/etc", dir.path().join("e")).unwrap();
    symlink("/etc/passwd", dir.path().join("p")).unwrap();
    assert_eq!(
        root.read_optional("/e/passwd").unwrap().unwrap(),
        b"inside\n"
    );
    assert_eq!(root.read_optional("/p").unwrap().unwrap(), b"inside\n");
    assert!(root.is_dir("/e"));
}

#[test]
fn parent_components_never_climb_above_the_root() {
    let (dir, root) = root();
    symlink("../../../../../../etc", dir.path().join("up")).unwrap();
    symlink("../../../../../../etc/passwd", dir.path().join("etc/up")).unwrap();
    assert_eq!(
        root.read_optional("/up/passwd").unwrap().unwrap(),
        b"inside\n"
    );
    assert_eq!(root.read_optional("/etc/up").unwrap().unwrap(), b"inside\n");
    assert_eq!(
        root.read_optional("/../../../etc/passwd").unwrap().unwrap(),
        b"inside\n"
    );
}

#[test]
fn link_chains_end_at_the_limit_and_loops_fail() {
    let (dir, root) = root();
    // l0 -> etc, l1 -> l0, …: MAX_SYMLINKS links to follow from the last one.
    symlink("etc", dir.path().join("l0")).unwrap();
    for i in 1..=MAX_SYMLINKS {
        symlink(format!("l{}", i - 1), dir.path().join(format!("l{i}"))).unwrap();
    }
    let within = format!("/l{}/passwd", MAX_SYMLINKS - 1);
    assert_eq!(root.read_optional(&within).unwrap().unwrap(), b"inside\n");
    let over = format!("/l{MAX_SYMLINKS}/passwd");
    let err = root.read_optional(&over).unwrap_err();
    assert!(
        matches!(refused(&err), Some(Refused::TooManySymlinks { .. })),
        "{err}"
    );
    symlink("loop", dir.path().join("loop")).unwrap();
    let err = root.read_optional("/loop").unwrap_err();
    assert!(
        matches!(refused(&err), Some(Refused::TooManySymlinks { .. })),
        "{err}"
    );
}

#[test]
fn a_symlink_someone_else_owns_is_never_followed() {
    if !crate::testutil::require_root() {
        return;
    }
    let (dir, root) = root();
    let link = dir.path().join("tmp-link");
    symlink("/etc", &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(1000), Some(1000)).unwrap();
    let err = root.read_optional("/tmp-link/passwd").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is a symlink owned by uid 1000; only root's symlinks are followed",
            link.display()
        )
    );
    let err = root
        .write_atomic("/tmp-link/new", b"x", &WriteOptions::default())
        .unwrap_err();
    assert!(matches!(
        refused(&err.source),
        Some(Refused::ForeignSymlink { uid: 1000, .. })
    ));
    assert!(!dir.path().join("etc/new").exists());
}

#[test]
fn a_trusted_symlink_hard_linked_elsewhere_is_not_followed() {
    let (dir, root) = root();
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    fs::write(dir.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::create_dir_all(dir.path().join("home/bob")).unwrap();
    let link = dir.path().join("to-etc");
    symlink("/etc", &link).unwrap();
    assert_eq!(
        root.read_optional("/to-etc/passwd").unwrap().as_deref(),
        Some(&b"root:x:0:0::/root:/bin/sh\n"[..])
    );
    // A hard link of the symlink itself (link(2) does not follow it), as a user could make.
    let planted = dir.path().join("home/bob/config");
    fs::hard_link(&link, &planted).unwrap();
    assert!(fs::symlink_metadata(&planted).unwrap().is_symlink());
    for path in ["/home/bob/config/passwd", "/to-etc/passwd"] {
        let err = root.read_optional(path).unwrap_err();
        assert!(
            err.to_string().contains("2 hard links; not followed"),
            "{err}"
        );
    }
    let err = root
        .write_atomic("/home/bob/config/new", b"x", &WriteOptions::default())
        .unwrap_err();
    assert!(matches!(
        refused(&err.source),
        Some(Refused::LinkedSymlink { links: 2, .. })
    ));
    assert!(!dir.path().join("etc/new").exists());
}

#[test]
fn missing_directories_are_created_along_the_path_but_not_through_a_link() {
    let (dir, root) = root();
    root.write_atomic("/a/b/c", b"x", &WriteOptions::default())
        .unwrap();
    assert!(dir.path().join("a/b").is_dir());
    symlink("/nowhere/deep", dir.path().join("dangling")).unwrap();
    let err = root
        .write_atomic("/dangling/x", b"x", &WriteOptions::default())
        .unwrap_err();
    assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
    assert!(!dir.path().join("nowhere").exists());
    // Through an existing link, the rest of the path is created in the target.
    symlink("/a", dir.path().join("to-a")).unwrap();
    root.write_atomic("/to-a/new/file", b"y", &WriteOptions::default())
        .unwrap();
    assert_eq!(fs::read(dir.path().join("a/new/file")).unwrap(), b"y");
}

#[test]
fn a_final_symlink_is_refused_unless_followed() {
    let (dir, root) = root();
    symlink("/etc/passwd", dir.path().join("p")).unwrap();
    let err = root
        .open_file("/p", OFlag::O_RDONLY, 0, false, false)
        .unwrap_err();
    assert!(matches!(refused(&err), Some(Refused::Symlink(_))), "{err}");
    assert!(
        root.open_file("/p", OFlag::O_RDONLY, 0, true, false)
            .is_ok()
    );
    let err = root.ensure_dir("/p", 0o700, None).map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
}

#[test]
fn a_file_in_the_middle_is_not_a_directory() {
    let (_dir, root) = root();
    let err = root.read_optional("/etc/passwd/x").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotADirectory, "{err}");
}

#[test]
fn a_plain_run_of_names_opens_in_one_call_and_a_link_on_the_way_does_not() {
    let (dir, _root) = root();
    fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
    symlink("b", dir.path().join("a/l")).unwrap();
    let top = fs::File::open(dir.path()).unwrap();
    let open = |path: &str| {
        super::open_run(
            top.as_fd(),
            Path::new(path),
            super::DIR_FLAGS,
            Mode::empty(),
        )
    };
    assert!(
        matches!(open("a/b/c"), super::Run::Opened(_)),
        "a/b/c has no link on the way"
    );
    for missing in ["a/b/missing", "a/missing/c", "missing"] {
        assert!(matches!(open(missing), super::Run::Missing), "{missing}");
    }
    // A link comes first: the walk judges it, and what lies behind it.
    for walked_instead in ["a/l/c", "a/l", "a/l/missing"] {
        assert!(
            matches!(open(walked_instead), super::Run::Walk),
            "{walked_instead} is for the walk"
        );
    }
}

#[test]
fn a_missing_name_is_not_found_in_one_call_but_a_link_before_it_is_still_judged() {
    let (dir, root) = root();
    fs::create_dir_all(dir.path().join("a/b")).unwrap();
    for missing in ["/a/b/none", "/a/none/file", "/none/a/b"] {
        assert_eq!(root.read_optional(missing).unwrap(), None, "{missing}");
        assert!(!root.exists(missing), "{missing}");
        let err = root.dir(missing, false).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{missing}: {err}");
    }
    // Where directories may be created, a missing one on the way still is.
    root.write_atomic("/a/new/dir/file", b"x", &WriteOptions::default())
        .unwrap();
    assert_eq!(fs::read(dir.path().join("a/new/dir/file")).unwrap(), b"x");
    // A root-owned link leads on, also to a name that turns out missing.
    symlink("b", dir.path().join("a/l")).unwrap();
    fs::write(dir.path().join("a/b/file"), "in b\n").unwrap();
    assert_eq!(root.read_optional("/a/l/file").unwrap().unwrap(), b"in b\n");
    assert_eq!(root.read_optional("/a/l/none").unwrap(), None);
    if !crate::testutil::require_root() {
        return;
    }
    // A link a guest user planted is refused before anything behind it, missing or not.
    let planted = dir.path().join("a/planted");
    symlink("b", &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(1000), Some(1000)).unwrap();
    for behind in ["/a/planted/none", "/a/planted/file"] {
        let err = root.read_optional(behind).unwrap_err();
        assert!(
            matches!(refused(&err), Some(Refused::ForeignSymlink { .. })),
            "{behind}: {err}"
        );
    }
}

#[test]
fn a_link_to_a_parent_leaves_directories_entered_in_one_call() {
    let (dir, root) = root();
    fs::create_dir_all(dir.path().join("a/b/c/d")).unwrap();
    fs::create_dir_all(dir.path().join("a/b/x")).unwrap();
    fs::write(dir.path().join("a/b/x/file"), "x\n").unwrap();
    // a/b/c/d is entered in one call; the link's `..` twice must land in a/b, not the root.
    symlink("../../x", dir.path().join("a/b/c/d/up")).unwrap();
    assert_eq!(
        root.read_optional("/a/b/c/d/up/file").unwrap().unwrap(),
        b"x\n"
    );
    root.write_atomic("/a/b/c/d/up/new", b"y", &WriteOptions::default())
        .unwrap();
    assert_eq!(fs::read(dir.path().join("a/b/x/new")).unwrap(), b"y");
    // Past the root, `..` stays there.
    symlink("../../../../../etc", dir.path().join("a/b/c/d/top")).unwrap();
    assert_eq!(
        root.read_optional("/a/b/c/d/top/passwd").unwrap().unwrap(),
        b"inside\n"
    );
}

#[test]
fn a_foreign_link_deep_in_the_path_is_refused_as_at_the_top() {
    if !crate::testutil::require_root() {
        return;
    }
    let (dir, root) = root();
    fs::create_dir_all(dir.path().join("home/alice/.ssh")).unwrap();
    let link = dir.path().join("home/alice/.ssh/authorized_keys");
    symlink("/etc/passwd", &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(1000), Some(1000)).unwrap();
    let err = root
        .read_optional("/home/alice/.ssh/authorized_keys")
        .unwrap_err();
    assert!(
        matches!(
            refused(&err),
            Some(Refused::ForeignSymlink { uid: 1000, .. })
        ),
        "{err}"
    );
    let planted = dir.path().join("home/alice/.cache");
    symlink("/etc", &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(1000), Some(1000)).unwrap();
    let err = root
        .write_atomic(
            "/home/alice/.cache/deep/new",
            b"x",
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert!(
        matches!(
            refused(&err.source),
            Some(Refused::ForeignSymlink { uid: 1000, .. })
        ),
        "{err}"
    );
    assert!(!dir.path().join("etc/deep").exists());
}

/// A file is read as root's configuration only where a write of it would go: through root's
/// final link in root's directory; not through one into a directory users may add entries to
/// (`/tmp`, where a user planted the file), nor from such a directory, whoever's the file.
#[test]
fn a_file_users_may_have_put_in_place_is_not_read() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, root) = root();
    symlink("passwd", dir.path().join("etc/pw")).unwrap();
    assert_eq!(root.read_optional("/etc/pw").unwrap().unwrap(), b"inside\n");
    fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let sticky = fs::Permissions::from_mode(0o1777);
    fs::set_permissions(dir.path().join("tmp"), sticky).unwrap();
    fs::write(dir.path().join("tmp/app.conf"), "planted\n").unwrap();
    symlink("/tmp/app.conf", dir.path().join("etc/app.conf")).unwrap();
    for (path, refusal) in [
        ("/etc/app.conf", "is root's symlink into"),
        (
            "/tmp/app.conf",
            "is in a directory users may add entries to",
        ),
    ] {
        let err = root.read_optional(path).unwrap_err();
        let shown = root.host_path(path);
        let said = format!("{} {refusal}", shown.display());
        assert!(err.to_string().starts_with(&said), "{err}");
    }
    // Nothing there, nothing a user put there.
    assert_eq!(root.read_optional("/tmp/none").unwrap(), None);
}

#[test]
fn a_status_is_taken_in_one_call_or_by_the_walk_with_the_same_answer() {
    let (dir, root) = root();
    fs::create_dir_all(dir.path().join("a/b")).unwrap();
    fs::write(dir.path().join("a/b/file"), "12345").unwrap();
    symlink("b/file", dir.path().join("a/to-file")).unwrap();
    symlink("/a/b", dir.path().join("to-b")).unwrap();
    symlink("none", dir.path().join("a/dangling")).unwrap();
    let size = |path: &str| root.stat(path).unwrap().map(|stat| stat.st_size);
    // No link on the way (one call), a final link and a link on the way (the walk).
    for path in ["/a/b/file", "/a/to-file", "/to-b/file"] {
        assert_eq!(size(path), Some(5), "{path}");
    }
    assert!(root.is_dir("/a/b") && root.is_dir("/to-b"));
    for missing in [
        "/a/b/none",
        "/a/none/file",
        "/none",
        "/to-b/none",
        "/a/dangling",
    ] {
        assert_eq!(size(missing), None, "{missing}");
    }
    let err = root.stat("/a/b/file/x").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotADirectory, "{err}");
    // A staged write is seen before it is in place, through the walk.
    let staged = root.staged();
    staged
        .write_atomic("/a/b/new", b"xy", &WriteOptions::default())
        .unwrap();
    assert!(!dir.path().join("a/b/new").exists());
    assert_eq!(staged.stat("/a/b/new").unwrap().map(|s| s.st_size), Some(2));
    staged.commit();
    if !crate::testutil::require_root() {
        return;
    }
    // A final link a guest user planted is refused, as before the one call.
    let planted = dir.path().join("a/planted");
    symlink("b/file", &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(1000), Some(1000)).unwrap();
    let err = root.stat("/a/planted").unwrap_err();
    assert!(
        matches!(refused(&err), Some(Refused::ForeignSymlink { .. })),
        "{err}"
    );
    assert!(!root.exists("/a/planted"));
}
