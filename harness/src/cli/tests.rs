//! The command line's parsing: paths made absolute, the lab state root for every lab command,
//! what `bench` forwards.

use std::ffi::OsString;
use std::path::Path;

use super::*;

/// Relative directories are made absolute from the current directory, whether from the
/// command line or the environment; absolute ones stay as they are.
#[test]
fn the_directories_commands_write_under_are_made_absolute() {
    let here = std::env::current_dir().unwrap();
    let cli = Cli::try_parse_from([
        "metaboot-harness",
        "--cache",
        "c",
        "run",
        "--run-dir",
        "runs/r1",
    ])
    .unwrap()
    .with_absolute_paths()
    .unwrap();
    assert_eq!(cli.cache_dir(), here.join("c"));
    let Command::Run(run) = &cli.command else {
        panic!("not run");
    };
    assert_eq!(run.run_dir.as_deref(), Some(here.join("runs/r1").as_path()));

    let cli = Cli::try_parse_from([
        "metaboot-harness",
        "image",
        "build",
        "tiny",
        "--out",
        "./images",
        "--cache",
        "/var/cache/m",
    ])
    .unwrap()
    .with_absolute_paths()
    .unwrap();
    assert_eq!(cli.cache_dir(), Path::new("/var/cache/m"));
    let Command::Image(ImageCommand::Build(build)) = &cli.command else {
        panic!("not image build");
    };
    let out = build.out.as_deref().unwrap();
    assert!(
        out.is_absolute() && out.starts_with(&here),
        "{}",
        out.display()
    );
}

/// A relative lab state root (`--state-root`, `METABOOT_LAB_STATE`) is made absolute for
/// every command that finds labs by it: dnsmasq changes to `/` before it writes its pid
/// file there, and `lab down` may run from another directory.
#[test]
fn the_lab_state_root_is_made_absolute_for_every_lab_command() {
    let here = std::env::current_dir().unwrap();
    let root = |line: &[&str]| {
        let cli = Cli::try_parse_from(line)
            .unwrap()
            .with_absolute_paths()
            .unwrap();
        match cli.command {
            Command::Lab(LabCommand::Up(args)) => args.lab.state_root,
            Command::Lab(LabCommand::Down(args)) => args.lab.state_root,
            Command::Lab(LabCommand::List(args)) => args.state_root,
            Command::Boot(args) => args.lab.state_root,
            Command::Run(args) => args.lab.state_root,
            other => panic!("no state root in {other:?}"),
        }
    };
    let flag = ["--state-root", "labs"];
    for line in [
        &["metaboot-harness", "lab", "up"][..],
        &["metaboot-harness", "lab", "down", "--id", "x1"],
        &["metaboot-harness", "lab", "list"],
        &["metaboot-harness", "boot", "--lab-id", "x1"],
        &["metaboot-harness", "run"],
    ] {
        let line: Vec<&str> = line.iter().chain(&flag).copied().collect();
        assert_eq!(root(&line), here.join("labs"), "{line:?}");
    }
    assert_eq!(
        root(&["metaboot-harness", "lab", "list", "--state-root", "/run/l"]),
        Path::new("/run/l")
    );
}

/// The harness's global flags reach `metaboot-bench` wherever they stand, and the rest
/// (help included) goes through as typed.
#[test]
fn bench_forwards_its_arguments() {
    let forwarded = |line: &[&str]| {
        let cli = Cli::try_parse_from(line).unwrap();
        let Command::Bench(args) = &cli.command else {
            panic!("{line:?} is not the bench command");
        };
        bench::command_line(cli.cache.as_deref(), cli.verbose, args)
    };
    let os = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
    assert_eq!(
        forwarded(&[
            "metaboot-harness",
            "-v",
            "bench",
            "--quick",
            "--only",
            "chain,agent"
        ]),
        os(&["-v", "--quick", "--only", "chain,agent"])
    );
    assert_eq!(
        forwarded(&[
            "metaboot-harness",
            "bench",
            "--cache",
            "/c",
            "--json",
            "b.json"
        ]),
        os(&["--cache", "/c", "--json", "b.json"])
    );
    assert_eq!(
        forwarded(&["metaboot-harness", "bench", "--help"]),
        os(&["--help"])
    );
    assert_eq!(forwarded(&["metaboot-harness", "bench"]), os(&[]));
}

/// `lab list` lists every lab it can read; one whose state is refused (a group-writable
/// directory, as a `lab up` under `sudo` with umask 002 would make) gets its refusal with
/// what to do, and the command fails after the others are listed.
#[test]
fn lab_list_tells_a_refused_lab_and_lists_the_others() {
    use std::os::unix::fs::PermissionsExt;

    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    for id in ["ab12", "cd34", "ef56"] {
        crate::lab::abandoned::tests::lab(root, id, None);
    }
    let list = |out: &mut Vec<u8>, errors: &mut Vec<u8>| list_labs(root, out, errors);
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    assert_eq!(list(&mut out, &mut errors).unwrap(), 0);
    let listed = String::from_utf8(out).unwrap();
    for id in ["ab12", "cd34", "ef56"] {
        assert!(listed.contains(&format!("lab {id} is up")), "{listed}");
    }
    assert!(errors.is_empty());

    let shared = crate::lab::state::lab_dir(root, "cd34");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o775)).unwrap();
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    let err = format!("{:#}", list(&mut out, &mut errors).unwrap_err());
    let listed = String::from_utf8(out).unwrap();
    let errors = String::from_utf8(errors).unwrap();
    assert!(listed.contains("lab ab12 is up"), "{listed}");
    assert!(listed.contains("lab ef56 is up"), "{listed}");
    assert!(!listed.contains("cd34"), "{listed}");
    assert!(errors.starts_with("lab cd34: "), "{errors}");
    assert!(errors.contains("chmod go-w"), "{errors}");
    assert_eq!(errors.lines().count(), 1, "{errors}");
    assert!(err.contains("lab cd34"), "{err}");
}
