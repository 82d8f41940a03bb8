//! Staging: nothing moves before a publish, the run reads its own writes meanwhile, renames
//! keep their order, syncs stay constant, and what cannot be placed is reported.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::fcntl::OFlag;

use super::MAX_STAGED_DIRS;
use crate::fsutil::WriteOptions;
use crate::root::Root;

fn staged_root() -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    fs::write(dir.path().join("etc/hosts"), "old\n").unwrap();
    let root = Root::open(dir.path()).unwrap().staged();
    (dir, root)
}

/// Every temp file of an atomic write under `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                todo.push(path);
            } else if entry.file_name().to_string_lossy().contains(".metaboot-") {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn write(root: &Root, path: &str, text: &str) {
    root.write_atomic(path, text.as_bytes(), &WriteOptions::keep_or(0o644))
        .unwrap();
}

#[test]
fn nothing_moves_before_a_publish_but_the_run_reads_its_own_writes() {
    let (dir, root) = staged_root();
    write(&root, "/etc/hosts", "new\n");
    write(&root, "/etc/new-file", "created\n");
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
        "old\n"
    );
    assert!(!dir.path().join("etc/new-file").exists());
    // Every way of reading sees the staged write.
    assert_eq!(
        root.read_optional_string("/etc/hosts").unwrap().as_deref(),
        Some("new\n")
    );
    assert_eq!(
        root.read_optional_string("/etc/new-file")
            .unwrap()
            .as_deref(),
        Some("created\n")
    );
    assert!(root.exists("/etc/new-file"));
    let etc = root.dir("/etc", false).unwrap();
    assert_eq!(
        etc.read(std::ffi::OsStr::new("new-file"))
            .unwrap()
            .as_deref(),
        Some(&b"created\n"[..])
    );
    let stat = etc
        .entry(std::ffi::OsStr::new("new-file"))
        .unwrap()
        .unwrap();
    assert_eq!(stat.st_size, 8);
    assert_eq!(temp_files(dir.path()).len(), 2);

    let committed = root.commit();
    assert!(committed.failures.is_empty(), "{:?}", committed.failures);
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
        "new\n"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/new-file")).unwrap(),
        "created\n"
    );
    assert!(temp_files(dir.path()).is_empty());
    // One sync before the renames, none after (see the module's documentation): one file
    // system.
    assert_eq!(committed.totals.files, 2);
    assert_eq!(committed.totals.publishes, 1);
    assert_eq!(committed.totals.syncs, 1);
}

#[test]
fn syncs_do_not_grow_with_the_files_written() {
    for files in [1, 40, 400] {
        let (dir, root) = staged_root();
        for n in 0..files {
            write(&root, &format!("/srv/d{}/f{n}", n % 7), "x");
        }
        let committed = root.commit();
        assert_eq!(committed.totals.files, files, "{files} files");
        assert_eq!(committed.totals.syncs, 1, "{files} files");
        assert_eq!(
            fs::read_dir(dir.path().join("srv/d0")).unwrap().count(),
            files.div_ceil(7) as usize
        );
    }
}

#[test]
fn more_directories_than_the_limit_publish_in_batches() {
    let (dir, root) = staged_root();
    for n in 0..=MAX_STAGED_DIRS {
        write(&root, &format!("/many/d{n}/f"), "x");
    }
    // The first MAX_STAGED_DIRS directories were published when one more was needed.
    assert!(dir.path().join("many/d0/f").exists());
    assert!(
        !dir.path()
            .join(format!("many/d{MAX_STAGED_DIRS}/f"))
            .exists()
    );
    let committed = root.commit();
    assert_eq!(committed.totals.publishes, 2);
    assert_eq!(committed.totals.syncs, 2);
    assert!(
        dir.path()
            .join(format!("many/d{MAX_STAGED_DIRS}/f"))
            .exists()
    );
}

#[test]
fn renames_keep_the_order_of_the_writes() {
    let (dir, root) = staged_root();
    write(&root, "/etc/hosts", "first\n");
    write(&root, "/etc/other", "between\n");
    write(&root, "/etc/hosts", "second\n");
    // The first version of hosts stays a rename of its own (something came between).
    assert_eq!(temp_files(dir.path()).len(), 3);
    assert_eq!(
        root.read_optional_string("/etc/hosts").unwrap().as_deref(),
        Some("second\n")
    );
    let committed = root.commit();
    assert_eq!(committed.totals.files, 3);
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
        "second\n"
    );
}

#[test]
fn a_rewrite_right_after_replaces_the_staged_write() {
    let (dir, root) = staged_root();
    for n in 0..50 {
        write(&root, "/etc/hosts", &format!("{n}\n"));
    }
    assert_eq!(temp_files(dir.path()).len(), 1, "one temp file, not fifty");
    assert_eq!(root.commit().totals.files, 1);
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
        "49\n"
    );
}

