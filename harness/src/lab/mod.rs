//! The namespace lab: a Neutron-like network on one machine (bridge namespace with the tenant
//! bridges and guest taps, `qrouter-*` and `qdhcp-*` namespaces, dnsmasq, the registry and
//! `metaboot-server all`), brought up from a lab file and taken down completely.

pub mod abandoned;
pub mod bridge;
pub mod config;
pub mod dhcp;
pub mod libvirt_host;
pub mod netns;
pub mod orphan;
pub mod owner;
pub mod registry;
pub mod release;
pub mod router;
pub mod state;
pub mod trust;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ipnet::IpNet;
use metaboot_proto::{
    METADATA_IPV4, METADATA_IPV4_LISTEN, METADATA_IPV6, METADATA_IPV6_LISTEN, METADATA_PORT,
    ROUTER_PROXY_PORT,
};

use crate::atomic;
use crate::process::Daemon;
use config::LabConfig;
use registry::{InstanceRecord, InstanceSpec, NetworkRecord, Registry};
use state::LabState;

/// How long `lab up` waits for `metaboot-server all` to listen in every namespace.
pub const PROXY_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one probe of the metadata address waits for the TCP handshake while `lab up`
/// waits for the proxies: a local answer takes milliseconds; a probe that waits longer is
/// failed and tried again.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The pause between two failed probes of the metadata address.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Lines of a lab daemon's log (dnsmasq, `metaboot-server all`) an error about it shows.
pub const DAEMON_LOG_LINES: usize = 30;

/// How long a stopped daemon gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Length of the HMAC secret the lab generates for the agent and the API.
pub const SECRET_BYTES: usize = 32;

/// Options of `lab up`.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Root of the labs' state directories.
    pub state_root: PathBuf,
    /// The `metaboot-server` binary.
    pub server_bin: PathBuf,
}

/// A lab that is up.
#[derive(Debug)]
pub struct Lab {
    state: LabState,
    registry: Registry,
    /// Serialises registry writes and state saves from parallel guests.
    lock: Mutex<()>,
}

/// Held while a lab is built (each namespace recorded in its state before it is made, each
/// daemon after it starts) and while a guest's process is started; and for good by the teardown
/// a signal starts (`scenario::tear_down_on_signal`): what that teardown reads from the state is
/// then everything there is, and nothing is made after it that it would miss.
static CHANGES: Mutex<()> = Mutex::new(());

/// Takes [`CHANGES`] (blocking until a build or a guest start in progress is over).
pub fn changes() -> MutexGuard<'static, ()> {
    CHANGES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Set by a stop signal (`scenario::tear_down_on_signal`): a lab being built stops after the
/// step in progress instead of finishing what the signal's teardown then removes.
static STOP_BUILDING: AtomicBool = AtomicBool::new(false);

/// Makes a lab being built stop after the step in progress (its error path removes what it
/// made).
pub fn stop_building() {
    STOP_BUILDING.store(true, Ordering::SeqCst);
}

/// Fails once [`stop_building`] was called: a build checks it before each step.
pub fn unless_stopped() -> anyhow::Result<()> {
    if STOP_BUILDING.load(Ordering::SeqCst) {
        bail!("stopped by a signal before it was complete");
    }
    Ok(())
}

/// Fails unless the process runs as root (namespaces, taps and iptables need it).
pub fn require_root() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab needs root (network namespaces, taps, iptables): run as root");
    }
    Ok(())
}

