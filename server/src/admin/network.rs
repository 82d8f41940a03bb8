//! `network create|list|show|delete`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use ipnet::IpNet;

use super::output::{self, Output};
use crate::leases::{self, DEFAULT_LEASES_DIR};
use crate::store::{
    HostBridge, Ipv6AddressMode, Network, NewNetwork, Store, StoreError, Subnet, validate,
};

/// `metaboot-server network …`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network with one subnet, IPv4 or IPv6, or two (dual stack).
    Create(Box<NetworkCreate>),
    /// List networks.
    List(Output),
    /// Show one network (by id or unique name).
    Show {
        network: String,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a network without ports or routers (`router remove-network` first, as neutron
    /// wants its router interfaces removed).
    Delete { network: String },
}

/// `network create`'s arguments.
#[derive(Debug, Args)]
pub struct NetworkCreate {
    pub name: String,
    /// The subnet, e.g. 198.18.0.0/24 or fdc6:1200:0:1::/64; twice for a dual-stack network
    /// (one IPv4, one IPv6).
    #[arg(long, required = true)]
    pub cidr: Vec<String>,
    /// The router's address on a subnet (default: its first host address); one per
    /// subnet at most, matched to the subnet of its family.
    #[arg(long)]
    pub gateway: Vec<String>,
    /// The DHCP port's address on a subnet (default: its second host address).
    #[arg(long = "dhcp-ip")]
    pub dhcp_ip: Vec<String>,
    /// How guests configure their IPv6 address (Neutron's ipv6_address_mode): slaac,
    /// dhcpv6-stateful or dhcpv6-stateless. Default: DHCPv6 when DHCP is on, static
    /// otherwise.
    #[arg(long = "ipv6-address-mode")]
    pub ipv6_address_mode: Option<String>,
    #[arg(long, default_value = "admin")]
    pub project: String,
    /// No router: metadata is served from the DHCP namespace.
    #[arg(long)]
    pub isolated: bool,
    #[arg(long)]
    pub mtu: Option<u32>,
    /// No DHCP: ports get static addresses, carried to guests in network_data.json
    /// (`ipv4` with address, netmask and routes) and applied by their guest agent.
    #[arg(long = "no-dhcp", conflicts_with_all = ["dhcp_ip", "isolated"])]
    pub no_dhcp: bool,
    /// Serve the network on this libvirt network's bridge (`virsh net-list`): no router
    /// or DHCP namespace; instances are known by MAC, their address learned from
    /// libvirt's DHCP leases.
    #[arg(
        long = "libvirt-network",
        value_name = "NAME",
        conflicts_with_all = ["bridge", "isolated", "dhcp_ip"]
    )]
    pub libvirt_network: Option<String>,
    /// Serve the network on this bridge of the host's namespace (as --libvirt-network,
    /// for a bridge libvirt does not manage).
    #[arg(long, value_name = "BR", conflicts_with_all = ["isolated", "dhcp_ip"])]
    pub bridge: Option<String>,
    /// Where this host's libvirt keeps its dnsmasq files, as `all --leases-dir` (the
    /// configuration file's `proxy.leases_dir`): with --libvirt-network, the DHCP range
    /// of `<NAME>.conf` there is checked against --cidr.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_LEASES_DIR)]
    pub leases_dir: PathBuf,
    #[command(flatten)]
    pub output: Output,
}

