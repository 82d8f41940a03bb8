//! cloud-init's `ntp` (once per instance): the time servers of user data written into the
//! configuration of the image's time client, as cloud-init 22.4 chooses and writes it.
//!
//! - The client: `ntp_client` (`chrony`, `systemd-timesyncd`, `ntp`, `ntpdate`), or with
//!   `auto` (the default) the first of [`PREFERRED`] the image has (its `check_exe`), else
//!   `chrony`, installed with apt-get. `config: {confpath, check_exe, packages, service_name}`
//!   overrides the chosen client's settings.
//! - The file: `servers` (`server NAME iburst`) and `pools` (`pool NAME iburst`), or without
//!   either the distribution's pool as cloud-init names it (`0.debian.pool.ntp.org` … `3.`;
//!   [`distro`]: Kali's is Debian's, SLES's openSUSE's, Alpine's the plain `0.pool.ntp.org`);
//!   the client's file is replaced (the image's kept beside it as `<file>.dist`, as
//!   cloud-init renames it), or for systemd-timesyncd a drop-in `NTP=` line. metaboot writes
//!   its own files for the four clients; `config: {template}` (a jinja text) is not rendered
//!   (an error, with what to use).
//! - Then, on the running system, the client is (re)started: `systemctl reload-or-restart`.

use std::path::Path;

use serde_json::Value;

use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;
use crate::userdata::cloud_config::{CloudConfig, is_false};

/// A client's settings (cloud-init's `NTP_CLIENT_CONFIG`, Debian's paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    /// The program whose presence says the client is installed (a name searched in
    /// [`SEARCH_PATH`], or a path).
    pub check_exe: String,
    /// The configuration file written.
    pub confpath: String,
    /// The packages installed when `check_exe` is missing.
    pub packages: Vec<String>,
    /// The systemd unit (re)started.
    pub service_name: String,
}

/// The clients metaboot writes a configuration for, in cloud-init's order of preference
/// (`PREFERRED_NTP_CLIENTS`): name, check_exe, confpath, packages, service.
pub const PREFERRED: [(&str, &str, &str, &str, &str); 4] = [
    (
        "chrony",
        "chronyd",
        "/etc/chrony/chrony.conf",
        "chrony",
        "chrony",
    ),
    (
        "systemd-timesyncd",
        "/lib/systemd/systemd-timesyncd",
        "/etc/systemd/timesyncd.conf.d/cloud-init.conf",
        "",
        "systemd-timesyncd",
    ),
    ("ntp", "ntpd", "/etc/ntp.conf", "ntp", "ntp"),
    ("ntpdate", "ntpdate", "/etc/ntp.conf", "ntpdate", "ntpdate"),
];

/// Where a `check_exe` name is looked for, as systemd's `PATH` for a service.
pub const SEARCH_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// How many servers of the distribution's pool are named when user data names none
/// (cloud-init's `NR_POOL_SERVERS`).
pub const POOL_SERVERS: usize = 4;

/// The most `servers` and `pools` together a configuration takes.
pub const MAX_SERVERS: usize = 64;

/// The longest server or pool name (a DNS name is at most 253 characters).
pub const MAX_NAME: usize = 253;

/// What `ntp` asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `ntp_client`; `None` for `auto`.
    pub client: Option<String>,
    pub servers: Vec<String>,
    pub pools: Vec<String>,
    /// `config`'s overrides of the client's settings.
    pub confpath: Option<String>,
    pub check_exe: Option<String>,
    pub packages: Option<Vec<String>>,
    pub service_name: Option<String>,
}

/// `ntp` of `config`: `None` when absent or `enabled: false`; an error says which value is
/// wrong.
pub fn request(config: &CloudConfig) -> Result<Option<Request>, String> {
    let Some(ntp) = &config.ntp else {
        return Ok(None);
    };
    if ntp.get("enabled").is_some_and(is_false) {
        return Ok(None);
    }
    let mut request = Request::default();
    if let Some(client) = ntp.get("ntp_client") {
        let client = text("ntp_client", client)?;
        if client != "auto" {
            request.client = Some(client);
        }
    }
    request.servers = names("servers", ntp.get("servers"))?;
    request.pools = names("pools", ntp.get("pools"))?;
    if request.servers.len() + request.pools.len() > MAX_SERVERS {
        return Err(format!(
            "ntp: {} servers and pools, more than {MAX_SERVERS}",
            request.servers.len() + request.pools.len()
        ));
    }
    match ntp.get("config") {
        None | Some(Value::Null) => {}
        Some(Value::Object(overrides)) => {
            for (key, value) in overrides {
                let key_path = format!("config.{key}");
                match key.as_str() {
                    "confpath" => request.confpath = Some(path(&key_path, value)?),
                    "check_exe" => request.check_exe = Some(text(&key_path, value)?),
                    "service_name" => request.service_name = Some(unit(&key_path, value)?),
                    "packages" => request.packages = Some(names(&key_path, Some(value))?),
                    "template" | "template_name" if !value.is_null() => {
                        return Err(format!(
                            "ntp: `{key_path}` is not applied: metaboot writes its own \
                             configuration for chrony, systemd-timesyncd, ntp and ntpdate; give \
                             another file's text with write_files"
                        ));
                    }
                    "template" | "template_name" => {}
                    other => return Err(format!("ntp: unknown key `config.{other}`")),
                }
            }
        }
        Some(_) => return Err("ntp: `config` is not a map".to_owned()),
    }
    Ok(Some(request))
}