impl Lab {
    /// Brings a lab up; on failure removes whatever it made and returns the error.
    pub fn up(config: &LabConfig, opts: &LabOptions) -> anyhow::Result<Self> {
        config.validate()?;
        // Before anything is made: its real error, not a teardown's.
        Registry::check_binary(&opts.server_bin)?;
        require_root()?;
        let dir = state::lab_dir(&opts.state_root, &config.id);
        if let Some(old) = LabState::load(&opts.state_root, &config.id)? {
            bail!(
                "lab {} is already up (state in {}): run `metaboot-harness lab down --id {}` first",
                config.id,
                old.dir.display(),
                config.id
            );
        }
        let bridge_ns = bridge::namespace(&config.id);
        if netns::exists(&bridge_ns) {
            bail!(
                "namespace {bridge_ns} exists without a lab state: run `metaboot-harness lab down --id {}`",
                config.id
            );
        }
        // A lab lives as long as the process bringing it up until that makes it the user's
        // ([`Lab::keep`]): one whose `lab up` was killed half-way is a leftover too.
        let owner = owner::Owner::this_process(owner::LabKind::Run)?;
        // The directory is the lab's claim on its id: of two `lab up` of one id at once, one
        // makes it and the other stops here, before it records (and so would tear down)
        // anything.
        make_state_dir(&opts.state_root)?;
        trust::check_dir(&opts.state_root)?;
        if let Err(err) = make_lab_dir(&dir) {
            if err.kind() == std::io::ErrorKind::AlreadyExists {
                bail!(
                    "lab {} is being brought up by another process ({} exists): wait for it, or \
                     run `metaboot-harness lab down --id {}` if none is",
                    config.id,
                    dir.display(),
                    config.id
                );
            }
            return Err(err).with_context(|| format!("failed to create {}", dir.display()));
        }
        let db = dir.join("registry.sqlite");
        let state = LabState {
            config: config.clone(),
            dir: dir.clone(),
            bridge_ns,
            namespaces: Vec::new(),
            daemons: Vec::new(),
            server_bin: opts.server_bin.clone(),
            db: db.clone(),
            networks: Vec::new(),
            routers: Vec::new(),
            guests: Vec::new(),
            complete: false,
            owner: Some(owner),
        };
        state.save()?;
        let registry = Registry {
            bin: opts.server_bin.clone(),
            db,
        };
        let mut lab = Self {
            state,
            registry,
            lock: Mutex::new(()),
        };
        let _building = changes();
        match lab.build() {
            Ok(()) => Ok(lab),
            Err(err) => {
                if let Err(down_err) = teardown(&lab.state) {
                    tracing::warn!("cleanup after a failed `lab up` failed too: {down_err:#}");
                }
                Err(err)
            }
        }
    }

    /// Opens a lab that is up (from its state).
    pub fn open(state_root: &Path, id: &str) -> anyhow::Result<Self> {
        let state = LabState::load(state_root, id)?.with_context(|| {
            format!(
                "lab {id} is not up (no state under {})",
                state_root.display()
            )
        })?;
        let registry = Registry {
            bin: state.server_bin.clone(),
            db: state.db.clone(),
        };
        Ok(Self {
            state,
            registry,
            lock: Mutex::new(()),
        })
    }

