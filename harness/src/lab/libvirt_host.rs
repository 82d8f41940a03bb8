//! A plain libvirt host in a lab namespace: no Neutron, no router or qdhcp namespace; a
//! libvirtd (the harness's, see [`crate::guest::libvirtd`]) with one libvirt network (bridge,
//! libvirt's dnsmasq, NAT), all inside namespace `metaboot-ID`, so nothing touches the machine's
//! own network. `metaboot-server all` runs in the same namespace, as it would on the host.
//! Everything goes away when the host is dropped: network, daemons, the namespace.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::guest::libvirt_network::{Network, NetworkSpec};
use crate::guest::libvirtd::{self, Libvirtd};
use crate::lab::{bridge, netns};
use crate::process::{self, Daemon};

/// The lab's libvirt host; taken down when dropped.
#[derive(Debug)]
pub struct LibvirtHost {
    /// The namespace everything lives in.
    pub ns: String,
    /// Logs, XML and the registry.
    pub dir: PathBuf,
    network: Option<Network>,
    libvirtd: Option<Libvirtd>,
    daemons: Vec<Daemon>,
    /// Namespaces of the lab's own clients on the network (removed first).
    clients: Vec<String>,
}

impl LibvirtHost {
    /// Makes namespace `metaboot-ID`, starts libvirtd in it and creates the lab's libvirt
    /// network ([`NetworkSpec::for_lab`]). Logs go to `dir`.
    pub fn up(id: &str, dir: &Path) -> anyhow::Result<Self> {
        crate::lab::require_root()?;
        crate::lab::config::validate_id(id)?;
        libvirtd::preflight()?;
        fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let ns = bridge::namespace(id);
        netns::add(&ns)?;
        // The guard, before any step that may fail: dropped, it deletes the namespace.
        let mut host = Self {
            ns,
            dir: dir.to_owned(),
            network: None,
            libvirtd: None,
            daemons: Vec::new(),
            clients: Vec::new(),
        };
        netns::loopback_up(&host.ns)?;
        host.libvirtd = Some(
            Libvirtd::start(&host.ns, &dir.join("libvirt"))
                .context("failed to start libvirt's daemons")?,
        );
        host.network = Some(
            Network::create(&NetworkSpec::for_lab(id), dir)
                .context("failed to create the libvirt network")?,
        );
        Ok(host)
    }

    /// The libvirt network.
    pub fn network(&self) -> &Network {
        // Set in `up`, taken only in `down`.
        match &self.network {
            Some(network) => network,
            None => unreachable!("the network exists until the host is down"),
        }
    }

    /// `program` inside the host's namespace.
    pub fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns::exec(&self.ns, program)
    }

    /// Plugs a client into the network as a machine behind the bridge would be: namespace
    /// `metaboot-ID-NAME` with `eth0` (of `mac`), a veth whose other end is a port of the
    /// bridge. Returns the client's namespace (removed when the host goes down, and by a `lab
    /// down --id ID` without state after a kill: [`crate::lab::orphan`] follows that veth).
    pub fn add_client(&mut self, name: &str, mac: &str) -> anyhow::Result<String> {
        crate::lab::config::validate_name(name)?;
        let client = bridge::client_namespace(&self.ns, name);
        self.clients.push(client.clone());
        netns::create(&client)?;
        let port = bridge::client_end(name);
        netns::ip(
            &client,
            &[
                "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name", &port,
                "netns", &self.ns,
            ],
        )?;
        let bridge = self.network().spec().bridge.clone();
        netns::ip(&self.ns, &["link", "set", &port, "master", &bridge, "up"])?;
        netns::ip(&client, &["link", "set", "eth0", "up"])?;
        Ok(client)
    }

    /// Starts a daemon inside the namespace (stopped when the host goes down).
    pub fn spawn(&mut self, name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<()> {
        let daemon = Daemon::spawn(name, cmd, log)?;
        self.daemons.push(daemon);
        Ok(())
    }

    /// The daemons started with [`Self::spawn`] that stopped.
    pub fn stopped_daemons(&self) -> Vec<String> {
        self.daemons
            .iter()
            .filter(|d| !d.is_running())
            .map(|d| d.name.clone())
            .collect()
    }

    /// The PIDs of processes named `name` living in the host's namespace.
    pub fn processes_named(&self, name: &str) -> Vec<u32> {
        process_ids(name)
            .into_iter()
            .filter(|pid| netns::process_in(*pid, &self.ns))
            .collect()
    }

    /// Takes everything down: daemons, the network, libvirtd, the namespace. Keeps going
    /// after an error, then returns the first.
    pub fn down(mut self) -> anyhow::Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(client) = self.clients.pop() {
            netns::kill_processes_in(&client);
            if let Err(err) = netns::delete(&client) {
                first_error.get_or_insert(err);
            }
        }
        while let Some(daemon) = self.daemons.pop() {
            if let Err(err) = daemon.stop(crate::lab::STOP_GRACE) {
                first_error.get_or_insert(err);
            }
        }
        if let Some(mut network) = self.network.take()
            && let Err(err) = network.destroy()
        {
            first_error.get_or_insert(err);
        }
        if let Some(libvirtd) = self.libvirtd.take()
            && let Err(err) = libvirtd.stop()
        {
            first_error.get_or_insert(err);
        }
        if netns::exists(&self.ns) {
            // Guests libvirtd left behind, dnsmasq, ssh of the checks.
            netns::kill_processes_in(&self.ns);
            if let Err(err) = netns::delete(&self.ns) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for LibvirtHost {
    fn drop(&mut self) {
        if let Err(err) = self.teardown() {
            eprintln!("failed to take the libvirt host {} down: {err:#}", self.ns);
        }
    }
}

/// PIDs of the processes whose `comm` is `name`.
fn process_ids(name: &str) -> Vec<u32> {
    process::pids()
        .into_iter()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

/// Fails unless libvirt, virt-install and the firewall tools nwfilter uses are installed.
pub fn preflight() -> anyhow::Result<()> {
    libvirtd::preflight()?;
    let missing: Vec<&str> = ["virt-install", "ebtables", "iptables"]
        .into_iter()
        .filter(|t| !process::on_path(t))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "missing tools for the libvirt host: {} (scripts/install-lab-deps installs virtinst \
             and iptables)",
            missing.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `up` makes the guard that deletes the namespace right after it made the namespace:
    /// a failing step after (bringing `lo` up, starting libvirtd) leaves no namespace behind.
    #[test]
    fn the_namespace_is_guarded_from_the_step_after_it_is_made() {
        let source = include_str!("libvirt_host.rs");
        let start = source.find("pub fn up(").unwrap();
        let up = &source[start..];
        let up = &up[..up.find("\n    }\n").unwrap()];
        let made = up
            .find("netns::add(&ns)?;")
            .expect("up makes the namespace with netns::add");
        let guarded = up.find("let mut host = Self {").unwrap();
        assert!(made < guarded);
        let between = &up[made + "netns::add(&ns)?;".len()..guarded];
        assert!(
            !between.contains('?'),
            "a step between the namespace and its guard may fail: {between}"
        );
        assert!(
            !up.contains("netns::create("),
            "create also brings lo up, unguarded"
        );
    }
}
