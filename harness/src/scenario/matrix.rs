//! The scenario matrix: both metadata paths × every user data variant, plus the corrupt-gzip,
//! reboot, new-instance, config-drive, NoCloud, static-network, password-post-back,
//! power-state and IPv6-only scenarios; and selecting scenarios by name.

use anyhow::bail;
use serde::Serialize;

use super::userdata::Variant;

/// How the guest reaches 169.254.169.254.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataPath {
    /// Default route to the router; REDIRECT to the proxy in `qrouter-*`.
    Router,
    /// Option 121 route to the DHCP port; the proxy in `qdhcp-*`.
    Isolated,
}

impl MetadataPath {
    /// Its name in scenario names.
    pub fn name(self) -> &'static str {
        match self {
            MetadataPath::Router => "router",
            MetadataPath::Isolated => "isolated",
        }
    }

    /// The network of the default lab it runs on.
    pub fn network(self) -> &'static str {
        match self {
            MetadataPath::Router => "tenant-r",
            MetadataPath::Isolated => "tenant-i",
        }
    }
}

/// What happens after the first boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flow {
    /// One boot.
    Once,
    /// Power off and boot the same instance from the same disk: per-instance steps must not run
    /// again.
    Reboot,
    /// Power off, replace the instance by one with a new id (same port address), boot the same
    /// disk: per-instance steps must run again.
    NewInstance,
    /// One boot with a `config-2` config drive attached: its hostname, key and `admin_pass`
    /// (applied to root) win over the metadata service.
    ConfigDrive,
    /// One boot with a NoCloud seed (a `cidata` ISO, as `cloud-localds` makes it) attached, for
    /// an instance the metadata service does not know: the guest becomes what the seed says.
    NoCloud,
    /// One boot on the network without DHCP, with the config drive the registry writes
    /// (`instance config-drive`): the guest takes its static address and route from the
    /// drive's `network_data.json` and answers SSH on it.
    StaticNetwork,
    /// One boot whose user data asks for `password_postback`: the guest agent makes root's
    /// password and posts it encrypted for the instance's RSA key; `instance get-password`
    /// decrypts it and a password login with it works.
    PasswordPostback,
    /// One boot on an IPv6-only network of the path (no IPv4 at all): the guest agent finds
    /// the metadata service at `fe80::a9fe:a9fe` on its NIC (169.254.169.254 is unreachable),
    /// through the router's ip6tables REDIRECT or on the DHCP port; the service knows the
    /// guest by the MAC in its link-local address. Behind the router (no DHCP) it takes its
    /// static IPv6 address and route from `network_data.json`; on the isolated network it
    /// makes its SLAAC address from the DHCP port's router advertisements. Checked over IPv6.
    Ipv6Only,
    /// One boot whose cloud-config ends with `power_state` (reboot, on a condition) and a
    /// `final_message`: the guest reboots itself once provisioned (QEMU exits: `-no-reboot`),
    /// the final message on its console; booted again from the same disk it stays up, the same
    /// instance.
    PowerState,
}

impl Flow {
    /// Whether the guest's network serves DHCP for IPv4 (the tiny image's DHCP client gets a
    /// lease).
    pub fn has_dhcp(self) -> bool {
        !matches!(self, Flow::StaticNetwork | Flow::Ipv6Only)
    }
}

/// The default lab's network without DHCP (behind the router).
pub const STATIC_NETWORK: &str = "tenant-s";

/// The default lab's IPv6-only network behind the router (no DHCP: static addresses).
pub const IPV6_NETWORK: &str = "tenant-6";

/// The default lab's isolated IPv6-only network (SLAAC from the DHCP port).
pub const IPV6_ISOLATED_NETWORK: &str = "tenant-6i";

/// One scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Scenario {
    /// The metadata path.
    pub path: MetadataPath,
    /// The user data.
    pub variant: Variant,
    /// Boots.
    pub flow: Flow,
}

impl Scenario {
    /// `router/cloud-config`, `router/reboot`, …
    pub fn name(&self) -> String {
        let what = match self.flow {
            Flow::Once => self.variant.name(),
            Flow::Reboot => "reboot",
            Flow::NewInstance => "new-instance",
            Flow::ConfigDrive => "config-drive",
            Flow::NoCloud => "nocloud",
            Flow::StaticNetwork => "static-network",
            Flow::PasswordPostback => "password-postback",
            Flow::Ipv6Only => "ipv6-only",
            Flow::PowerState => "power-state",
        };
        format!("{}/{what}", self.path.name())
    }

    /// The network of the default lab the guest is on: the path's, or the one without DHCP.
    pub fn network(&self) -> &'static str {
        match self.flow {
            Flow::StaticNetwork => STATIC_NETWORK,
            Flow::Ipv6Only => match self.path {
                MetadataPath::Router => IPV6_NETWORK,
                MetadataPath::Isolated => IPV6_ISOLATED_NETWORK,
            },
            _ => self.path.network(),
        }
    }

    /// The name as an identifier (`router-cloud-config`): instance names, hostnames, files.
    pub fn slug(&self) -> String {
        self.name().replace('/', "-")
    }
}

