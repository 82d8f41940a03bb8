//! `metaboot-server instance config-drive NAME -o FILE` as a user runs it: the image is read
//! back with the image tools (osirrox, mtools) and every document on it is compared with what
//! the metadata API answers for the same instance (docs/protocol.md §9.6): byte for byte,
//! apart from `random_seed` and the config drive's own `admin_pass`.

mod cli_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use metaboot_proto::headers;
use metaboot_server::api::{Api, Identify, MetadataRequest, Rendering, VendorDocs};
use metaboot_server::model::ReadModel;
use metaboot_server::store;

use cli_support::{Registry, ssh_key};

const SECRET: &[u8] = b"config-drive-secret";
const VENDOR: &str = r##"{"cloud-init": "#cloud-config\nruncmd: [touch, /vendor]\n"}"##;

/// In CI (`CI=true`) a missing tool fails the test; elsewhere it is skipped with the reason.
fn require_tools(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| Command::new(tool).arg("--version").output().is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{missing:?} required in CI (scripts/install-test-deps installs them)");
    }
    eprintln!("skipping: {missing:?} not installed");
    false
}

/// A registry with one instance that has everything a drive carries: keys, user data, meta,
/// an admin password, a port on a network with an MTU.
fn registry() -> (Registry, String) {
    let reg = Registry::new();
    reg.ok(&[
        "network",
        "create",
        "net1",
        "--cidr",
        "198.18.0.0/24",
        "--mtu",
        "1450",
    ]);
    let (key, _) = ssh_key(&reg, "id_ed25519");
    let user_data = reg.write("user-data", b"#cloud-config\nhostname: from-user-data\n");
    let admin = reg.write("admin-pass", b"s3cret-admin\n");
    let created = reg.json(&[
        "instance",
        "create",
        "web",
        "--network",
        "net1",
        "--key-file",
        &key,
        "--user-data",
        &user_data,
        "--meta",
        "role=web",
        "--availability-zone",
        "nova",
        "--admin-pass-file",
        &admin,
        "--json",
    ]);
    let uuid = created["uuid"].as_str().unwrap().to_owned();
    (reg, uuid)
}