    fn record_namespace(&mut self, ns: &str) -> anyhow::Result<()> {
        self.state.namespaces.push(ns.to_owned());
        self.state.save()
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let config = self.state.config.clone();
        // The registry first: namespaces are named after its ids.
        for net in &config.networks {
            unless_stopped()?;
            let record = self.registry.create_network(
                &net.name,
                net.cidr,
                config.is_isolated(&net.name),
                net.dhcp,
            )?;
            self.state.networks.push(record);
        }
        for router in &config.routers {
            unless_stopped()?;
            let ids: Vec<String> = router
                .networks
                .iter()
                .map(|n| self.network(n).map(|r| r.id.clone()))
                .collect::<anyhow::Result<_>>()?;
            let record = self.registry.create_router(&router.name, &ids)?;
            self.state.routers.push(record);
        }
        self.state.save()?;

        // The bridge namespace is named after the lab's id, which a `lab up` under another state
        // root may claim at the same time: it is recorded (and so torn down on failure) only
        // once this process made it.
        let bridge_ns = self.state.bridge_ns.clone();
        unless_stopped()?;
        netns::add(&bridge_ns)?;
        self.record_namespace(&bridge_ns)?;
        netns::loopback_up(&bridge_ns)?;
        for net in &self.state.networks {
            unless_stopped()?;
            bridge::add_bridge(&bridge_ns, &bridge::bridge_name(&net.id))?;
        }

        for router in self.state.routers.clone() {
            unless_stopped()?;
            let ns = router::namespace(&router.id);
            self.record_namespace(&ns)?;
            router::create(&ns)?;
            for net_id in &router.network_ids {
                unless_stopped()?;
                let net = self.network_by_id(net_id)?.clone();
                let gateway = IpNet::new(net.gateway, net.cidr.prefix_len())?;
                router::attach(
                    &bridge_ns,
                    &bridge::bridge_name(&net.id),
                    &ns,
                    &net.id,
                    &gateway,
                )?;
            }
        }

        for net in self.state.networks.clone() {
            unless_stopped()?;
            let ns = dhcp::namespace(&net.id);
            self.record_namespace(&ns)?;
            dhcp::create(
                &bridge_ns,
                &bridge::bridge_name(&net.id),
                &ns,
                &net.id,
                IpNet::new(net.dhcp_ip, net.cidr.prefix_len())?,
                net.isolated,
            )?;
            if !net.isolated {
                // As Neutron's DHCP agent does: the DHCP namespace routes through the router,
                // which is also how the harness reaches the metadata service from the tenant side.
                let family = if net.gateway.is_ipv6() { "-6" } else { "-4" };
                netns::ip(
                    &ns,
                    &[
                        family,
                        "route",
                        "add",
                        "default",
                        "via",
                        &net.gateway.to_string(),
                    ],
                )?;
            }
            if !net.dhcp {
                // No DHCP server: the namespace is only the lab's place on the network.
                continue;
            }
            unless_stopped()?;
            let files = dhcp::DnsmasqFiles::under(&self.state.dir, &net.id);
            let daemon = match net.cidr {
                // SLAAC: router advertisements only; guests make the registry's address. On a
                // routed network they come from the router, the guests' default router (as
                // Neutron's L3 agent runs radvd in its qrouter namespace).
                IpNet::V6(prefix) => match self.router_of(&net.id) {
                    Some(router) => dhcp::start_ra(
                        &router::namespace(&router),
                        &net.id,
                        prefix,
                        dhcp::Advertiser::Router,
                        &files,
                    )?,
                    None => {
                        dhcp::start_ra(&ns, &net.id, prefix, dhcp::Advertiser::DhcpPort, &files)?
                    }
                },
                IpNet::V4(_) => dhcp::start(&ns, &dhcp_network(&net)?, &files)?,
            };
            self.state.daemons.push(daemon);
            self.state.save()?;
        }

        tracing::info!(lab = %config.id, "namespaces and dnsmasq ready");
        unless_stopped()?;
        self.start_server()?;
        let waited = Instant::now();
        self.wait_for_proxies()?;
        tracing::info!(lab = %config.id, "metadata answers on every network after {:?}", waited.elapsed());

        for guest in &config.guests {
            unless_stopped()?;
            let spec = InstanceSpec {
                name: guest.name.clone(),
                network: self.network(&guest.network)?.id.clone(),
                hostname: guest.hostname.clone(),
                key_files: guest.key_files.clone(),
                user_data: guest.user_data.clone(),
                ..InstanceSpec::default()
            };
            let record = self.register_instance(&spec)?;
            self.state.guests.push(record);
        }
        self.state.complete = true;
        self.state.save()
    }

    fn start_server(&mut self) -> anyhow::Result<()> {
        let config_file =
            write_server_config(&self.state.dir, &self.state.config.id, &self.state.db)?;
        let mut cmd = Command::new(&self.registry.bin);
        cmd.arg("--db")
            .arg(&self.registry.db)
            .arg("all")
            .arg("--config")
            .arg(&config_file);
        let daemon = Daemon::spawn("metaboot-server all", &mut cmd, &self.server_log())?;
        self.state.daemons.push(daemon);
        self.state.save()
    }

    /// The server's log file.
    pub fn server_log(&self) -> PathBuf {
        self.state.dir.join("metaboot-server.log")
    }

