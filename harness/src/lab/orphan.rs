//! Taking down a lab whose state is gone (its directory removed, or `lab down` given another
//! state root than `lab up` had): what the lab made is found from its id alone. The bridge
//! namespace is named after the id; the router, DHCP and client namespaces hang off it by the
//! lab's own veth pairs (`rtr-…`, `dhc-…` and `vc-…`, whose other ends `ip -n metaboot-ID link`
//! names; a veth someone else plugged into the lab's bridges leads to a namespace the lab leaves
//! alone); its
//! `metaboot-server all` is the one started with the lab's `ID/lab-server.toml` under this
//! state root. A server of a lab of that id under another state root is that lab running:
//! its namespaces, named after the id alone, are the ones found here, so nothing is taken down
//! and the error names the state root to give.

use std::path::{Path, PathBuf};

use super::trust::{self, same_dir};
use super::{bridge, config, dhcp, netns, router};
use crate::process::Found;

/// The name of the server's configuration file in a lab's directory: one no installed server
/// uses (a packaged `all --config /etc/metaboot/metaboot.toml` is not lab `metaboot`'s).
pub const SERVER_CONFIG: &str = "lab-server.toml";

/// Removes what lab `id` made without its state, `lab_dir` its directory under this state
/// root: stops its server, ends the processes left in its namespaces and deletes them. When a
/// server of a lab of that id runs under another state root, that lab is up (namespaces are
/// named after the id alone): nothing is touched, and the error says which state root to give.
/// Returns whether anything of it was there. Keeps going after an error, then reports the
/// first one.
pub fn down(lab_dir: &Path, id: &str) -> anyhow::Result<bool> {
    refuse_other_roots(lab_dir, id)?;
    let bridge_ns = bridge::namespace(id);
    let existed = stop_servers(lab_dir, id) > 0 || netns::exists(&bridge_ns);
    let mut first_error = None;
    let links = if netns::exists(&bridge_ns) {
        netns::ip(&bridge_ns, &["-o", "link", "show", "type", "veth"])
    } else {
        Ok(String::new())
    };
    let namespaces = namespaces_to_delete(&bridge_ns, links, &mut first_error);
    for ns in &namespaces {
        netns::kill_processes_in(ns);
        if let Err(err) = netns::delete(ns) {
            first_error.get_or_insert(err);
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(existed),
    }
}

/// Stops the running servers of lab `id` in `lab_dir`, found by their configuration file
/// ([`is_server_of`]): one whose state is gone, or one the state does not hold (started by a
/// run killed before it recorded it); returns how many. A lab of the same id under another
/// state root keeps its server.
pub fn stop_servers(lab_dir: &Path, id: &str) -> usize {
    let servers: Vec<Found> = servers_of(|dir| same_dir(dir, lab_dir))
        .into_iter()
        .map(|(server, _)| server)
        .collect();
    for Found { pid, name, .. } in &servers {
        tracing::warn!("stopping process {pid} ({name}), a server of lab {id}");
    }
    netns::end_processes(&servers)
}

/// The namespaces to delete, in order: those at the other ends of the bridge namespace's veth
/// pairs (`links`, [`linked_namespaces`]), then the bridge namespace. When its links could not
/// be listed, the error is kept in `first_error` (unless one is there) and none is deleted:
/// the bridge namespace's links are the only record of the router and DHCP namespaces (named
/// after registry ids, not the lab's), so it stays for a later `lab down` to find them.
fn namespaces_to_delete(
    bridge_ns: &str,
    links: anyhow::Result<String>,
    first_error: &mut Option<anyhow::Error>,
) -> Vec<String> {
    match links {
        Ok(links) => {
            let mut namespaces = linked_namespaces(&links, bridge_ns);
            namespaces.push(bridge_ns.to_owned());
            namespaces
        }
        Err(err) => {
            first_error.get_or_insert(err.context(format!(
                "cannot list the links of {bridge_ns}: it stays, with the namespaces it \
                 leads to; run `lab down` again once `ip -n {bridge_ns} link` works"
            )));
            Vec::new()
        }
    }
}

/// The namespaces at the other end of the lab's own veth pairs among those `ip -o link show
/// type veth` lists in its bridge namespace `bridge_ns` (`NAME@…: … link-netns NS`), each
/// once, in order: a router interface's (`rtr-…`, into `qrouter-<router id>`), a DHCP port's
/// (`dhc-<network id>`, into `qdhcp-<that network id>`) and a client's of the libvirt host
/// (`vc-<name>`, into `<bridge_ns>-<that name>`). Any other veth on the lab's bridges (a
/// container's or a debug namespace someone plugged in) leads to a namespace the lab did not
/// make: left alone.
pub fn linked_namespaces(links: &str, bridge_ns: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for line in links.lines() {
        let mut words = line.split_whitespace();
        let link = words
            .nth(1)
            .map(|name| name.trim_end_matches(':'))
            .and_then(|name| name.split('@').next())
            .unwrap_or_default();
        while let Some(word) = words.next() {
            if word == "link-netns"
                && let Some(name) = words.next()
                && is_lab_link(link, name, bridge_ns)
                && !found.iter().any(|seen| seen == name)
            {
                found.push(name.to_owned());
            }
        }
    }
    found
}

/// Whether veth `link` of bridge namespace `bridge_ns`, leading to namespace `ns`, is one the
/// lab made ([`router::bridge_end`], [`dhcp::bridge_end`], [`bridge::client_end`]) into a
/// namespace of the lab's names.
fn is_lab_link(link: &str, ns: &str, bridge_ns: &str) -> bool {
    if let Some(router_id) = ns.strip_prefix(router::NAMESPACE_PREFIX) {
        return link.starts_with(router::BRIDGE_END_PREFIX)
            && trust::check_registry_id(router_id).is_ok();
    }
    if let Some(network_id) = ns.strip_prefix(dhcp::NAMESPACE_PREFIX) {
        return link == dhcp::bridge_end(network_id)
            && trust::check_registry_id(network_id).is_ok();
    }
    if let Some(client) = ns
        .strip_prefix(bridge_ns)
        .and_then(|rest| rest.strip_prefix('-'))
    {
        return link == bridge::client_end(client) && config::validate_name(client).is_ok();
    }
    false
}

/// Refuses to take lab `id` down without its state when a server of a lab of that id runs
/// under another state root than the one of `lab_dir`: that lab is up, and its namespaces are
/// the ones this `lab down` would delete under it.
fn refuse_other_roots(lab_dir: &Path, id: &str) -> anyhow::Result<()> {
    let others = servers_of(|dir| {
        dir.file_name().and_then(|name| name.to_str()) == Some(id) && !same_dir(dir, lab_dir)
    });
    match others.first() {
        Some((Found { pid, .. }, dir)) => Err(anyhow::anyhow!(other_root_refusal(*pid, id, dir))),
        None => Ok(()),
    }
}

/// What [`refuse_other_roots`] says of server `pid` of the lab in `dir`.
fn other_root_refusal(pid: u32, id: &str, dir: &Path) -> String {
    let root = dir.parent().unwrap_or(dir);
    format!(
        "lab {id} is up under another state root ({}; process {pid} is its server): nothing was \
         taken down; run `metaboot-harness lab down --state-root {} --id {id}`",
        root.display(),
        root.display()
    )
}

/// Whether a command line is the `metaboot-server all` the lab in `lab_dir` started (its
/// `--config` is that directory's `lab-server.toml`): a lab of the same id under another
/// state root is another lab.
pub fn is_server_of(argv: &[&str], lab_dir: &Path) -> bool {
    lab_dir_of_server(argv).is_some_and(|dir| same_dir(dir, lab_dir))
}

/// The directory of the lab whose `metaboot-server all` a command line is, known by its
/// arguments (`all`, and `--config` a `lab-server.toml` in a directory named as a lab id), not
/// by the program's name: `--server-bin` (`METABOOT_SERVER_BIN`) may name any file. None for
/// any other command line.
fn lab_dir_of_server<'a>(argv: &[&'a str]) -> Option<&'a Path> {
    let args = argv.get(1..)?;
    if !args.contains(&"all") {
        return None;
    }
    let config = args
        .windows(2)
        .find(|pair| pair[0] == "--config")
        .map(|pair| Path::new(pair[1]))?;
    if config.file_name().and_then(|name| name.to_str()) != Some(SERVER_CONFIG) {
        return None;
    }
    let dir = config.parent()?;
    let id = dir.file_name()?.to_str()?;
    config::validate_id(id).ok()?;
    Some(dir)
}

