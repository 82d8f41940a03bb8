//! The lab's registry, filled through the `metaboot-server` CLI (as a user would), parsed from
//! its `--json` output.

use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::process::{check, output_with_timeout};

/// The `metaboot-server` binary and the lab's database.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The server binary.
    pub bin: PathBuf,
    /// The registry database (a SQLite file).
    pub db: PathBuf,
}

/// A network as the registry created it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkRecord {
    /// Registry id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Subnet (IPv4, or IPv6 on an IPv6-only network).
    pub cidr: IpNet,
    /// The router's address.
    pub gateway: IpAddr,
    /// The DHCP port's address: the lab's own address on the network (its `qdhcp-` namespace,
    /// where checks run from). A network without DHCP has no DHCP port: the lab takes the last
    /// host address of an IPv4 subnet, which the registry hands out last (a guest given it is
    /// refused: [`NetworkRecord::check_guest_address`]), or [`lab_address_v6`] of an IPv6 one.
    pub dhcp_ip: IpAddr,
    /// No router.
    pub isolated: bool,
    /// DHCP served (dnsmasq); `false` for a `--no-dhcp` network.
    #[serde(default = "dhcp_on")]
    pub dhcp: bool,
}

fn dhcp_on() -> bool {
    true
}

impl NetworkRecord {
    /// Fails when `ip`, the address the registry gave a guest's port, is the lab's own
    /// ([`NetworkRecord::dhcp_ip`]): on a network without DHCP the registry knows nothing of
    /// it and hands it out last (on a /29 to the fifth guest), and guest and lab would then
    /// share it.
    pub fn check_guest_address(&self, ip: IpAddr) -> anyhow::Result<()> {
        if ip == self.dhcp_ip {
            bail!(
                "network {} ({}) has no address left for another guest: the registry gave {ip}, \
                 which is the lab's own on it (where checks run from); delete a guest on it, or \
                 give the network a larger subnet in the lab file",
                self.name,
                self.cidr
            );
        }
        Ok(())
    }
}

/// A router as the registry created it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouterRecord {
    /// Registry id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Ids of the networks behind it.
    pub network_ids: Vec<String>,
}

/// What `instance create --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceRecord {
    /// Instance uuid.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// The port's address (its IPv6 one on an IPv6-only network).
    pub ip: IpAddr,
    /// The port's MAC.
    pub mac: String,
    /// The port id.
    pub port_id: String,
    /// The network id.
    pub network_id: String,
}

/// An instance to register.
#[derive(Debug, Clone, Default)]
pub struct InstanceSpec {
    /// Name.
    pub name: String,
    /// Network name or id.
    pub network: String,
    /// Host name.
    pub hostname: Option<String>,
    /// Public key files.
    pub key_files: Vec<PathBuf>,
    /// User data file.
    pub user_data: Option<PathBuf>,
    /// A fixed uuid.
    pub uuid: Option<String>,
    /// A fixed address.
    pub ip: Option<IpAddr>,
    /// A fixed MAC.
    pub mac: Option<String>,
    /// A file with the admin password (config drives carry it as `admin_pass`).
    pub admin_pass_file: Option<PathBuf>,
}