    /// Where a daemon of this lab logs.
    fn daemon_log(&self, daemon: &Daemon) -> PathBuf {
        match self.state.networks.iter().find(|n| {
            daemon.name.ends_with(&dhcp::namespace(&n.id))
                || daemon.name.ends_with(&router::interface(&n.id))
        }) {
            Some(net) => {
                let files = dhcp::DnsmasqFiles::under(&self.state.dir, &net.id);
                // dnsmasq reports start-up errors on stderr, later ones in its log.
                let stderr = files.log.with_extension("stderr");
                if tail(&stderr, 1).is_empty() {
                    files.log
                } else {
                    stderr
                }
            }
            None => self.server_log(),
        }
    }

    /// Waits until the metadata address answers TCP from each network's DHCP namespace: through
    /// the router's REDIRECT for routed networks, on the DHCP port for isolated ones; on an
    /// IPv6 network `fe80::a9fe:a9fe` on the link of the namespace's port (the router holds it).
    fn wait_for_proxies(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + PROXY_READY_TIMEOUT;
        for net in &self.state.networks {
            let ns = dhcp::namespace(&net.id);
            let (metadata, link) = if net.cidr.addr().is_ipv6() {
                (METADATA_IPV6_LISTEN, Some(dhcp::interface(&net.id)))
            } else {
                (METADATA_IPV4_LISTEN, None)
            };
            loop {
                unless_stopped()?;
                self.check_daemons()?;
                let answered = match &link {
                    Some(link) => netns::tcp_probe_on_link(&ns, metadata, link, PROBE_TIMEOUT),
                    None => netns::tcp_probe(&ns, metadata, PROBE_TIMEOUT),
                };
                match answered {
                    Ok(()) => break,
                    Err(err) if Instant::now() >= deadline => {
                        return Err(err).with_context(|| {
                            format!(
                                "the metadata service did not answer on network {} within {PROXY_READY_TIMEOUT:?}; server log:\n{}",
                                net.name,
                                tail(&self.server_log(), DAEMON_LOG_LINES)
                            )
                        });
                    }
                    Err(_) => std::thread::sleep(PROBE_INTERVAL),
                }
            }
        }
        // A daemon may fail after the probes answered (dnsmasq binds its socket last).
        self.check_daemons()
    }

    /// Fails with its log when a daemon of the lab has exited.
    fn check_daemons(&self) -> anyhow::Result<()> {
        match self.state.daemons.iter().find(|d| !d.is_running()) {
            Some(dead) => bail!(
                "{} exited:\n{}",
                dead.name,
                tail(&self.daemon_log(dead), DAEMON_LOG_LINES)
            ),
            None => Ok(()),
        }
    }

    /// The lab's state.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The lab's daemons (dnsmasq per network, `metaboot-server all`) that are no longer running:
    /// guests on a network whose dnsmasq is gone get no address, none gets metadata without the
    /// server.
    pub fn stopped_daemons(&self) -> Vec<&Daemon> {
        self.state
            .daemons
            .iter()
            .filter(|d| !d.is_running())
            .collect()
    }

    /// Fails, saying which and what to do, when a daemon of the lab has stopped since `up`.
    pub fn require_running(&self) -> anyhow::Result<()> {
        let stopped = self.stopped_daemons();
        if stopped.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = stopped
            .iter()
            .map(|d| format!("{} (pid {})", d.name, d.pid))
            .collect();
        let id = &self.state.config.id;
        bail!(
            "lab {id} is broken: {} no longer running (logs in {}); take it down and up again: \
             metaboot-harness lab down --id {id}, then lab up",
            names.join(", "),
            self.state.dir.display()
        )
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A network by name.
    pub fn network(&self, name: &str) -> anyhow::Result<&NetworkRecord> {
        self.state
            .networks
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("lab {} has no network {name}", self.state.config.id))
    }

    /// The id of the router network `network_id` is behind, if any.
    fn router_of(&self, network_id: &str) -> Option<String> {
        self.state
            .routers
            .iter()
            .find(|r| r.network_ids.iter().any(|id| id == network_id))
            .map(|r| r.id.clone())
    }

