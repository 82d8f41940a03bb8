//! Network namespaces for root tests: made and removed by the test, commands run inside them,
//! and connections made from inside them.

use std::process::Command;

use anyhow::{Context, bail};
use metaboot_proto::{METADATA_IPV4_LISTEN, METADATA_PORT, ROUTER_PROXY_PORT};

/// Runs a command and fails with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("failed to run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip netns exec NAME program args…`.
pub fn exec(netns: &str, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["netns", "exec", netns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// A named namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: &str) -> anyhow::Result<Self> {
        let _ = run("ip", &["netns", "del", name]);
        run("ip", &["netns", "add", name])?;
        exec(name, "ip", &["link", "set", "lo", "up"])?;
        Ok(Self {
            name: name.to_owned(),
        })
    }

    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        exec(&self.name, program, args)
    }

    /// Redirects metadata requests that arrive on `interface` for `destination` (an address
    /// with its prefix, e.g. `169.254.169.254/32`) from port 80 to the router proxy's 9697, as
    /// Neutron's L3 agent does; `tool` is `iptables` or `ip6tables` (interface may end in `+`).
    pub fn redirect_metadata(
        &self,
        tool: &str,
        interface: &str,
        destination: &str,
    ) -> anyhow::Result<()> {
        let (port, to) = (METADATA_PORT.to_string(), ROUTER_PROXY_PORT.to_string());
        self.exec(
            tool,
            &[
                "-w",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-i",
                interface,
                "-d",
                destination,
                "-p",
                "tcp",
                "--dport",
                &port,
                "-j",
                "REDIRECT",
                "--to-ports",
                &to,
            ],
        )
        .map(drop)
    }

    /// The uuid this namespace's guest is served at `http://169.254.169.254`: None for a 404,
    /// Err when nothing answers yet (a listener not up).
    pub fn served_uuid(&self) -> Result<Option<String>, String> {
        let path = "/openstack/latest/meta_data.json";
        let reply = self
            .within(|| crate::guest::get(None, METADATA_IPV4_LISTEN, path, &[]))
            .unwrap();
        match reply {
            Ok(reply) if reply.status == 200 => {
                Ok(Some(reply.json()["uuid"].as_str().unwrap().to_owned()))
            }
            Ok(reply) if reply.status == 404 => Ok(None),
            other => Err(format!("{} got {other:?}", self.name)),
        }
    }

    /// Runs `f` on a thread that entered this namespace (connections it opens start there).
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> anyhow::Result<T> {
                    let file = std::fs::File::open(&path)
                        .with_context(|| format!("no namespace at {path}"))?;
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("cannot enter {path}"))?;
                    Ok(f())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("thread in {path} panicked"))?
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Joins two namespaces with a veth pair: `(ns_a, if_a, addr_a/prefix)` ↔ `(ns_b, if_b, addr_b/prefix)`.
pub fn veth(
    a: &Netns,
    if_a: &str,
    addr_a: &str,
    b: &Netns,
    if_b: &str,
    addr_b: &str,
) -> anyhow::Result<()> {
    run(
        "ip",
        &[
            "link", "add", if_a, "netns", &a.name, "type", "veth", "peer", "name", if_b, "netns",
            &b.name,
        ],
    )?;
    a.exec("ip", &["addr", "add", addr_a, "dev", if_a])?;
    b.exec("ip", &["addr", "add", addr_b, "dev", if_b])?;
    a.exec("ip", &["link", "set", if_a, "up"])?;
    b.exec("ip", &["link", "set", if_b, "up"])?;
    Ok(())
}

/// Plugs a guest namespace in: its `eth0`, with MAC `mac`, is a veth whose peer is `peer` in
/// `host` (neither end is configured further).
pub fn guest_veth(guest: &Netns, mac: &str, host: &Netns, peer: &str) -> anyhow::Result<()> {
    run(
        "ip",
        &[
            "link",
            "add",
            "eth0",
            "netns",
            &guest.name,
            "address",
            mac,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            &host.name,
        ],
    )
    .map(drop)
}
