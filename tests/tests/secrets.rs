//! Secrets on the host: a shared-secret file its group or others may read stops every role
//! with the `chmod` to run, one the role's user may not read with the `chown` to run (both
//! exit 2, as a missing one); a Unix socket is created with the mode asked and never changed
//! afterwards (so it never exists with a wider one, whatever the umask); a PostgreSQL password
//! given in `METABOOT_DB` works and appears in no process's argv nor in any error.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use metaboot_harness::postgres::PgServer;
use metaboot_tests::chain::{Chain, Scope, run_to_exit, server_binary, write_private};
use metaboot_tests::prerequisite::require;
use metaboot_tests::{guest, registry};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

const META_DATA: &str = "/openstack/latest/meta_data.json";

fn shown(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn a_secret_file_others_may_read_stops_every_role_with_the_chmod_to_run() {
    let chain = Chain::new().unwrap();
    let secret = chain.path().join("shared-secret");
    write_private(&secret, b"s3cret\n").unwrap();
    let path = shown(&secret);
    let socket = shown(&chain.path().join("agent.sock"));
    let roles: [&[&str]; 3] = [
        &[
            "api",
            "--listen",
            "127.0.0.1:0",
            "--shared-secret-file",
            &path,
        ],
        &["agent", "--socket", &socket, "--shared-secret-file", &path],
        &["all", "--shared-secret-file", &path],
    ];
    for mode in [0o640, 0o644, 0o604] {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        for args in roles {
            let refused = run_to_exit(chain.cli().args(args)).unwrap();
            assert_eq!(refused.code, Some(2), "{args:?} {mode:o}: {refused:?}");
            let lines: Vec<&str> = refused.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{refused:?}");
            assert!(
                lines[0].contains(&format!("run `chmod 600 {path}`")),
                "{refused:?}"
            );
            assert!(
                !Path::new(&socket).exists(),
                "{args:?} bound its socket before refusing"
            );
        }
    }
}

/// The uid the unreadable-secret test runs the roles as (`nobody` on Debian).
const OTHER_UID: u32 = 65_534;

#[test]
fn a_secret_file_the_role_may_not_read_stops_it_with_the_chown_to_run() {
    use std::os::unix::process::CommandExt as _;
    if !metaboot_tests::prerequisite::require_root() {
        return;
    }
    // Root's file, mode 0600, in a directory anyone may search: only the file's owner stops
    // another user.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = dir.path().join("shared-secret");
    write_private(&secret, b"s3cret\n").unwrap();
    let path = shown(&secret);
    let missing = shown(&dir.path().join("missing"));
    let socket = shown(&dir.path().join("agent.sock"));
    let db = shown(&dir.path().join("registry.sqlite"));
    let binary = server_binary().unwrap();
    let roles = |file: &str| -> [Vec<String>; 3] {
        let file = file.to_owned();
        [
            [
                "api",
                "--listen",
                "127.0.0.1:0",
                "--shared-secret-file",
                &file,
            ]
            .map(String::from)
            .to_vec(),
            ["agent", "--socket", &socket, "--shared-secret-file", &file]
                .map(String::from)
                .to_vec(),
            ["all", "--shared-secret-file", &file]
                .map(String::from)
                .to_vec(),
        ]
    };
    for args in roles(&path) {
        let mut cmd = Command::new(&binary);
        cmd.uid(OTHER_UID).gid(OTHER_UID).env_remove("METABOOT_DB");
        cmd.args(["--db", &db]).args(&args);
        let refused = run_to_exit(&mut cmd).unwrap();
        assert_eq!(refused.code, Some(2), "{args:?}: {refused:?}");
        let lines: Vec<&str> = refused.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{refused:?}");
        assert!(
            lines[0].contains(&format!("uid {OTHER_UID}")) && lines[0].contains("`chown "),
            "{refused:?}"
        );
        assert!(lines[0].contains(&format!(" {path}`")), "{refused:?}");
    }
    // A missing file is the user's mistake too.
    for args in roles(&missing) {
        let mut cmd = Command::new(&binary);
        cmd.env_remove("METABOOT_DB")
            .args(["--db", &db])
            .args(&args);
        let refused = run_to_exit(&mut cmd).unwrap();
        assert_eq!(refused.code, Some(2), "{args:?}: {refused:?}");
        assert!(refused.stderr.contains("create it"), "{refused:?}");
    }
    assert!(!Path::new(&socket).exists(), "a role bound its socket");
}

/// What inotify saw happen to `name` in the watched directory.
#[derive(Debug, Default)]
struct Seen {
    created: bool,
    attributes_changed: bool,
}

fn seen(inotify: &Inotify, name: &str) -> Seen {
    let mut seen = Seen::default();
    loop {
        let events = match inotify.read_events() {
            Ok(events) => events,
            Err(nix::errno::Errno::EAGAIN) => return seen,
            Err(err) => panic!("inotify: {err}"),
        };
        for event in events {
            if event.name != Some(OsString::from(name)) {
                continue;
            }
            seen.created |= event.mask.contains(AddWatchFlags::IN_CREATE);
            seen.attributes_changed |= event.mask.contains(AddWatchFlags::IN_ATTRIB);
        }
    }
}

/// Runs `metaboot-server ARGS` under umask 000 (the widest), in `chain`'s process group.
fn under_open_umask(chain: &mut Chain, name: &str, args: &[&str], socket: &Path) {
    let mut all = vec!["sh", "-c", "umask 000; exec \"$0\" \"$@\""];
    let binary = server_binary().unwrap();
    let db = shown(&chain.db);
    all.push(binary.to_str().unwrap());
    all.extend(["--db", &db]);
    all.extend_from_slice(args);
    let socket = socket.to_owned();
    chain
        .start_shell_role(name, &all, move || UnixStream::connect(&socket).is_ok())
        .unwrap();
}

#[test]
fn a_socket_never_exists_with_a_wider_mode_than_asked() {
    let mut chain = Chain::new().unwrap();
    chain.start_api().unwrap();
    let dir = chain.path().to_owned();
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    inotify
        .add_watch(&dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ATTRIB)
        .unwrap();
    let secret = shown(&chain.secret_file);
    let api = format!("http://{}", chain.api_addr);
    let cases: Vec<(&str, u32, Vec<String>)> = vec![
        (
            "agent.sock",
            0o600,
            vec![
                "agent".into(),
                "--socket".into(),
                shown(&dir.join("agent.sock")),
                "--socket-mode".into(),
                "600".into(),
                "--api".into(),
                api.clone(),
                "--shared-secret-file".into(),
                secret.clone(),
            ],
        ),
        (
            "api.sock",
            0o640,
            vec![
                "api".into(),
                "--listen".into(),
                format!("127.0.0.1:{}", metaboot_tests::chain::free_port()),
                "--socket".into(),
                shown(&dir.join("api.sock")),
                "--socket-mode".into(),
                "640".into(),
                "--shared-secret-file".into(),
                secret.clone(),
            ],
        ),
        (
            "all.sock",
            0o660,
            vec![
                "all".into(),
                "--agent-socket".into(),
                shown(&dir.join("all.sock")),
                "--shared-secret-file".into(),
                secret.clone(),
            ],
        ),
    ];
    for (name, mode, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let socket: PathBuf = dir.join(name);
        under_open_umask(&mut chain, name, &args, &socket);
        let actual = std::fs::symlink_metadata(&socket)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(actual, mode, "{name}: {actual:o}");
        // Created with that mode, and its mode never changed since: never wider.
        let seen = seen(&inotify, name);
        assert!(seen.created, "{name}: {seen:?}");
        assert!(
            !seen.attributes_changed,
            "{name} was changed after it was created (chmod after bind): {seen:?}"
        );
    }
}

#[test]
fn a_postgres_password_given_in_the_environment_stays_out_of_argv() {
    let server = PgServer::start();
    if !require(
        "PostgreSQL",
        server.as_ref().err().map(|err| format!("{err:#}")),
    ) {
        return;
    }
    let server = server.unwrap();
    const PASSWORD: &str = "pw_s3cret_4711";
    let url = server
        .create_password_user("metaboot_pw", PASSWORD)
        .unwrap();
    let with =
        |password: &str| url.replacen("metaboot_pw@", &format!("metaboot_pw:{password}@"), 1);

    // PostgreSQL really checks it: without it, or with a wrong one, the registry is refused,
    // and the error never shows what was given.
    for given in [url.clone(), with("wrong_password_42")] {
        let out = Command::new(server_binary().unwrap())
            .env("METABOOT_DB", &given)
            .args(["network", "list"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{given}: {stderr}");
        assert!(!stderr.contains("wrong_password_42"), "{stderr}");
    }

    // In METABOOT_DB: the registry commands and every role work.
    let mut chain = Chain::with_database(&with(PASSWORD)).unwrap();
    chain.db_in_env = true;
    let (_, router) = registry::routed_network(&chain, "127.50.0.0/24");
    let uuid = registry::instance(&chain, "vm", "net", "127.50.0.10");
    chain.start().unwrap();
    let proxy: SocketAddr = chain.start_proxy(&Scope::Router(router), &[]).unwrap();
    let reply = guest::get(Some(IpAddr::from([127, 50, 0, 10])), proxy, META_DATA, &[]).unwrap();
    assert_eq!(reply.json()["uuid"], uuid.as_str(), "{}", reply.text());
    for (name, pid) in chain.pids() {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let argv = String::from_utf8_lossy(&argv);
        assert!(
            !argv.contains(PASSWORD),
            "{name} has the password in argv: {argv}"
        );
        assert!(!argv.contains("postgres://"), "{name}: {argv}");
    }
    // A role that cannot reach the registry says so without the password.
    let mut broken =
        Chain::with_database(&with(PASSWORD).replace(&format!(":{}/", server.port()), ":1/"))
            .unwrap();
    broken.db_in_env = true;
    let refused = run_to_exit(
        broken
            .cli()
            .args(["agent", "--socket", &shown(&broken.agent_socket)])
            .args(["--shared-secret-file", &shown(&broken.secret_file)]),
    )
    .unwrap();
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(
        refused.stderr.contains("failed to open the registry"),
        "{refused:?}"
    );
    assert!(!refused.stderr.contains(PASSWORD), "{refused:?}");
}