impl Registry {
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--db").arg(&self.db);
        cmd
    }

    fn json(&self, args: &[String], what: &str) -> anyhow::Result<serde_json::Value> {
        let out = check(self.cmd().args(args)).with_context(|| format!("failed to {what}"))?;
        serde_json::from_str(out.trim())
            .with_context(|| format!("failed to {what}: metaboot-server printed no JSON: {out}"))
    }

    /// Creates a network (gateway and DHCP address: the server's defaults; `dhcp: false` is
    /// `--no-dhcp`; an IPv6 network with DHCP is `--ipv6-address-mode slaac`, as the lab
    /// serves it with router advertisements).
    pub fn create_network(
        &self,
        name: &str,
        cidr: IpNet,
        isolated: bool,
        dhcp: bool,
    ) -> anyhow::Result<NetworkRecord> {
        let mut args = vec![
            "network".into(),
            "create".into(),
            name.into(),
            "--cidr".into(),
            cidr.to_string(),
        ];
        if isolated {
            args.push("--isolated".into());
        }
        if !dhcp {
            args.push("--no-dhcp".into());
        } else if cidr.addr().is_ipv6() {
            args.push("--ipv6-address-mode".into());
            args.push("slaac".into());
        }
        args.push("--json".into());
        let v = self.json(&args, &format!("create network {name}"))?;
        let hosts = || cidr.hosts();
        let gateway = ip_field(&v, &["gateway", "gateway_ip"])
            .or_else(|| hosts().next())
            .context("network has no gateway")?;
        let dhcp_ip = match cidr {
            _ if dhcp => ip_field(&v, &["dhcp_ip", "dhcp_address"]).or_else(|| hosts().nth(1)),
            IpNet::V4(_) => hosts().last(),
            IpNet::V6(v6) => Some(IpAddr::V6(lab_address_v6(v6.network()))),
        }
        .context("network has no address for the lab")?;
        Ok(NetworkRecord {
            id: str_field(&v, "id")
                .with_context(|| format!("network create printed no id: {v}"))?,
            name: name.to_owned(),
            cidr,
            gateway,
            dhcp_ip,
            isolated,
            dhcp,
        })
    }

    /// Creates a router with interfaces on `networks` (ids).
    pub fn create_router(&self, name: &str, networks: &[String]) -> anyhow::Result<RouterRecord> {
        let mut args = vec!["router".into(), "create".into(), name.into()];
        for net in networks {
            args.push("--network".into());
            args.push(net.clone());
        }
        args.push("--json".into());
        let v = self.json(&args, &format!("create router {name}"))?;
        Ok(RouterRecord {
            id: str_field(&v, "id").with_context(|| format!("router create printed no id: {v}"))?,
            name: name.to_owned(),
            network_ids: networks.to_vec(),
        })
    }

    /// Registers an instance with one port.
    pub fn create_instance(&self, spec: &InstanceSpec) -> anyhow::Result<InstanceRecord> {
        let mut cmd = self.cmd();
        cmd.args(["instance", "create", &spec.name, "--network", &spec.network]);
        if let Some(h) = &spec.hostname {
            cmd.args(["--hostname", h]);
        }
        for key in &spec.key_files {
            cmd.arg("--key-file").arg(key);
        }
        if let Some(user_data) = &spec.user_data {
            cmd.arg("--user-data").arg(user_data);
        }
        if let Some(uuid) = &spec.uuid {
            cmd.args(["--uuid", uuid]);
        }
        if let Some(ip) = spec.ip {
            cmd.args(["--ip", &ip.to_string()]);
        }
        if let Some(mac) = &spec.mac {
            cmd.args(["--mac", mac]);
        }
        if let Some(file) = &spec.admin_pass_file {
            cmd.arg("--admin-pass-file").arg(file);
        }
        cmd.arg("--json");
        let out =
            check(&mut cmd).with_context(|| format!("failed to create instance {}", spec.name))?;
        serde_json::from_str(out.trim())
            .with_context(|| format!("failed to read `instance create --json` output: {out}"))
    }

    /// Writes the instance's config drive (`instance config-drive`, ISO 9660) to `out`.
    pub fn config_drive(&self, uuid: &str, out: &Path) -> anyhow::Result<()> {
        check(
            self.cmd()
                .args(["instance", "config-drive", uuid, "-o"])
                .arg(out),
        )
        .with_context(|| format!("failed to write the config drive of instance {uuid}"))?;
        Ok(())
    }

    /// The password the instance's guest agent posted, decrypted with `private_key`
    /// (`instance get-password`).
    pub fn get_password(&self, uuid: &str, private_key: &Path) -> anyhow::Result<String> {
        let out = check(
            self.cmd()
                .args(["instance", "get-password", uuid, "--private-key"])
                .arg(private_key),
        )
        .with_context(|| format!("failed to get the password of instance {uuid}"))?;
        Ok(out.trim_end_matches('\n').to_owned())
    }

    /// Deletes an instance (and its port).
    pub fn delete_instance(&self, uuid: &str) -> anyhow::Result<()> {
        check(self.cmd().args(["instance", "delete", uuid]))
            .with_context(|| format!("failed to delete instance {uuid}"))?;
        Ok(())
    }

    /// Fails, saying what is wrong and what to do, unless `bin` is a `metaboot-server` with
    /// the `all` command (the single-host daemon the lab runs): not found, not a file, not
    /// executable, or `all --help` failing (its exit status and the end of its stderr).
    pub fn check_binary(bin: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let shown = bin.display();
        // A bare name is looked up on PATH when run, as the command below does.
        if bin.components().count() > 1 {
            match std::fs::metadata(bin) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    bail!("metaboot-server not found at {shown}: {GIVE_SERVER}");
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("failed to look at {shown}"));
                }
                Ok(meta) if !meta.is_file() => {
                    bail!("{shown} is not a file, so no metaboot-server: {GIVE_SERVER}");
                }
                Ok(meta) if meta.permissions().mode() & 0o111 == 0 => bail!(
                    "{shown} is not executable (mode {:o}): run `chmod +x {shown}`, or \
                     {GIVE_SERVER}",
                    meta.permissions().mode() & 0o7777
                ),
                Ok(_) => {}
            }
        }
        let out = output_with_timeout(
            Command::new(bin).args(["all", "--help"]),
            BINARY_CHECK_TIMEOUT,
        )
        .with_context(|| format!("failed to run {shown} all --help: {GIVE_SERVER}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = stderr.trim_end().lines().collect();
            bail!(
                "{shown} all --help failed ({}), so it is no metaboot-server with the `all` \
                 command (the single-host daemon the lab runs): {GIVE_SERVER}; its stderr \
                 ends:\n{}",
                out.status,
                lines[lines.len().saturating_sub(BINARY_ERROR_LINES)..].join("\n")
            );
        }
        Ok(())
    }
}