    fn network_by_id(&self, id: &str) -> anyhow::Result<&NetworkRecord> {
        self.state
            .networks
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("lab {} has no network {id}", self.state.config.id))
    }

    /// Registers an instance and gives its port a fixed DHCP address; refuses (and deletes it
    /// again) one the registry gave the lab's own address.
    pub fn register_instance(&self, spec: &InstanceSpec) -> anyhow::Result<InstanceRecord> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let record = self.registry.create_instance(spec)?;
        if let Err(err) = self
            .network_by_id(&record.network_id)?
            .check_guest_address(record.ip)
        {
            if let Err(undo) = self.registry.delete_instance(&record.uuid) {
                tracing::warn!("{undo:#}");
            }
            return Err(err);
        }
        // An IPv6 network with DHCP is SLAAC: no host entry, the guest makes its address.
        if let std::net::IpAddr::V4(ip) = record.ip
            && self.network_by_id(&record.network_id)?.dhcp
        {
            let files = dhcp::DnsmasqFiles::under(&self.state.dir, &record.network_id);
            dhcp::add_host(&files, &record.port_id, &record.mac, ip)?;
        }
        Ok(record)
    }

    /// Deletes an instance and its port, as Neutron's port delete does: from the registry,
    /// then its DHCP ([`release::release_port`]: host entry, dnsmasq told, lease released), so
    /// its address is free for the next port and its guest, if it still runs, keeps it no
    /// longer than its lease.
    pub fn delete_instance(&self, record: &InstanceRecord) -> anyhow::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.registry.delete_instance(&record.uuid)?;
        let std::net::IpAddr::V4(ip) = record.ip else {
            // SLAAC: no host entry, no lease.
            return Ok(());
        };
        let ns = dhcp::namespace(&record.network_id);
        let Some(dnsmasq) = self
            .state
            .daemons
            .iter()
            .find(|daemon| daemon.name == dhcp::daemon_name(&ns))
        else {
            // A network without DHCP (or one this lab does not have): no entry, no lease.
            return Ok(());
        };
        let files = dhcp::DnsmasqFiles::under(&self.state.dir, &record.network_id);
        release::release_port(
            &files,
            dnsmasq,
            &record.network_id,
            &record.port_id,
            &record.mac,
            ip,
        )
        .with_context(|| {
            format!(
                "instance {} is deleted, but the DHCP of its port {} is not all taken back",
                record.uuid, record.port_id
            )
        })
    }

    /// Deletes an instance from the registry alone: its port's DHCP host entry and lease stay,
    /// so its guest keeps its address while the metadata service no longer knows it (the
    /// `nocloud` flow). A later port given that address would get no lease: only for an
    /// address no later port is given (the `nocloud` flow's is near the top of its network).
    pub fn unregister_instance(&self, uuid: &str) -> anyhow::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.registry.delete_instance(uuid)
    }

    /// Creates the tap of a port on its network's bridge; returns the tap's name.
    pub fn add_tap(&self, record: &InstanceRecord) -> anyhow::Result<String> {
        let tap = bridge::ifname("tap", &record.port_id);
        bridge::add_tap(
            &self.state.bridge_ns,
            &bridge::bridge_name(&record.network_id),
            &tap,
        )?;
        Ok(tap)
    }

    /// Removes a port's tap.
    pub fn delete_tap(&self, tap: &str) {
        bridge::delete_tap(&self.state.bridge_ns, tap);
    }

    /// The namespace on a network's tenant side the checks run from (its DHCP namespace, where
    /// an operator would run `ip netns exec qdhcp-… ssh`).
    pub fn client_namespace(&self, network_id: &str) -> String {
        dhcp::namespace(network_id)
    }

    /// A summary for the terminal.
    pub fn describe(&self) -> String {
        let s = &self.state;
        let mut out = format!("lab {} is up (state in {})\n", s.config.id, s.dir.display());
        let _ = writeln!(out, "  {}", owner::describe(s.owner.as_ref(), &s.config.id));
        let _ = writeln!(out, "  bridge namespace {}", s.bridge_ns);
        for net in &s.networks {
            let _ = writeln!(
                out,
                "  network {} {} ({}) gateway {} {} {} {}",
                net.name,
                net.cidr,
                net.id,
                net.gateway,
                match (net.dhcp, net.cidr.addr().is_ipv6()) {
                    (true, false) => "dhcp",
                    (true, true) if net.isolated => {
                        "SLAAC (dnsmasq router advertisements, no default router)"
                    }
                    (true, true) => "SLAAC (the router's advertisements, default router)",
                    (false, _) => "no DHCP, lab at",
                },
                net.dhcp_ip,
                if net.isolated && net.cidr.addr().is_ipv6() {
                    "isolated: fe80::a9fe:a9fe in qdhcp"
                } else if net.isolated {
                    "isolated: metadata in qdhcp, option 121"
                } else {
                    "routed"
                }
            );
            let _ = writeln!(out, "    qdhcp-{}", net.id);
        }
        for router in &s.routers {
            let _ = writeln!(
                out,
                "  router {} qrouter-{} (REDIRECT {METADATA_IPV4}:{METADATA_PORT} and \
                 [{METADATA_IPV6}]:{METADATA_PORT} → {ROUTER_PROXY_PORT})",
                router.name, router.id
            );
        }
        for g in &s.guests {
            let _ = writeln!(out, "  guest {} {} {} {}", g.name, g.uuid, g.ip, g.mac);
        }
        for d in &s.daemons {
            let running = if d.is_running() {
                "running"
            } else {
                "NOT RUNNING: take the lab down and up again"
            };
            let _ = writeln!(out, "  {} pid {}: {running}", d.name, d.pid);
        }
        let _ = write!(
            out,
            "  registry {} (metaboot-server --db {})",
            s.db.display(),
            s.db.display()
        );
        out
    }

    /// Makes the lab the user's (`lab up`, `run --keep-lab`): it stays up after this process
    /// ends, until `lab down`, where a `run`'s lab is taken down by the next `run` once its
    /// run is gone ([`take_down_abandoned`]).
    pub fn keep(&mut self) -> anyhow::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.state.owner = Some(owner::Owner::this_process(owner::LabKind::Kept)?);
        self.state.save()
    }

    /// Takes the lab down.
    pub fn down(self) -> anyhow::Result<()> {
        teardown(&self.state)
    }
}