/// Runs one `network` command against `store`.
pub fn run(store: &dyn Store, cmd: NetworkCommand) -> anyhow::Result<()> {
    match cmd {
        NetworkCommand::Create(args) => {
            let NetworkCreate {
                name,
                cidr,
                gateway,
                dhcp_ip,
                ipv6_address_mode,
                project,
                isolated,
                mtu,
                no_dhcp,
                libvirt_network,
                bridge,
                leases_dir,
                output,
            } = *args;
            let subnets = subnets(&cidr, &gateway, &dhcp_ip)?;
            let [first, ..] = subnets.as_slice() else {
                return Err(StoreError::Invalid("give the subnet with --cidr".to_owned()).into());
            };
            let new = NewNetwork {
                name,
                project,
                cidr: first.cidr,
                gateway: first.gateway,
                dhcp_ip: first.dhcp_ip,
                second_subnet: subnets.get(1).copied(),
                ipv6_address_mode: ipv6_address_mode
                    .as_deref()
                    .map(Ipv6AddressMode::parse)
                    .transpose()?,
                isolated,
                mtu,
                no_dhcp,
                host: libvirt_network
                    .map(HostBridge::LibvirtNetwork)
                    .or(bridge.map(HostBridge::Bridge)),
            };
            let network = store.create_network(&new)?;
            if let Some(warning) = libvirt_range_warning(&network, &leases_dir) {
                eprintln!("warning: {warning}");
            }
            show(&network, output)
        }
        NetworkCommand::List(output) => {
            let networks = store.networks()?;
            if output.json {
                return output::json(&networks);
            }
            let rows: Vec<Vec<String>> = networks
                .iter()
                .map(|n| {
                    vec![
                        n.id.clone(),
                        n.name.clone(),
                        n.project.clone(),
                        n.cidrs(),
                        joined(n.subnets().filter_map(|s| s.gateway)),
                        joined(n.subnets().filter_map(|s| s.dhcp_ip)),
                        mode(n).to_owned(),
                    ]
                })
                .collect();
            output::table(
                &["ID", "NAME", "PROJECT", "CIDR", "GATEWAY", "DHCP", "MODE"],
                &rows,
            )
        }
        NetworkCommand::Show { network, output } => show(&store.network(&network)?, output),
        NetworkCommand::Delete { network } => {
            let network = store.network(&network)?;
            store.delete_network(&network.id)?;
            output::line(&format!(
                "deleted network {} ({})",
                network.name, network.id
            ))
        }
    }
}

/// For a network on a libvirt network whose DHCP server (its dnsmasq configuration under
/// `leases_dir`, when this host has it) hands out no address of the network's IPv4 subnet: what
/// is wrong and what to do. Guests lease addresses from libvirt's ranges, so an instance is
/// found by its lease only when the registered subnet holds them; a mistyped or copied
/// `--cidr` would otherwise have every guest answered 404.
fn libvirt_range_warning(network: &Network, leases_dir: &Path) -> Option<String> {
    let name = network.host.as_ref()?.libvirt_network()?;
    let v4 = network
        .subnets()
        .find(|subnet| subnet.cidr.addr().is_ipv4())?;
    let ranges: Vec<(IpAddr, IpAddr)> = leases::libvirt_dhcp_ranges(leases_dir, name)
        .into_iter()
        .filter(|(first, _)| first.is_ipv4())
        .collect();
    if ranges.is_empty()
        || ranges
            .iter()
            .any(|(first, last)| v4.cidr.contains(first) && v4.cidr.contains(last))
    {
        return None;
    }
    let shown: Vec<String> = ranges
        .iter()
        .map(|(first, last)| format!("{first}-{last}"))
        .collect();
    Some(format!(
        "libvirt network {name} hands out {} ({}/{name}.conf), outside this network's {}: its \
         guests' leases will not match this network's instances; delete the network and create \
         it again with the libvirt network's subnet as --cidr (`virsh net-dumpxml {name}`, its \
         <ip>)",
        shown.join(", "),
        leases_dir.display(),
        v4.cidr
    ))
}