/// What to do about a wrong server binary.
const GIVE_SERVER: &str = "give a built metaboot-server with --server-bin or \
     METABOOT_SERVER_BIN, or neither to have the harness build it";

/// How long `metaboot-server all --help` may take when the binary is checked (it prints and
/// exits at once; a loaded machine may be slow to start it).
pub const BINARY_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of a failing server binary's stderr its error shows.
pub const BINARY_ERROR_LINES: usize = 10;

/// The lab's address on an IPv6 subnet without DHCP: the prefix with interface id
/// `ffff:ffff:ffff:fffe`, far from the low addresses the registry hands out first (and outside
/// the subnet anycast ids RFC 2526 reserves).
pub fn lab_address_v6(prefix: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(prefix) | u128::from(u64::MAX - 1))
}

fn str_field(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_owned)
}

fn ip_field(v: &serde_json::Value, keys: &[&str]) -> Option<IpAddr> {
    keys.iter()
        .find_map(|k| v.get(*k)?.as_str()?.split('/').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The error of [`Registry::check_binary`] for a script the test just wrote: another test
    /// thread's child may hold it open for writing a moment (ETXTBSY), so asked again then.
    fn check_script(bin: &Path) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let result = Registry::check_binary(bin);
            match &result {
                Err(err)
                    if format!("{err:#}").contains("Text file busy")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => return result,
            }
        }
    }

    fn script(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// A wrong server binary gets its real error, with what to do: not found, not a file, not
    /// executable, or failing (exit status and stderr); a server with `all` passes.
    #[test]
    fn a_wrong_server_binary_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let err = |bin: &Path| format!("{:#}", check_script(bin).unwrap_err());

        let missing = err(&dir.join("missing"));
        assert!(missing.contains("not found at"), "{missing}");
        assert!(missing.contains("--server-bin"), "{missing}");
        let on_path = err(Path::new("metaboot-server-not-installed-anywhere"));
        assert!(on_path.contains("No such file"), "{on_path}");
        assert!(err(dir).contains("is not a file"));
        let plain = script(dir, "plain", "exit 0", 0o644);
        assert!(err(&plain).contains("chmod +x"), "{}", err(&plain));
        let noise: String = (0..BINARY_ERROR_LINES * 2)
            .map(|i| format!("echo early {i} >&2; "))
            .collect();
        let crashing = script(
            dir,
            "crashing",
            &format!("{noise} echo 'error: unrecognized subcommand all' >&2; exit 3"),
            0o755,
        );
        let crashed = err(&crashing);
        assert!(crashed.contains("exit status: 3"), "{crashed}");
        assert!(crashed.contains("unrecognized subcommand all"), "{crashed}");
        assert!(
            !crashed.contains("early 0\n"),
            "only the end of stderr: {crashed}"
        );
        assert_eq!(
            crashed.matches("early").count(),
            BINARY_ERROR_LINES - 1,
            "{crashed}"
        );

        let server = script(
            dir,
            "metaboot-server-1.3",
            "test \"$1 $2\" = 'all --help'",
            0o755,
        );
        check_script(&server).unwrap();
        assert!(BINARY_CHECK_TIMEOUT >= Duration::from_secs(5));
        assert!(BINARY_CHECK_TIMEOUT <= crate::process::COMMAND_TIMEOUT);
    }

    #[test]
    fn reads_instance_json_and_address_fields() {
        let rec: InstanceRecord = serde_json::from_str(
            r#"{"uuid":"u","name":"n","ip":"198.18.10.5","mac":"fa:16:3e:01:02:03","port_id":"p","network_id":"w","extra":1}"#,
        )
        .unwrap();
        assert_eq!(rec.ip, IpAddr::from([198, 18, 10, 5]));
        let v = serde_json::json!({"gateway_ip": "198.18.10.1", "dhcp_ip": "198.18.10.2/24"});
        assert_eq!(
            ip_field(&v, &["gateway", "gateway_ip"]),
            Some(IpAddr::from([198, 18, 10, 1]))
        );
        assert_eq!(
            ip_field(&v, &["dhcp_ip"]),
            Some(IpAddr::from([198, 18, 10, 2]))
        );
        assert_eq!(ip_field(&v, &["nope"]), None);
        let v = serde_json::json!({"gateway": "fdc6:1200:0:40::1", "dhcp_ip": null});
        assert_eq!(
            ip_field(&v, &["gateway"]),
            Some("fdc6:1200:0:40::1".parse().unwrap())
        );
        assert_eq!(ip_field(&v, &["dhcp_ip"]), None);
        let rec: InstanceRecord = serde_json::from_str(
            r#"{"uuid":"u","name":"n","ip":"fdc6:1200:0:40::2","ips":["fdc6:1200:0:40::2"],"mac":"fa:16:3e:01:02:03","port_id":"p","network_id":"w"}"#,
        )
        .unwrap();
        assert_eq!(rec.ip, "fdc6:1200:0:40::2".parse::<IpAddr>().unwrap());
    }

    /// On a /29 without DHCP the registry gives guests .2 to .6 (.1 is the gateway): the
    /// fifth would be the lab's .6.
    #[test]
    fn a_guest_never_gets_the_labs_address() {
        let cidr: IpNet = "198.18.20.0/29".parse().unwrap();
        let net = NetworkRecord {
            id: "n".into(),
            name: "static".into(),
            cidr,
            gateway: cidr.hosts().next().unwrap(),
            dhcp_ip: cidr.hosts().last().unwrap(),
            isolated: false,
            dhcp: false,
        };
        let guests: Vec<IpAddr> = cidr.hosts().skip(1).collect();
        assert_eq!(guests.len(), 5);
        for ip in &guests[..4] {
            net.check_guest_address(*ip).unwrap();
        }
        let err = net.check_guest_address(guests[4]).unwrap_err().to_string();
        assert!(
            err.contains("198.18.20.6") && err.contains("lab's own"),
            "{err}"
        );
    }

    #[test]
    fn the_labs_ipv6_address_is_high_in_its_subnet() {
        assert_eq!(
            lab_address_v6("fdc6:1200:0:40::".parse().unwrap()),
            "fdc6:1200:0:40:ffff:ffff:ffff:fffe"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
    }
}