#[test]
fn a_second_write_keeps_the_mode_of_the_staged_one() {
    let (dir, root) = staged_root();
    root.write_atomic("/etc/secret", b"a", &WriteOptions::exact(0o600, None))
        .unwrap();
    root.write_atomic("/etc/secret", b"b", &WriteOptions::keep_or(0o644))
        .unwrap();
    root.commit();
    let meta = fs::metadata(dir.path().join("etc/secret")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
}

#[test]
fn a_group_is_staged_whole_or_not_at_all() {
    let (dir, root) = staged_root();
    fs::write(dir.path().join("not-a-dir"), "file").unwrap();
    let err = root
        .write_all_or_none(&[
            (Path::new("/etc/hosts"), b"new\n", WriteOptions::default()),
            (Path::new("/etc/group"), b"g\n", WriteOptions::default()),
            (Path::new("/not-a-dir/x"), b"x", WriteOptions::default()),
        ])
        .unwrap_err();
    assert_eq!(err.op, "create directory");
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(
        root.read_optional_string("/etc/hosts").unwrap().as_deref(),
        Some("old\n")
    );
    let committed = root.commit();
    assert_eq!(committed.totals.files, 0);
    assert!(!dir.path().join("etc/group").exists());
    // A group that succeeds is kept.
    root.write_all_or_none(&[(Path::new("/etc/hosts"), b"new\n", WriteOptions::default())])
        .unwrap();
    root.commit();
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
        "new\n"
    );
}

#[test]
fn a_rename_that_fails_in_a_group_stops_the_rest_of_the_group_only() {
    let (dir, root) = staged_root();
    root.write_all_or_none(&[
        (Path::new("/etc/shadow"), b"s\n", WriteOptions::default()),
        (Path::new("/etc/group"), b"g\n", WriteOptions::default()),
        (Path::new("/etc/passwd"), b"p\n", WriteOptions::default()),
    ])
    .unwrap();
    write(&root, "/etc/hosts", "new\n");
    // group cannot be replaced any more: a directory with a file took its name.
    fs::create_dir_all(dir.path().join("etc/group/x")).unwrap();
    let committed = root.commit();
    let failures: Vec<String> = committed
        .failures
        .iter()
        .map(|f| crate::log::chain(f))
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0].contains("etc/group"), "{failures:?}");
    assert!(
        failures[1].contains("etc/passwd")
            && failures[1].contains("written together with")
            && failures[1].contains("etc/group"),
        "{failures:?}"
    );
    assert_eq!(committed.totals.files, 2);
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/shadow")).unwrap(),
        "s\n"
    );
    assert!(!dir.path().join("etc/passwd").exists());
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
        "new\n"
    );
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn a_target_that_cannot_be_replaced_is_reported_and_keeps_its_place() {
    let (dir, root) = staged_root();
    write(&root, "/etc/app.conf", "x");
    write(&root, "/etc/hosts", "new\n");
    // Someone puts a non-empty directory where the file goes before the commit.
    fs::create_dir_all(dir.path().join("etc/app.conf/inside")).unwrap();
    let committed = root.commit();
    assert_eq!(committed.failures.len(), 1, "{:?}", committed.failures);
    let failure = &committed.failures[0];
    assert_eq!(failure.op, "rename into place");
    assert!(failure.path.ends_with("etc/app.conf"), "{failure}");
    assert!(dir.path().join("etc/app.conf/inside").is_dir());
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
        "new\n"
    );
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn a_directory_at_the_target_is_refused_when_staging() {
    let (dir, root) = staged_root();
    fs::create_dir(dir.path().join("etc/conf.d")).unwrap();
    let err = root
        .write_atomic("/etc/conf.d", b"x", &WriteOptions::default())
        .unwrap_err();
    assert_eq!(err.op, "replace");
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn listing_or_opening_a_staged_name_for_writing_publishes_first() {
    let (dir, root) = staged_root();
    write(&root, "/etc/skel/.profile", "p");
    let skel = root.dir("/etc/skel", false).unwrap();
    let names: Vec<_> = skel
        .entries()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, [std::ffi::OsString::from(".profile")]);
    assert_eq!(root.totals().publishes, 1);

    write(&root, "/etc/hosts", "staged\n");
    let mut file = root
        .open_file(
            "/etc/hosts",
            OFlag::O_WRONLY | OFlag::O_APPEND,
            0,
            false,
            false,
        )
        .unwrap();
    std::io::Write::write_all(&mut file, b"appended\n").unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
        "staged\nappended\n"
    );
    assert_eq!(root.totals().publishes, 2);
}