/// The whole matrix.
pub fn matrix() -> Vec<Scenario> {
    let mut all = Vec::new();
    for path in [MetadataPath::Router, MetadataPath::Isolated] {
        for variant in Variant::ALL
            .into_iter()
            .filter(|v| *v != Variant::CorruptGzip)
        {
            all.push(Scenario {
                path,
                variant,
                flow: Flow::Once,
            });
        }
    }
    let router = MetadataPath::Router;
    all.push(Scenario {
        path: router,
        variant: Variant::CorruptGzip,
        flow: Flow::Once,
    });
    all.push(Scenario {
        path: router,
        variant: Variant::CloudConfig,
        flow: Flow::Reboot,
    });
    all.push(Scenario {
        path: router,
        variant: Variant::CloudConfig,
        flow: Flow::NewInstance,
    });
    all.push(Scenario {
        path: router,
        variant: Variant::CloudConfig,
        flow: Flow::PowerState,
    });
    all.push(Scenario {
        path: router,
        variant: Variant::None,
        flow: Flow::ConfigDrive,
    });
    all.push(Scenario {
        path: router,
        variant: Variant::None,
        flow: Flow::NoCloud,
    });
    for flow in [Flow::StaticNetwork, Flow::PasswordPostback] {
        all.push(Scenario {
            path: router,
            variant: Variant::None,
            flow,
        });
    }
    // A cloud-config: hostname and password from user data, checked over IPv6.
    for path in [router, MetadataPath::Isolated] {
        all.push(Scenario {
            path,
            variant: Variant::CloudConfig,
            flow: Flow::Ipv6Only,
        });
    }
    all
}

/// The README demo: one guest per path.
pub fn demo() -> Vec<Scenario> {
    [MetadataPath::Router, MetadataPath::Isolated]
        .map(|path| Scenario {
            path,
            variant: Variant::CloudConfig,
            flow: Flow::Once,
        })
        .to_vec()
}

/// Scenarios matching any pattern: a full name (`router/script`), a path (`isolated`), a
/// variant or flow (`gzip-script`, `reboot`), `demo`, or `all`. No patterns: the whole matrix.
pub fn select(patterns: &[String]) -> anyhow::Result<Vec<Scenario>> {
    let all = matrix();
    if patterns.is_empty() {
        return Ok(all);
    }
    let mut chosen: Vec<Scenario> = Vec::new();
    for pattern in patterns {
        let matched: Vec<Scenario> = match pattern.as_str() {
            "all" => all.clone(),
            "demo" => demo(),
            p => all
                .iter()
                .filter(|s| {
                    let name = s.name();
                    name == p
                        || s.path.name() == p
                        || name.split_once('/').is_some_and(|(_, what)| what == p)
                })
                .copied()
                .collect(),
        };
        if matched.is_empty() {
            let names: Vec<String> = all.iter().map(Scenario::name).collect();
            bail!(
                "no scenario matches {pattern:?}; scenarios: {}",
                names.join(" ")
            );
        }
        for s in matched {
            if !chosen.contains(&s) {
                chosen.push(s);
            }
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_covers_both_paths_every_variant_and_the_extra_flows() {
        let all = matrix();
        assert_eq!(all.len(), 22);
        let names: Vec<String> = all.iter().map(Scenario::name).collect();
        for expect in [
            "router/none",
            "isolated/none",
            "router/gzip-cloud-config",
            "isolated/multipart",
            "router/corrupt-gzip",
            "router/reboot",
            "router/new-instance",
            "router/power-state",
            "router/config-drive",
            "router/nocloud",
            "router/static-network",
            "router/password-postback",
            "router/ipv6-only",
            "isolated/ipv6-only",
        ] {
            assert!(names.contains(&expect.to_owned()), "{expect}");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert!(
            all.iter().all(|s| s.slug().len() + 3 <= 63),
            "hostnames md-<slug> fit"
        );
    }

    #[test]
    fn selects_by_name_path_variant_and_refuses_unknown_names() {
        assert_eq!(select(&[]).unwrap().len(), 22);
        let six = select(&["ipv6-only".into()]).unwrap();
        assert_eq!(six.len(), 2);
        assert_eq!(six[0].network(), IPV6_NETWORK);
        assert_eq!(six[1].network(), IPV6_ISOLATED_NETWORK);
        assert_eq!(select(&["router/script".into()]).unwrap().len(), 1);
        assert_eq!(select(&["isolated".into()]).unwrap().len(), 7);
        assert_eq!(select(&["gzip-script".into()]).unwrap().len(), 2);
        assert_eq!(
            select(&["demo".into(), "router/cloud-config".into()])
                .unwrap()
                .len(),
            2
        );
        let err = select(&["router/nope".into()]).unwrap_err().to_string();
        assert!(
            err.contains("router/nope") && err.contains("router/none"),
            "{err}"
        );
    }
}