/// Takes lab `id` down from its state; without state (removed, or another state root), finds
/// what it made from its id ([`orphan`]: the server only if it was started under this state
/// root). Returns whether anything of it was there.
pub fn down(state_root: &Path, id: &str) -> anyhow::Result<bool> {
    require_root()?;
    config::validate_id(id)?;
    match LabState::load(state_root, id)? {
        Some(state) => teardown(&state).map(|()| true),
        None => {
            let dir = state::lab_dir(state_root, id);
            let existed = orphan::down(&dir, id)
                .with_context(|| format!("lab {id} was not removed completely"))?;
            let _ = fs::remove_dir_all(&dir);
            Ok(existed)
        }
    }
}

/// Takes down, with a warning naming each, the `run` labs under `root` whose run is gone
/// ([`abandoned::sweep`]): its QEMUs, dnsmasq and `metaboot-server all` would otherwise
/// keep running and slow down the guests of this run. A lab that cannot be taken down is
/// reported and left, and so is one whose state could not be read (refused by
/// [`trust`]'s checks, or broken): the warning says why and what to do.
pub fn take_down_abandoned(root: &Path) {
    let sweep = abandoned::sweep(root);
    for warning in &sweep.unread {
        eprintln!("{warning}");
    }
    for state in sweep.abandoned {
        let id = &state.config.id;
        let pid = state.owner.map_or(0, |owner| owner.pid);
        eprintln!(
            "warning: lab {id} was left up by a run that is gone (pid {pid}, killed?): taking it down"
        );
        if let Err(err) = down(root, id) {
            eprintln!(
                "warning: could not take lab {id} down: {err:#}; run `metaboot-harness lab down \
                 --id {id}`"
            );
        }
    }
}