/// The files of an image, read back with osirrox (ISO 9660, Rock Ridge names) or mcopy (vfat).
fn extract(image: &Path, vfat: bool, into: &Path) -> BTreeMap<String, Vec<u8>> {
    let status = if vfat {
        fs::create_dir_all(into).unwrap();
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-s", "-n", "-i"])
            .arg(image)
            .arg("::/*")
            .arg(into)
            .status()
    } else {
        Command::new("osirrox")
            .arg("-indev")
            .arg(image)
            .args(["-extract", "/"])
            .arg(into)
            .output()
            .map(|out| out.status)
    }
    .unwrap();
    assert!(status.success(), "extracting {}", image.display());
    let mut files = BTreeMap::new();
    let mut stack = vec![into.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let inside = path.strip_prefix(into).unwrap().display().to_string();
                files.insert(inside, fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// The API over the same registry, asked as the agent would ask it for `uuid`.
struct Metadata {
    api: Api,
    uuid: String,
}

impl Metadata {
    fn new(db: &Path, uuid: &str, vendor: &Path) -> Self {
        let store = store::open(db.to_str().unwrap()).unwrap();
        let rendering = Rendering {
            vendor: VendorDocs::load(vendor).unwrap(),
            ..Rendering::default()
        };
        let model = Arc::new(ReadModel::load(store.as_ref()).unwrap());
        let api = Api::new(store, model, Identify::proxy(SECRET.into()), rendering);
        Self {
            api,
            uuid: uuid.to_owned(),
        }
    }

    async fn get(&self, path: &str) -> Bytes {
        let mut h = HeaderMap::new();
        h.insert(
            headers::INSTANCE_ID,
            HeaderValue::from_str(&self.uuid).unwrap(),
        );
        h.insert(headers::TENANT_ID, HeaderValue::from_static("admin"));
        h.insert(
            headers::INSTANCE_ID_SIGNATURE,
            HeaderValue::from_str(&metaboot_proto::sign(SECRET, &self.uuid)).unwrap(),
        );
        h.insert(
            headers::FORWARDED_FOR,
            HeaderValue::from_static("198.18.0.3"),
        );
        let request = MetadataRequest {
            method: Method::GET,
            path: path.to_owned(),
            headers: h,
            peer: None,
            body: Bytes::new(),
        };
        let response = self.api.answer(&request).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.into_body().collect().await.unwrap().to_bytes()
    }
}

/// `meta_data.json` without its leading `"random_seed":"…",` (the API splices a fresh one
/// in first) and, for the drive's copy, without `"admin_pass":"…"`; returns the admin password.
fn without_seed_and_admin_pass(doc: &[u8]) -> (String, Option<String>) {
    let text = std::str::from_utf8(doc).unwrap();
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    let seed = value["random_seed"].as_str().map(str::to_owned);
    let admin = value["admin_pass"].as_str().map(str::to_owned);
    let mut text = text.to_owned();
    if let Some(seed) = seed {
        text = text.replacen(&format!("\"random_seed\":\"{seed}\","), "", 1);
    }
    if let Some(admin) = &admin {
        text = text.replacen(
            &format!(",\"admin_pass\":{}", serde_json::json!(admin)),
            "",
            1,
        );
    }
    (text, admin)
}

/// Every leaf of an EC2 `meta-data.json` against `GET /<version>/meta-data/<path>`; a
/// directory's `_name` (nova's public-keys `0=<name>`) against its parent's listing.
async fn compare_ec2(api: &Metadata, base: &str, value: &serde_json::Value, checked: &mut usize) {
    let mut stack = vec![(base.to_owned(), value.clone())];
    while let Some((path, value)) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    if key == "_name" {
                        let parent = path.rsplit_once('/').map_or("", |(parent, _)| parent);
                        let listing = String::from_utf8_lossy(&api.get(parent).await).into_owned();
                        let name = child.as_str().unwrap();
                        assert!(
                            listing.lines().any(|line| line == name),
                            "{path}: {listing}"
                        );
                        *checked += 1;
                        continue;
                    }
                    stack.push((format!("{path}/{key}"), child));
                }
            }
            serde_json::Value::Array(items) => {
                let joined: Vec<&str> = items.iter().map(|i| i.as_str().unwrap()).collect();
                assert_eq!(api.get(&path).await, joined.join("\n"), "{path}");
                *checked += 1;
            }
            serde_json::Value::String(text) => {
                assert_eq!(api.get(&path).await, text, "{path}");
                *checked += 1;
            }
            // nova's int `ami-launch-index`: the API answers its text.
            serde_json::Value::Number(number) => {
                assert_eq!(api.get(&path).await, number.to_string(), "{path}");
                *checked += 1;
            }
            other => panic!("{path}: unexpected {other}"),
        }
    }
}