#[test]
fn a_staged_symlink_is_followed_as_it_will_be() {
    let (dir, root) = staged_root();
    fs::create_dir_all(dir.path().join("state/instances/two")).unwrap();
    fs::write(dir.path().join("state/instances/two/id"), "two\n").unwrap();
    root.replace_symlink("/state/instance", Path::new("instances/two"))
        .unwrap();
    assert!(!dir.path().join("state/instance").exists());
    assert_eq!(
        root.read_optional_string("/state/instance/id")
            .unwrap()
            .as_deref(),
        Some("two\n")
    );
    root.commit();
    assert_eq!(
        fs::read_link(dir.path().join("state/instance")).unwrap(),
        Path::new("instances/two")
    );
}

#[test]
fn a_write_now_is_in_place_at_once() {
    let (dir, root) = staged_root();
    write(&root, "/etc/hosts", "staged\n");
    root.write_atomic_now("/status.json", b"running", &WriteOptions::default())
        .unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("status.json")).unwrap(),
        "running"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
        "old\n"
    );
    // Over a staged name, what was staged goes first.
    root.write_atomic_now("/etc/hosts", b"now\n", &WriteOptions::default())
        .unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
        "now\n"
    );
    assert!(root.commit().failures.is_empty());
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
        "now\n"
    );
}

#[test]
fn a_run_that_ends_without_its_commit_leaves_the_old_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("hosts"), "old\n").unwrap();
    {
        let root = Root::open(dir.path()).unwrap().staged();
        write(&root, "/hosts", "new\n");
    }
    assert_eq!(
        fs::read_to_string(dir.path().join("hosts")).unwrap(),
        "old\n"
    );
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn an_unstaged_root_writes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    write(&root, "/hosts", "new\n");
    assert_eq!(
        fs::read_to_string(dir.path().join("hosts")).unwrap(),
        "new\n"
    );
    assert_eq!(root.commit().totals, super::Totals::default());
}

#[test]
fn temp_files_of_a_killed_run_go_when_the_next_run_writes_there() {
    let (dir, root) = staged_root();
    let etc = dir.path().join("etc");
    fs::write(etc.join(".hosts.metaboot-4242-7.tmp"), "stale").unwrap();
    fs::write(etc.join(".shadow.metaboot-1-0.tmp"), "stale").unwrap();
    // Not ours: left alone.
    fs::write(etc.join(".hosts.metaboot-x-7.tmp"), "keep").unwrap();
    fs::write(etc.join("hosts.metaboot-1-1.tmp"), "keep").unwrap();
    fs::create_dir(etc.join(".d.metaboot-1-2.tmp")).unwrap();
    fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
    fs::write(dir.path().join("elsewhere/.x.metaboot-1-1.tmp"), "keep").unwrap();
    write(&root, "/etc/hosts", "new\n");
    let names: Vec<String> = fs::read_dir(&etc)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for gone in [".hosts.metaboot-4242-7.tmp", ".shadow.metaboot-1-0.tmp"] {
        assert!(!names.iter().any(|n| n == gone), "{gone}: {names:?}");
    }
    for kept in [
        ".hosts.metaboot-x-7.tmp",
        "hosts.metaboot-1-1.tmp",
        ".d.metaboot-1-2.tmp",
    ] {
        assert!(names.iter().any(|n| n == kept), "{kept}: {names:?}");
    }
    // Our own staged temp file is there, and only it.
    let ours = format!(".hosts.metaboot-{}-", std::process::id());
    let temps: Vec<&String> = names
        .iter()
        .filter(|n| super::is_temp_name(std::ffi::OsStr::new(n.as_str())))
        .filter(|n| etc.join(n).is_file())
        .collect();
    assert_eq!(temps.len(), 1, "{names:?}");
    assert!(temps[0].starts_with(&ours), "{names:?}");
    assert!(dir.path().join("elsewhere/.x.metaboot-1-1.tmp").exists());
    root.commit();
    assert_eq!(fs::read_to_string(etc.join("hosts")).unwrap(), "new\n");
}

#[test]
fn temp_names_are_recognised_exactly() {
    for yes in [
        ".hosts.metaboot-12-0.tmp",
        ".a.b.metaboot-1-22.tmp",
        "..x.metaboot-9-9.tmp",
    ] {
        assert!(super::is_temp_name(std::ffi::OsStr::new(yes)), "{yes}");
    }
    for no in [
        "hosts",
        ".metaboot-1-2.tmp",
        ".hosts.metaboot-1-2",
        ".hosts.metaboot-1.tmp",
        ".hosts.metaboot--2.tmp",
        "hosts.metaboot-1-2.tmp",
        ".hosts.metaboot-1-2a.tmp",
    ] {
        assert!(!super::is_temp_name(std::ffi::OsStr::new(no)), "{no}");
    }
}