fn text(key: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        _ => Err(format!("ntp: `{key}` is not a non-empty string")),
    }
}

fn path(key: &str, value: &Value) -> Result<String, String> {
    let path = text(key, value)?;
    if !path.starts_with('/') || path.split('/').any(|part| part == "..") {
        return Err(format!("ntp: `{key}` {path:?} is not an absolute path"));
    }
    Ok(path)
}

/// A systemd unit name for `systemctl`: one word, never read as an option.
fn unit(key: &str, value: &Value) -> Result<String, String> {
    let name = text(key, value)?;
    if name.starts_with('-') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("ntp: `{key}` {name:?} is not a service name"));
    }
    Ok(name)
}

/// A list of names (a lone string is a list of one); a name with white space or a control
/// character would end the line it is written on, and one starting with `-` would be read as
/// an option (a package for apt-get), so both are refused.
fn names(key: &str, value: Option<&Value>) -> Result<Vec<String>, String> {
    let items: Vec<&Value> = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
    };
    items
        .into_iter()
        .map(|item| {
            let name = match item {
                Value::String(name) => name.trim(),
                _ => return Err(format!("ntp: `{key}` holds {item}, not a name")),
            };
            if name.is_empty()
                || name.len() > MAX_NAME
                || name.starts_with('-')
                || name.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(format!(
                    "ntp: `{key}` holds {name:?}, not a host name or address"
                ));
            }
            Ok(name.to_owned())
        })
        .collect()
}

/// The client `request` asks for, with `config`'s overrides, and whether the image has it.
pub fn choose(root: &Root, request: &Request) -> Result<(Client, bool), String> {
    let preferred = || {
        PREFERRED.iter().map(
            |&(name, check_exe, confpath, package, service_name)| Client {
                name: name.to_owned(),
                check_exe: check_exe.to_owned(),
                confpath: confpath.to_owned(),
                packages: package.split_whitespace().map(str::to_owned).collect(),
                service_name: service_name.to_owned(),
            },
        )
    };
    let mut client = match &request.client {
        Some(name) => preferred()
            .find(|client| client.name == *name)
            .ok_or_else(|| {
                format!(
                    "ntp: unknown ntp_client {name:?} (metaboot writes chrony, systemd-timesyncd, \
                 ntp or ntpdate configuration)"
                )
            })?,
        // cloud-init's `auto`: the first the image has, else the first of all, to install.
        None => preferred()
            .find(|client| has_program(root, &client.check_exe))
            .unwrap_or_else(|| preferred().next().expect("PREFERRED is not empty")),
    };
    if let Some(confpath) = &request.confpath {
        client.confpath.clone_from(confpath);
    }
    if let Some(check_exe) = &request.check_exe {
        client.check_exe.clone_from(check_exe);
    }
    if let Some(packages) = &request.packages {
        client.packages.clone_from(packages);
    }
    if let Some(service_name) = &request.service_name {
        client.service_name.clone_from(service_name);
    }
    let installed = has_program(root, &client.check_exe);
    Ok((client, installed))
}

/// True when `program` (a path, or a name in [`SEARCH_PATH`]) is an executable file under
/// `root`.
pub fn has_program(root: &Root, program: &str) -> bool {
    let executable = |path: &Path| {
        root.stat(path).is_ok_and(|stat| {
            stat.is_some_and(|s| {
                crate::fsutil::kind(&s) == nix::sys::stat::SFlag::S_IFREG && s.st_mode & 0o111 != 0
            })
        })
    };
    if program.contains('/') {
        return executable(Path::new(program));
    }
    SEARCH_PATH
        .iter()
        .any(|dir| executable(&Path::new(dir).join(program)))
}

/// The servers to write: user data's, or without any the pool of the distribution `distro`
/// ([`distro`]), or with none the plain `N.pool.ntp.org`.
pub fn servers_and_pools(request: &Request, distro: Option<&str>) -> (Vec<String>, Vec<String>) {
    if !request.servers.is_empty() || !request.pools.is_empty() {
        return (request.servers.clone(), request.pools.clone());
    }
    let pool = |n: usize| match distro {
        Some(distro) => format!("{n}.{distro}.pool.ntp.org"),
        None => format!("{n}.pool.ntp.org"),
    };
    (Vec::new(), (0..POOL_SERVERS).map(pool).collect())
}