async fn every_document_is_what_the_api_serves(vfat: bool) {
    if !require_tools(if vfat {
        &["mkfs.vfat", "mcopy"]
    } else {
        &["xorriso", "osirrox"]
    }) {
        return;
    }
    let (reg, uuid) = registry();
    let vendor = reg.write("vendor.json", VENDOR.as_bytes());
    let image = reg.path(if vfat { "drive.vfat" } else { "drive.iso" });
    let mut args = vec![
        "instance".to_owned(),
        "config-drive".to_owned(),
        "web".to_owned(),
        "-o".to_owned(),
        image.display().to_string(),
        "--vendor-data".to_owned(),
        vendor.clone(),
    ];
    if vfat {
        args.extend(["--format".to_owned(), "vfat".to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let printed = reg.ok(&args);
    assert!(printed.contains("config-2"), "{printed}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        fs::metadata(&image).unwrap().permissions().mode() & 0o777,
        0o600,
        "the image holds the admin password"
    );
    let bytes = fs::read(&image).unwrap();
    if vfat {
        assert_eq!(bytes.len(), 64 * 1024 * 1024);
        assert_eq!(&bytes[43..51], b"config-2", "the FAT volume label");
    } else {
        // Primary volume descriptor: label; then Joliet's supplementary one; Rock Ridge's ER.
        assert_eq!(&bytes[32 * 1024 + 1..32 * 1024 + 6], b"CD001");
        assert_eq!(&bytes[32 * 1024 + 40..32 * 1024 + 48], b"config-2");
        let joliet = (17..32).any(|sector| {
            let vd = &bytes[sector * 2048..sector * 2048 + 91];
            vd[0] == 2 && &vd[1..6] == b"CD001" && vd[88..91].starts_with(b"%/")
        });
        assert!(joliet, "a Joliet volume descriptor");
        assert!(
            bytes.windows(10).any(|w| w == b"RRIP_1991A"),
            "Rock Ridge extensions"
        );
    }
    let files = extract(&image, vfat, &reg.path("extracted"));
    let api = Metadata::new(&reg.db, &uuid, Path::new(&vendor));

    let mut expected: Vec<String> = Vec::new();
    for ec2 in ["2009-04-04", "latest"] {
        expected.push(format!("ec2/{ec2}/meta-data.json"));
        expected.push(format!("ec2/{ec2}/user-data"));
    }
    for version in metaboot_proto::OpenStackVersion::ALL
        .iter()
        .map(|v| v.date())
        .chain(["latest"])
    {
        for name in [
            "meta_data.json",
            "user_data",
            "vendor_data.json",
            "network_data.json",
            "vendor_data2.json",
        ] {
            // nova's gates: vendor data since 2013-10-17, network data since 2015-10-15,
            // vendor data 2 since 2016-10-06.
            let since = match name {
                "vendor_data.json" => "2013-10-17",
                "network_data.json" => "2015-10-15",
                "vendor_data2.json" => "2016-10-06",
                _ => "",
            };
            if version == "latest" || version >= since {
                expected.push(format!("openstack/{version}/{name}"));
            }
        }
    }
    expected.sort();
    let found: Vec<String> = files.keys().cloned().collect();
    assert_eq!(found, expected);

    let mut checked = 0;
    for (path, data) in &files {
        let (tree, rest) = path.split_once('/').unwrap();
        let (version, name) = rest.split_once('/').unwrap();
        match (tree, name) {
            ("openstack", "meta_data.json") => {
                let served = api
                    .get(&format!("/openstack/{version}/meta_data.json"))
                    .await;
                let (drive, admin) = without_seed_and_admin_pass(data);
                let (served, none) = without_seed_and_admin_pass(&served);
                assert_eq!(drive, served, "{path}");
                assert_eq!(admin.as_deref(), Some("s3cret-admin"), "{path}");
                assert_eq!(none, None, "the API never serves admin_pass");
                let seeded: serde_json::Value = serde_json::from_slice(data).unwrap();
                if version == "2012-08-10" {
                    assert!(seeded.get("random_seed").is_none());
                } else {
                    assert_eq!(seeded["random_seed"].as_str().unwrap().len(), 684);
                }
            }
            ("openstack", _) => {
                let served = api.get(&format!("/openstack/{version}/{name}")).await;
                assert_eq!(&served[..], &data[..], "{path}");
            }
            ("ec2", "user-data") => {
                assert_eq!(
                    &api.get(&format!("/{version}/user-data")).await[..],
                    &data[..]
                );
            }
            ("ec2", "meta-data.json") => {
                let value: serde_json::Value = serde_json::from_slice(data).unwrap();
                assert!(value["public-keys"]["0"]["openssh-key"].is_string());
                compare_ec2(&api, &format!("/{version}/meta-data"), &value, &mut checked).await;
            }
            _ => panic!("unexpected {path}"),
        }
        checked += 1;
    }
    assert!(checked > files.len(), "every EC2 leaf was compared too");
}

#[tokio::test]
async fn the_iso_drive_holds_what_the_api_serves() {
    every_document_is_what_the_api_serves(false).await;
}

#[tokio::test]
async fn the_vfat_drive_holds_what_the_api_serves() {
    every_document_is_what_the_api_serves(true).await;
}

/// `instance config-drive web -o IMAGE` under `strace ARGS` (without `-f`: the command
/// itself, not its tools).
fn config_drive_under_strace(reg: &Registry, image: &Path, args: &[&str]) -> Output {
    Command::new("strace")
        .args(args)
        .arg(env!("CARGO_BIN_EXE_metaboot-server"))
        .arg("--db")
        .arg(&reg.db)
        .args(["instance", "config-drive", "web", "-o"])
        .arg(image)
        .env_remove("METABOOT_DB")
        .output()
        .unwrap()
}

/// The image is on disk before it is renamed into place, and the rename after (the image
/// file fsynced before the rename, its directory after).
#[test]
fn the_image_is_synced_before_and_after_its_rename() {
    if !require_tools(&["xorriso", "strace"]) {
        return;
    }
    let (reg, _) = registry();
    let image = reg.path("drive.iso");
    let trace = reg.path("trace");
    let output = config_drive_under_strace(
        &reg,
        &image,
        &[
            "-qq",
            "-y",
            "-e",
            "trace=fsync,rename,renameat,renameat2",
            "-o",
            trace.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let trace = fs::read_to_string(&trace).unwrap();
    let dir = fs::canonicalize(reg.dir.path()).unwrap();
    let at = |what: &dyn Fn(&str) -> bool| {
        trace
            .lines()
            .position(|line| line.ends_with("= 0") && what(line))
            .unwrap_or_else(|| panic!("not in the trace:\n{trace}"))
    };
    let renamed = at(&|line| line.starts_with("rename") && line.contains("/image\""));
    let image_synced = at(&|line| line.starts_with("fsync(") && line.contains("/image>)"));
    let dir_synced =
        at(&|line| line.starts_with("fsync(") && line.contains(&format!("<{}>)", dir.display())));
    assert!(image_synced < renamed && renamed < dir_synced, "{trace}");
}

/// A run killed (SIGKILL, no cleanup) before its rename leaves its working directory, which
/// holds the admin password; the next run for the same output removes it.
#[test]
fn a_killed_run_s_working_directory_is_removed_by_the_next_run() {
    if !require_tools(&["xorriso", "strace"]) {
        return;
    }
    let (reg, _) = registry();
    let image = reg.path("drive.iso");
    let scratch = || -> Vec<PathBuf> {
        fs::read_dir(reg.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".drive.iso.")
            })
            .collect()
    };
    let killed = config_drive_under_strace(
        &reg,
        &image,
        &[
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=rename,renameat,renameat2",
            "--inject=rename,renameat,renameat2:signal=KILL",
        ],
    );
    assert!(!killed.status.success(), "{killed:?}");
    assert!(!image.exists());
    let left = scratch();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0]
            .join("tree/openstack/latest/meta_data.json")
            .exists()
    );
    reg.ok(&[
        "instance",
        "config-drive",
        "web",
        "-o",
        image.to_str().unwrap(),
    ]);
    assert!(image.exists());
    assert_eq!(scratch(), Vec::<PathBuf>::new());
}

/// Ctrl-C, SIGTERM or SIGHUP while the drive is made (here SIGTERM as the command waits for
/// its ISO tool): the command ends with an error of its own, not killed, and leaves neither
/// an image nor its working directory (the admin password, the user data).
#[test]
fn a_run_ended_by_a_signal_leaves_no_working_directory() {
    if !require_tools(&["xorriso", "strace"]) {
        return;
    }
    let (reg, _) = registry();
    let image = reg.path("drive.iso");
    let ended = config_drive_under_strace(
        &reg,
        &image,
        &[
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=wait4",
            "--inject=wait4:signal=TERM:when=1",
        ],
    );
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert_eq!(ended.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted by a signal"), "{stderr}");
    assert!(!image.exists());
    let left: Vec<String> = fs::read_dir(reg.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".drive.iso."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A build started ignoring SIGHUP (`nohup … &`, then the terminal closes) is not ended by
/// one: the drive is made.
#[test]
fn a_hangup_the_build_was_started_ignoring_stays_ignored() {
    if !require_tools(&["xorriso", "strace", "nohup"]) {
        return;
    }
    let (reg, _) = registry();
    let image = reg.path("drive.iso");
    let output = Command::new("nohup")
        .args([
            "strace",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=wait4",
            "--inject=wait4:signal=HUP:when=1",
        ])
        .arg(env!("CARGO_BIN_EXE_metaboot-server"))
        .arg("--db")
        .arg(&reg.db)
        .args(["instance", "config-drive", "web", "-o"])
        .arg(&image)
        .env_remove("METABOOT_DB")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(image.exists());
}

/// An output that exists and is no regular file (a device such as a USB stick's, a symbolic
/// link to a drive elsewhere) is refused: the drive is a new file renamed into place, which
/// would replace the device node or the link rather than write through it.
#[test]
fn an_output_that_is_no_regular_file_is_refused() {
    // On a machine whose /dev/null is a regular file the command would write its drive there:
    // stop before, saying so, rather than hide whatever replaced the device.
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(
            &fs::symlink_metadata("/dev/null").unwrap().file_type()
        ),
        "/dev/null is not the character device on this machine: as root, \
         rm /dev/null && mknod -m 666 /dev/null c 1 3"
    );
    let (reg, _) = registry();
    let target = reg.path("elsewhere.iso");
    fs::write(&target, b"old drive").unwrap();
    let link = reg.path("linked.iso");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dir = reg.path("a-directory");
    fs::create_dir_all(&dir).unwrap();
    for out in [link.as_path(), dir.as_path(), Path::new("/dev/null")] {
        let refused = reg.refused(&[
            "instance",
            "config-drive",
            "web",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(refused.contains("is not a regular file"), "{refused}");
    }
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&target).unwrap(), b"old drive");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &fs::metadata("/dev/null").unwrap().file_type()
    ));
}

/// A `--vendor-data` file that is missing, not JSON or too large (even endless, such as
/// `/dev/zero`) is the user's mistake: exit 2, one line saying which, and no drive written.
#[test]
fn a_bad_vendor_data_file_is_refused_as_bad_input() {
    let (reg, _) = registry();
    let out = reg.path("drive.iso");
    let missing = reg.path("missing.json").display().to_string();
    let not_json = reg.write("bad.json", b"{nope");
    let limit = metaboot_server::api::vendor::MAX_VENDOR_DATA_BYTES;
    let too_large = reg.write(
        "large.json",
        format!("\"{}\"", "x".repeat(limit)).as_bytes(),
    );
    let cases = [
        (missing.as_str(), "cannot read the vendor data file"),
        (not_json.as_str(), "is not valid JSON"),
        (too_large.as_str(), "larger than"),
    ];
    let args = |vendor| {
        [
            "instance",
            "config-drive",
            "web",
            "-o",
            out.to_str().unwrap(),
            "--vendor-data",
            vendor,
        ]
    };
    for (vendor, expected) in cases {
        let refused = reg.refused(&args(vendor));
        assert!(refused.contains(expected), "{vendor}: {refused}");
        assert!(!out.exists(), "{vendor}: a drive was written");
    }
    // Read up to the limit and one byte more, not to the end (killed if it does not stop).
    let endless = reg
        .cmd(&args("/dev/zero"))
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&endless.stderr);
    assert_eq!(endless.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("larger than"), "{stderr}");
    assert!(!out.exists(), "a drive was written");
}