/// Stops the daemons, deletes the namespaces (newest first) and removes the state directory.
/// Keeps going after an error so as much as possible is removed, then reports the first one.
fn teardown(state: &LabState) -> anyhow::Result<()> {
    let mut first_error = None;
    for daemon in state.daemons.iter().rev() {
        if let Err(err) = daemon.stop(STOP_GRACE) {
            first_error.get_or_insert(err);
        }
    }
    // A server started but not recorded yet when the run was killed runs outside the lab's
    // namespaces: found by its configuration file.
    orphan::stop_servers(&state.dir, &state.config.id);
    for ns in state.namespaces.iter().rev() {
        // Guests (QEMU) and checks (ssh) of a run that was killed are still inside.
        let killed = netns::kill_processes_in(ns);
        if killed > 0 {
            tracing::info!("killed {killed} processes left in {ns}");
        }
        if let Err(err) = netns::delete(ns) {
            first_error.get_or_insert(err);
        }
    }
    match first_error {
        Some(err) => Err(err.context(format!(
            "lab {} was not removed completely",
            state.config.id
        ))),
        None => match fs::remove_dir_all(&state.dir) {
            // Another teardown of the same lab removed it first.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            removed => removed.with_context(|| format!("failed to remove {}", state.dir.display())),
        },
    }
}

/// The mode of the state root and of a lab's directory when the lab makes them: the user's
/// alone to write ([`trust`]), readable by the daemons the lab starts (dnsmasq, libvirt's QEMU)
/// whatever user they run as.
pub const STATE_DIR_MODE: u32 = 0o755;

/// Makes the state root (and its missing parents) when it is missing, with
/// [`STATE_DIR_MODE`] whatever the umask; leaves one that is there as it is.
fn make_state_dir(root: &Path) -> anyhow::Result<()> {
    if let Some(parent) = root.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    match make_lab_dir(root) {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        made => made.with_context(|| format!("failed to create {}", root.display())),
    }
}

/// Makes directory `dir` (failing when it is there) with [`STATE_DIR_MODE`] whatever the
/// umask.
fn make_lab_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new().mode(STATE_DIR_MODE).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(STATE_DIR_MODE))
}

/// What dnsmasq serves on an IPv4 network with DHCP.
fn dhcp_network(net: &NetworkRecord) -> anyhow::Result<dhcp::DhcpNetwork> {
    use std::net::IpAddr;
    let (IpNet::V4(cidr), IpAddr::V4(gateway), IpAddr::V4(dhcp_ip)) =
        (net.cidr, net.gateway, net.dhcp_ip)
    else {
        bail!(
            "network {} ({}) has DHCP but is not IPv4: the lab serves DHCP for IPv4 only",
            net.name,
            net.cidr
        );
    };
    Ok(dhcp::DhcpNetwork {
        id: net.id.clone(),
        cidr,
        gateway,
        dhcp_ip,
        isolated: net.isolated,
    })
}

/// Writes the config of `metaboot-server all` for lab `id` into `dir` (the registry `db` and a
/// fresh shared secret); returns its path.
pub fn write_server_config(dir: &Path, id: &str, db: &Path) -> anyhow::Result<PathBuf> {
    let secret_file = dir.join("shared-secret");
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret)
        .map_err(|e| anyhow::anyhow!("failed to make the shared secret: {e}"))?;
    atomic::write(&secret_file, hex::encode(secret).as_bytes(), 0o600)?;
    let config_file = dir.join(orphan::SERVER_CONFIG);
    let config = format!(
        "# metaboot-server all, for lab {id}\ndb = {}\nshared_secret_file = {}\n",
        toml_string(db),
        toml_string(&secret_file),
    );
    atomic::write(&config_file, config.as_bytes(), 0o600)?;
    Ok(config_file)
}