/// The running servers whose lab directory `wanted` picks, each with that directory.
fn servers_of(wanted: impl Fn(&Path) -> bool) -> Vec<(Found, PathBuf)> {
    let mut found = Vec::new();
    for pid in crate::process::pids() {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline);
        let argv: Vec<&str> = text.split('\0').filter(|arg| !arg.is_empty()).collect();
        if let Some(dir) = lab_dir_of_server(&argv).filter(|dir| wanted(dir))
            && let Some(server) = Found::read(pid)
        {
            found.push((server, dir.to_owned()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_ends_of_the_bridges_veths_are_found() {
        let links = "\
7: rtr-34567c7e-f1@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master br-34567c7e-f1 state UP mode DEFAULT group default qlen 1000\\    link/ether 0e:b6:bf:6f:fa:87 brd ff:ff:ff:ff:ff:ff link-netns qrouter-80085ce6
8: rtr-78a65f7c-9f@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master br-78a65f7c-9f state UP\\    link/ether 1a:ae:92:ef:d9:03 brd ff:ff:ff:ff:ff:ff link-netns qrouter-80085ce6
10: dhc-34567c7e-f1@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master br-34567c7e-f1 state UP\\    link/ether fa:06:f8:58:80:7f brd ff:ff:ff:ff:ff:ff link-netns qdhcp-34567c7e-f1a2
12: tap-guest1@if5: <BROADCAST> mtu 1500 state DOWN\\    link/ether fa:06:f8:58:80:70 brd ff:ff:ff:ff:ff:ff link-netnsid 4
";
        assert_eq!(
            linked_namespaces(links, "metaboot-ab12"),
            ["qrouter-80085ce6", "qdhcp-34567c7e-f1a2"]
        );
        assert!(linked_namespaces("", "metaboot-ab12").is_empty());
    }

    /// Veths someone else plugged into the lab's bridges (a container's, a debug namespace)
    /// lead to namespaces the lab did not make: `lab down` without state leaves them, and so
    /// does a lab veth name into a namespace not of the lab's names, or the other way round.
    #[test]
    fn only_the_labs_own_veths_lead_to_namespaces_it_deletes() {
        let links = "\
7: rtr-34567c7e-f1@if2: <UP> mtu 1500 master br-34567c7e-f1 link-netns qrouter-80085ce6
10: dhc-34567c7e-f1@if2: <UP> mtu 1500 master br-34567c7e-f1 link-netns qdhcp-34567c7e-f1a2
13: veth1a2b3c4d@if3: <UP> mtu 1500 master br-34567c7e-f1 link-netns cni-5f3a9c2e-1b7d
14: debug0@if2: <UP> mtu 1500 master br-34567c7e-f1 link-netns debug
15: veth9@if2: <UP> mtu 1500 master br-34567c7e-f1 link-netns qdhcp-34567c7e-f1a2
16: dhc-34567c7e-f1@if4: <UP> mtu 1500 master br-34567c7e-f1 link-netns qdhcp-99999999
17: rtr-34567c7e-f1@if5: <UP> mtu 1500 master br-34567c7e-f1 link-netns cni-1
18: rtr-34567c7e-f1@if5: <UP> mtu 1500 master br-34567c7e-f1 link-netns qrouter-X/..
";
        assert_eq!(
            linked_namespaces(links, "metaboot-ab12"),
            ["qrouter-80085ce6", "qdhcp-34567c7e-f1a2"]
        );
        assert_eq!(router::NAMESPACE_PREFIX, "qrouter-");
        assert_eq!(dhcp::NAMESPACE_PREFIX, "qdhcp-");
        assert!(router::bridge_end("34567c7e-f1a2").starts_with(router::BRIDGE_END_PREFIX));
        assert!(dhcp::bridge_end("34567c7e-f1a2").starts_with(dhcp::BRIDGE_END_PREFIX));
    }

    /// The libvirt host's clients (`LibvirtHost::add_client`: namespace `metaboot-ID-NAME`
    /// joined by veth `vc-NAME`, udhcpc and curl inside) are the lab's: a `lab down --id ID`
    /// after a kill deletes them before the bridge namespace. A `vc-` veth into another lab's
    /// namespace or one not of that client's name is someone else's.
    #[test]
    fn the_libvirt_hosts_clients_are_the_labs() {
        let links = "\
21: vc-x@if2: <UP> mtu 1500 master virbr-ab12 state UP\\    link/ether 6a:1f:00:3b:5c:01 brd ff:ff:ff:ff:ff:ff link-netns metaboot-ab12-x
22: vc-probe-one-t@if2: <UP> mtu 1500 master virbr-ab12 link-netns metaboot-ab12-probe-one-two
23: vc-y@if2: <UP> mtu 1500 master virbr-ab12 link-netns metaboot-cd34-y
24: vc-z@if2: <UP> mtu 1500 master virbr-ab12 link-netns metaboot-ab12-w
25: veth0@if2: <UP> mtu 1500 master virbr-ab12 link-netns metaboot-ab12-v
26: vc-@if2: <UP> mtu 1500 master virbr-ab12 link-netns metaboot-ab12-
27: vc-x@if2: <UP> mtu 1500 master virbr-ab12 link-netns metaboot-ab12x
";
        assert_eq!(
            linked_namespaces(links, "metaboot-ab12"),
            ["metaboot-ab12-x", "metaboot-ab12-probe-one-two"]
        );
        assert_eq!(
            namespaces_to_delete("metaboot-ab12", Ok(links.to_owned()), &mut None),
            [
                "metaboot-ab12-x",
                "metaboot-ab12-probe-one-two",
                "metaboot-ab12"
            ]
        );
        assert_eq!(bridge::CLIENT_END_PREFIX, "vc-");
        assert_eq!(
            bridge::client_namespace("metaboot-ab12", "x"),
            "metaboot-ab12-x"
        );
    }

    /// A server of the lab the state does not hold (started, then the run was killed before
    /// it recorded it) is stopped by the teardown's sweep; another lab's is left alone, and so
    /// is that of a lab of the same id under another state root.
    #[test]
    fn a_labs_unrecorded_server_is_stopped() {
        /// A fake server, killed when the test ends (also when it fails).
        struct Server(std::process::Child);
        impl Drop for Server {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        // A server given by `--server-bin` under another name: known by its arguments.
        let program = dir.path().join("metaboot-server-1.3");
        std::fs::copy("/bin/sh", &program).unwrap();
        // Ids of this test run alone: random, each under a state root of its own.
        let (ours, other) = (config::random_id(), config::random_id());
        let root = dir.path().join("root");
        let other_root = dir.path().join("other-root");
        let start = |root: &Path, id: &str| {
            let config = root.join(id).join(SERVER_CONFIG);
            let child = std::process::Command::new(&program)
                // `read` (a builtin) waits on the pipe this test never writes: one process,
                // no children that would share its command line.
                .args(["-c", "read line", "all", "--config"])
                .arg(&config)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            Server(child)
        };
        let _ours = start(&root, &ours);
        let _other = start(&root, &other);
        let _same_id_elsewhere = start(&other_root, &ours);
        let running = |dir: &Path| servers_of(|found| found == dir).len();
        /// Long enough for a loaded machine to start the fake servers.
        const STARTED: std::time::Duration = std::time::Duration::from_secs(10);
        let lab_dirs = [root.join(&ours), root.join(&other), other_root.join(&ours)];
        assert!(crate::wait::wait_until(
            std::time::Instant::now() + STARTED,
            || lab_dirs.iter().all(|dir| running(dir) == 1),
        ));
        assert_eq!(stop_servers(&root.join(&ours), &ours), 1);
        assert_eq!(running(&root.join(&ours)), 0);
        assert_eq!(running(&root.join(&other)), 1);
        assert_eq!(
            running(&other_root.join(&ours)),
            1,
            "another state root's lab"
        );
    }

    /// A failure listing the bridge namespace's links is reported, and the bridge namespace
    /// stays: its links are the only way to the router and DHCP namespaces.
    #[test]
    fn the_bridge_namespace_stays_when_its_links_cannot_be_listed() {
        let mut first_error = None;
        let namespaces = namespaces_to_delete(
            "metaboot-ab12",
            Err(anyhow::anyhow!("ip -n metaboot-ab12 link failed")),
            &mut first_error,
        );
        assert!(namespaces.is_empty(), "{namespaces:?}");
        assert!(first_error.is_some_and(|e| format!("{e:#}").contains("link failed")));
        // The first error stays the first.
        let mut first_error = Some(anyhow::anyhow!("earlier"));
        namespaces_to_delete(
            "metaboot-ab12",
            Err(anyhow::anyhow!("later")),
            &mut first_error,
        );
        assert_eq!(first_error.unwrap().to_string(), "earlier");
        let links = "10: dhc-34567c7e-f1@if2: <UP> mtu 1500 link-netns qdhcp-34567c7e-f1a2\n";
        assert_eq!(
            namespaces_to_delete("metaboot-ab12", Ok(links.to_owned()), &mut None),
            ["qdhcp-34567c7e-f1a2", "metaboot-ab12"]
        );
    }

    #[test]
    fn a_labs_server_is_known_by_its_config_under_its_state_root() {
        fn server(config: &str) -> Vec<&str> {
            vec![
                "/work/target/debug/metaboot-server",
                "--db",
                "/x/registry.sqlite",
                "all",
                "--config",
                config,
            ]
        }
        let lab = Path::new("/run/metaboot-harness/labs/ab12");
        assert!(is_server_of(
            &server("/run/metaboot-harness/labs/ab12/lab-server.toml"),
            lab
        ));
        assert!(is_server_of(
            &server("/run/metaboot-harness//labs/./ab12/lab-server.toml"),
            lab
        ));
        // The same id under another state root is another lab.
        assert!(!is_server_of(
            &server("/tmp/old-root/ab12/lab-server.toml"),
            lab
        ));
        // Another lab's, another file, another program, another role.
        assert!(!is_server_of(
            &server("/run/metaboot-harness/labs/ab123/lab-server.toml"),
            lab
        ));
        let lab = Path::new("/run/labs/ab12");
        assert!(!is_server_of(&server("/run/labs/ab12/other.toml"), lab));
        // Whatever the server binary's name (`--server-bin`, METABOOT_SERVER_BIN).
        for program in ["/opt/x/metaboot-server-1.3", "server", "/usr/bin/ms"] {
            let mut renamed = server("/run/labs/ab12/lab-server.toml");
            renamed[0] = program;
            assert!(is_server_of(&renamed, lab), "{program}");
        }
        // Another program on the file, or a lab id no lab has.
        assert!(!is_server_of(
            &["vim", "/run/labs/ab12/lab-server.toml"],
            lab
        ));
        assert!(!is_server_of(
            &["all", "--config", "/run/labs/ab12/lab-server.toml"],
            lab
        ));
        let upper = Path::new("/run/labs/AB12");
        assert!(!is_server_of(
            &server("/run/labs/AB12/lab-server.toml"),
            upper
        ));
        let mut api = server("/run/labs/ab12/lab-server.toml");
        api[3] = "api";
        assert!(!is_server_of(&api, lab));
        assert!(!is_server_of(&[], lab));
        // The packaged unit's server is no lab's, whatever the lab's id.
        let installed = [
            "/usr/bin/metaboot-server",
            "all",
            "--config",
            "/etc/metaboot/metaboot.toml",
        ];
        assert!(!is_server_of(&installed, Path::new("/etc/metaboot")));
    }

    /// The same lab directory reached through a symbolic link or `..` is the same lab.
    #[test]
    fn a_lab_directory_is_the_same_by_any_path_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let lab = dir.path().join("root/ab12");
        std::fs::create_dir_all(&lab).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("root"), &link).unwrap();
        assert!(same_dir(&link.join("ab12"), &lab));
        assert!(same_dir(&dir.path().join("root/../root/ab12"), &lab));
        assert!(!same_dir(&dir.path().join("other/ab12"), &lab));
        // Gone: only the same path.
        let gone = dir.path().join("gone/ab12");
        assert!(same_dir(&gone, &gone));
        assert!(!same_dir(&dir.path().join("gone/../gone/ab12"), &gone));
    }

    #[test]
    fn the_refusal_for_another_roots_lab_says_which_root_to_give() {
        let warning = other_root_refusal(42, "ab12", Path::new("/tmp/old-root/ab12"));
        assert!(warning.contains("nothing was taken down"), "{warning}");
        assert!(warning.contains("process 42"), "{warning}");
        assert!(
            warning.contains("lab down --state-root /tmp/old-root --id ab12"),
            "{warning}"
        );
    }
}