/// The configuration file of `client` naming `servers` and `pools`.
pub fn render(client: &Client, servers: &[String], pools: &[String]) -> String {
    let mut text = String::from("# Written by metaboot from the instance's `ntp` user data.\n");
    if client.name == "systemd-timesyncd" {
        text.push_str("# See timesyncd.conf(5).\n[Time]\nNTP=");
        let all: Vec<&str> = servers.iter().chain(pools).map(String::as_str).collect();
        text.push_str(&all.join(" "));
        text.push('\n');
        return text;
    }
    let lines = |text: &mut String| {
        for pool in pools {
            text.push_str(&format!("pool {pool} iburst\n"));
        }
        for server in servers {
            text.push_str(&format!("server {server} iburst\n"));
        }
    };
    if client.name == "chrony" {
        text.push_str(
            "# See chrony.conf(5). A file that was here before is kept as <this file>.dist.\n",
        );
        lines(&mut text);
        text.push_str(
            "keyfile /etc/chrony/chrony.keys\n\
             driftfile /var/lib/chrony/chrony.drift\n\
             logdir /var/log/chrony\n\
             maxupdateskew 100.0\n\
             rtcsync\n\
             makestep 1 3\n",
        );
    } else {
        text.push_str(
            "# See ntp.conf(5). A file that was here before is kept as <this file>.dist.\n",
        );
        text.push_str("driftfile /var/lib/ntp/ntp.drift\n");
        lines(&mut text);
        text.push_str(
            "restrict -4 default kod notrap nomodify nopeer noquery limited\n\
             restrict -6 default kod notrap nomodify nopeer noquery limited\n\
             restrict 127.0.0.1\n\
             restrict ::1\n\
             restrict source notrap nomodify noquery\n",
        );
    }
    text
}

/// Writes `text` as `client`'s configuration: the file there before is kept as
/// `<confpath>.dist` (its content and mode), then replaced atomically; through root's symlink
/// as cloud-init writes it, a user's refused ([`Root::write_target`]). Returns what was
/// kept, if anything.
pub fn write(root: &Root, client: &Client, text: &str) -> Result<Option<String>, PathError> {
    let path = Path::new(&client.confpath);
    let shown = root.host_path(path);
    let (dir, name) = root.write_target(path)?;
    let kept = match dir
        .open_file(&name)
        .map_err(PathError::fail("read", &shown))?
    {
        Some((mut file, stat)) => {
            let old = crate::fsutil::dir::read_whole(&mut file, &stat)
                .map_err(PathError::fail("read", &shown))?;
            let dist = format!("{}.dist", client.confpath);
            let mode = stat.st_mode & 0o7777;
            root.write_atomic(&dist, &old, &WriteOptions::exact(mode, None))?;
            Some(dist)
        }
        None => None,
    };
    dir.write_atomic_as(
        &name,
        &shown,
        text.as_bytes(),
        &WriteOptions::exact(0o644, None),
    )?;
    Ok(kept)
}

/// The distributions of cloud-init's `cc_ntp` that have no pool zone: cloud-init gives them the
/// plain `N.pool.ntp.org`.
pub const PLAIN_POOL_DISTROS: [&str; 2] = ["alpine", "eurolinux"];

/// The distributions cloud-init's `cc_ntp` names a pool zone after (its `distros` list, less
/// [`PLAIN_POOL_DISTROS`] and SUSE's, which get openSUSE's), lower case.
pub const POOL_DISTROS: [&str; 26] = [
    "almalinux",
    "aosc",
    "azurelinux",
    "centos",
    "cloudlinux",
    "cos",
    "debian",
    "fedora",
    "freebsd",
    "mariner",
    "miraclelinux",
    "openbsd",
    "opencloudos",
    "openeuler",
    "openmandriva",
    "opensuse",
    "opensuse-leap",
    "opensuse-microos",
    "opensuse-tumbleweed",
    "photon",
    "raspberry-pi-os",
    "rhel",
    "rocky",
    "tencentos",
    "ubuntu",
    "virtuozzo",
];

/// The pool zone of an os-release `ID` or `ID_LIKE` word: cloud-init's for its distribution
/// (`sles` and the other `sle*` → `opensuse`, as `generate_server_names` maps them), `None`
/// for a name it has no zone for.
pub fn pool_zone(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    if name.starts_with("sle") {
        return Some("opensuse");
    }
    POOL_DISTROS.iter().copied().find(|zone| *zone == name)
}

/// The distribution whose pool the image's default servers are in, as cloud-init names it:
/// os-release's `ID` when it has a zone, else the first word of `ID_LIKE` that has one (Kali,
/// `ID_LIKE=debian` → `debian`); `None` (the plain `N.pool.ntp.org`) for one of
/// [`PLAIN_POOL_DISTROS`] met first, and for any other.
pub fn distro(root: &Root) -> Option<String> {
    let text = root
        .read_optional_string(crate::apply::apt::OS_RELEASE)
        .ok()??;
    let value = |key| crate::apply::locale::shell_value(&text, key).unwrap_or_default();
    let id = value("ID");
    let like = value("ID_LIKE");
    for name in std::iter::once(id.as_str()).chain(like.split_whitespace()) {
        if PLAIN_POOL_DISTROS.contains(&name.to_ascii_lowercase().as_str()) {
            return None;
        }
        if let Some(zone) = pool_zone(name) {
            return Some(zone.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests;