/// A TOML basic string for a path.
fn toml_string(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lab list` (and `lab up`) say whose each lab is.
    #[test]
    fn a_labs_description_names_its_owner() {
        let root = tempfile::tempdir().unwrap();
        let id = "ab12";
        let owner = owner::Owner::this_process(owner::LabKind::Kept).unwrap();
        abandoned::tests::lab(root.path(), id, Some(owner));
        let text = Lab::open(root.path(), id).unwrap().describe();
        let line = format!("  {}\n", owner::describe(Some(&owner), id));
        assert!(line.contains("owner: kept"), "{line}");
        assert!(text.contains(&line), "{text}");
    }

    /// Two teardowns of one lab (a signal's and the run's own, or two `lab down`) both
    /// succeed: what the first removed is not missing for the second.
    #[test]
    fn a_second_teardown_of_a_lab_succeeds() {
        let root = tempfile::tempdir().unwrap();
        abandoned::tests::lab(root.path(), "ab12", None);
        let state = LabState::load(root.path(), "ab12").unwrap().unwrap();
        teardown(&state).unwrap();
        assert!(!state.dir.exists());
        teardown(&state).unwrap();
    }

    /// A wrong server binary is refused with its real error before the lab makes anything
    /// (its state root, its directory).
    #[test]
    fn a_wrong_server_binary_is_refused_before_anything_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LabOptions {
            state_root: dir.path().join("labs"),
            server_bin: dir.path().join("wrong/metaboot-server"),
        };
        let err = Lab::up(&LabConfig::default_with_id("ab12"), &opts).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("metaboot-server not found at"), "{err}");
        assert!(!opts.state_root.exists(), "the state root was made");
    }

    /// The state root and a lab's directory are made the user's alone to write (so their state
    /// is trusted) and open to the daemons of the lab; one that is there is left as it is.
    #[test]
    fn state_directories_are_made_the_users_alone() {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(STATE_DIR_MODE & trust::SHARED_WRITE_BITS, 0);
        assert_eq!(STATE_DIR_MODE & 0o005, 0o005, "others read and enter");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run/labs");
        make_state_dir(&root).unwrap();
        make_state_dir(&root).unwrap();
        let lab = root.join("ab12");
        make_lab_dir(&lab).unwrap();
        for made in [&root, &lab] {
            let mode = fs::metadata(made).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, STATE_DIR_MODE, "{}", made.display());
            trust::check_dir(made).unwrap();
        }
        let again = make_lab_dir(&lab).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn toml_strings_are_quoted_and_escaped() {
        let path = "/run/a b/\"x\"";
        let doc: toml::Table =
            toml::from_str(&format!("db = {}", toml_string(Path::new(path)))).unwrap();
        assert_eq!(doc["db"].as_str(), Some(path));
    }

    /// A daemon that ends on SIGTERM is seen gone within its grace, many polls long; a
    /// teardown of a lab whose daemons all ignore it stays short.
    #[test]
    fn a_daemon_gets_a_short_grace_of_many_polls() {
        assert!(crate::wait::POLL_INTERVAL * 10 <= STOP_GRACE);
        assert!(STOP_GRACE <= Duration::from_secs(10));
    }

    /// Many probes fit in the wait for the proxies, and a probe waits longer than the pause
    /// between two.
    #[test]
    fn the_proxies_are_probed_often_within_their_timeout() {
        assert!(PROBE_INTERVAL < PROBE_TIMEOUT);
        assert!((PROBE_TIMEOUT + PROBE_INTERVAL) * 20 <= PROXY_READY_TIMEOUT);
    }

    /// An error about a daemon shows the last [`DAEMON_LOG_LINES`] lines of its log: enough
    /// for a start-up error and what led to it, short enough for a terminal.
    #[test]
    fn an_error_about_a_daemon_shows_the_end_of_its_log() {
        assert!((10..=60).contains(&DAEMON_LOG_LINES));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log: String = (0..100).map(|i| format!("line {i}\n")).collect();
        fs::write(&path, log).unwrap();
        let shown = tail(&path, DAEMON_LOG_LINES);
        assert_eq!(shown.lines().count(), DAEMON_LOG_LINES);
        assert!(shown.ends_with("line 99"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, "1\n2\n3\n").unwrap();
        assert_eq!(tail(&path, 2), "2\n3");
        assert_eq!(tail(&dir.path().join("none"), 2), "");
    }
}