/// A user's `PATH` on Debian has no sbin directory, where `mkfs.vfat` is: it is found there all
/// the same, and run by its full path.
#[test]
fn mkfs_vfat_in_sbin_is_found_without_sbin_on_path() {
    if !require_tools(&["mkfs.vfat", "mcopy"]) {
        return;
    }
    let in_sbin = ["/usr/sbin", "/sbin"]
        .iter()
        .any(|dir| Path::new(dir).join("mkfs.vfat").exists());
    let mcopy_on_user_path = ["/usr/bin", "/bin"]
        .iter()
        .any(|dir| Path::new(dir).join("mcopy").exists());
    if !in_sbin || !mcopy_on_user_path {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "mkfs.vfat in /usr/sbin and mcopy in /usr/bin are required in CI (Debian's dosfstools \
             and mtools put them there)"
        );
        eprintln!("skipping: mkfs.vfat is not in an sbin directory, or mcopy not in /usr/bin");
        return;
    }
    let (reg, _) = registry();
    let image = reg.path("drive.vfat");
    let output = reg
        .cmd(&["instance", "config-drive", "web", "--format", "vfat", "-o"])
        .arg(&image)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(image.exists());
}

/// Without any ISO tool on `PATH` the command names the packages to install and writes
/// nothing (`mkfs.vfat` is looked for in /usr/sbin and /sbin too, so the vfat refusal may
/// name mcopy); an unknown instance is refused with exit code 2.
#[test]
fn a_missing_tool_or_instance_is_a_clear_error() {
    let (reg, _) = registry();
    let image: PathBuf = reg.path("drive.iso");
    let empty = reg.path("empty-path");
    fs::create_dir_all(&empty).unwrap();
    let output = reg
        .cmd(&["instance", "config-drive", "web", "-o"])
        .arg(&image)
        .env("PATH", &empty)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("genisoimage")
            && stderr.contains("xorriso")
            && stderr.contains("apt-get install"),
        "{stderr}"
    );
    let output = reg
        .cmd(&["instance", "config-drive", "web", "--format", "vfat", "-o"])
        .arg(&image)
        .env("PATH", &empty)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // mkfs.vfat is found in /usr/sbin or /sbin without PATH: then mcopy is the one missing.
    assert!(
        (stderr.contains("mkfs.vfat") && stderr.contains("dosfstools"))
            || (stderr.contains("mcopy") && stderr.contains("mtools")),
        "{stderr}"
    );
    assert!(!image.exists());
    assert_eq!(
        fs::read_dir(reg.dir.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
            .count(),
        0,
        "no scratch directory left"
    );
    let refused = reg.refused(&["instance", "config-drive", "nobody", "-o", "/tmp/x.iso"]);
    assert!(refused.contains("nobody"), "{refused}");
}