/// The subnets of `--cidr` (at most two), each with the `--gateway` and `--dhcp-ip` of its
/// family.
fn subnets(
    cidrs: &[String],
    gateways: &[String],
    dhcp_ips: &[String],
) -> anyhow::Result<Vec<Subnet>> {
    if cidrs.len() > 2 {
        return Err(StoreError::Invalid(format!(
            "{} --cidr given: a network has at most two subnets (one IPv4, one IPv6)",
            cidrs.len()
        ))
        .into());
    }
    let mut subnets = cidrs
        .iter()
        .map(|cidr| {
            Ok(Subnet {
                cidr: validate::parse_cidr(cidr)?,
                gateway: None,
                dhcp_ip: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (flag, given) in [("--gateway", gateways), ("--dhcp-ip", dhcp_ips)] {
        for text in given {
            let ip = validate::parse_ip(flag, text)?;
            let subnet = subnet_of(&mut subnets, flag, ip)?;
            let slot = if flag == "--gateway" {
                &mut subnet.gateway
            } else {
                &mut subnet.dhcp_ip
            };
            if let Some(other) = slot.replace(ip) {
                return Err(StoreError::Invalid(format!(
                    "{flag} {other} and {flag} {ip} are both for {}: give one per subnet",
                    subnet.cidr
                ))
                .into());
            }
        }
    }
    Ok(subnets)
}

/// The subnet of `ip`'s family.
fn subnet_of<'s>(
    subnets: &'s mut [Subnet],
    flag: &str,
    ip: IpAddr,
) -> anyhow::Result<&'s mut Subnet> {
    let cidrs: Vec<IpNet> = subnets.iter().map(|s| s.cidr).collect();
    subnets
        .iter_mut()
        .find(|subnet| subnet.cidr.addr().is_ipv4() == ip.is_ipv4())
        .ok_or_else(|| {
            let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            let cidrs: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
            StoreError::Invalid(format!(
                "{flag} {ip} is {family}, but no --cidr is ({}): give it for a subnet of its \
                 family",
                cidrs.join(", ")
            ))
            .into()
        })
}

/// How the network is served, in one word: routed, isolated or host.
fn mode(network: &Network) -> &'static str {
    if network.host.is_some() {
        "host"
    } else if network.isolated {
        "isolated"
    } else {
        "routed"
    }
}

/// Addresses, comma-separated; "-" when there are none.
fn joined(ips: impl Iterator<Item = IpAddr>) -> String {
    let all: Vec<String> = ips.map(|ip| ip.to_string()).collect();
    if all.is_empty() {
        "-".to_owned()
    } else {
        all.join(",")
    }
}

fn show(network: &Network, output: Output) -> anyhow::Result<()> {
    if output.json {
        return output::json(network);
    }
    output::fields(&[
        ("id", network.id.clone()),
        ("name", network.name.clone()),
        ("project", network.project.clone()),
        ("cidr", network.cidrs()),
        (
            "gateway",
            joined(network.subnets().filter_map(|s| s.gateway)),
        ),
        (
            "dhcp_ip",
            if network.has_dhcp() {
                joined(network.subnets().filter_map(|s| s.dhcp_ip))
            } else {
                "none (no DHCP: static ports)".to_owned()
            },
        ),
        (
            "ipv6_address_mode",
            output::or_dash(network.ipv6_address_mode.map(|mode| mode.as_str())),
        ),
        (
            "mode",
            match &network.host {
                Some(host) => format!("host (metadata on the {})", host.describe()),
                None if network.isolated => {
                    "isolated (metadata from the DHCP namespace)".to_owned()
                }
                None => "routed (metadata from the router namespace)".to_owned(),
            },
        ),
        ("mtu", output::or_dash(network.mtu)),
        ("created", network.created.clone()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What libvirt writes for its stock `default` network (`<network>.conf`, abridged).
    const DEFAULT_CONF: &str = "strict-order\npid-file=/run/libvirt/network/default.pid\n\
        except-interface=lo\nbind-dynamic\ninterface=virbr0\n\
        dhcp-range=192.168.122.2,192.168.122.254,255.255.255.0\ndhcp-no-override\n\
        dhcp-authoritative\ndhcp-lease-max=253\n";

    fn network_on_default(store: &dyn Store, name: &str, cidr: &str) -> Network {
        store
            .create_network(&NewNetwork {
                name: name.into(),
                project: "p".into(),
                cidr: cidr.parse().unwrap(),
                host: Some(HostBridge::LibvirtNetwork("default".into())),
                ..NewNetwork::default()
            })
            .unwrap()
    }

    #[test]
    fn a_libvirt_network_handing_out_other_addresses_is_warned_of() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("r.sqlite").display().to_string()).unwrap();
        let leases = dir.path().join("dnsmasq");
        std::fs::create_dir(&leases).unwrap();
        let copied = network_on_default(store.as_ref(), "copied", "198.18.0.0/24");
        // libvirt's network not started here (or on another host): nothing to compare with.
        assert_eq!(libvirt_range_warning(&copied, &leases), None);
        std::fs::write(leases.join("default.conf"), DEFAULT_CONF).unwrap();
        let warning = libvirt_range_warning(&copied, &leases).unwrap();
        assert!(
            warning
                .starts_with("libvirt network default hands out 192.168.122.2-192.168.122.254 ("),
            "{warning}"
        );
        assert!(
            warning.contains("outside this network's 198.18.0.0/24"),
            "{warning}"
        );
        assert!(
            warning.contains("again with the libvirt network's subnet as --cidr"),
            "{warning}"
        );
        store.delete_network(&copied.id).unwrap();
        let right = network_on_default(store.as_ref(), "right", "192.168.122.0/24");
        assert_eq!(libvirt_range_warning(&right, &leases), None);
    }
}