/// A relative output whose directory starts with `-` (`--output=-drives/drive.iso`, run in that
/// directory's parent) is written like any other: the image tools are given `./-drives/…`,
/// never a path they read as one of their options.
#[test]
fn a_relative_output_under_a_directory_named_like_an_option_is_written() {
    if !require_tools(&["xorriso", "mkfs.vfat", "mcopy"]) {
        return;
    }
    let (reg, _) = registry();
    fs::create_dir_all(reg.path("-drives")).unwrap();
    for (format, name) in [("iso9660", "drive.iso"), ("vfat", "drive.img")] {
        let out = format!("-drives/{name}");
        let output = reg
            .cmd(&["instance", "config-drive", "web", "--format", format])
            .arg(format!("--output={out}"))
            .current_dir(reg.dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{format}: {stderr}");
        let written = reg.path(&out);
        let files = extract(
            &written,
            format == "vfat",
            &reg.path(&format!("{format}-tree")),
        );
        assert!(
            files.contains_key("openstack/latest/meta_data.json"),
            "{format}: {:?}",
            files.keys().collect::<Vec<_>>()
        );
    }
}

/// A tool that is found but cannot be started (here a script whose interpreter is missing)
/// is said to be the one that cannot run, never a file that cannot be written.
#[test]
fn a_tool_that_cannot_start_is_named_as_such() {
    let (reg, _) = registry();
    let tools = reg.path("broken-tools");
    fs::create_dir_all(&tools).unwrap();
    let xorriso = tools.join("xorriso");
    fs::write(&xorriso, "#!/nonexistent/interpreter\n").unwrap();
    fs::set_permissions(
        &xorriso,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let image = reg.path("drive.iso");
    let output = reg
        .cmd(&["instance", "config-drive", "web", "-o"])
        .arg(&image)
        .env("PATH", &tools)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("Cannot run {}", xorriso.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("Cannot write"), "{stderr}");
    assert!(!image.exists());
}
