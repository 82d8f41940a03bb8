//! The real baselines, on loopback in a temp dir, each in its own process group: nginx serving
//! the chain's own `meta_data.json` bytes as a static file (TCP and a Unix socket), haproxy
//! configured as Neutron configures it (docs/protocol.md §3) in front of that static file on a
//! Unix socket, and a 3-hop chain of the same shape as metaboot's: Neutron's haproxy → nginx on
//! a Unix socket (keep-alive upstream) → nginx static.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use metaboot_harness::chain::{Server, free_port};

/// nginx's binary.
pub const NGINX_BIN: &str = "nginx";
/// haproxy's binary.
pub const HAPROXY_BIN: &str = "haproxy";
/// The path every target is loaded on.
pub const META_DATA_PATH: &str = "/openstack/latest/meta_data.json";
/// The router id the baseline haproxys put in `X-Neutron-Router-ID`.
pub const BASELINE_ROUTER_ID: &str = "00000000-0000-4000-8000-0000000000be";

/// The baselines, running.
#[derive(Debug)]
pub struct Baselines {
    /// nginx static file on TCP (and on `static.sock`).
    pub nginx_addr: SocketAddr,
    /// Neutron's haproxy → nginx static on a Unix socket.
    pub haproxy_addr: SocketAddr,
    /// Neutron's haproxy → nginx on a Unix socket → nginx static on TCP.
    pub three_hop_addr: SocketAddr,
    servers: Vec<Server>,
}

/// nginx's configuration: `body` inside `http {}`; paths under `dir`, no access log, workers
/// as root (the temp dir is private to root), one worker per core as Debian ships it.
pub fn nginx_config(dir: &Path, name: &str, body: &str) -> String {
    let d = dir.display();
    format!(
        "user root;\n\
         worker_processes auto;\n\
         daemon off;\n\
         pid {d}/{name}.pid;\n\
         error_log {d}/{name}.error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   default_type application/json;\n\
         \x20   client_body_temp_path {d}/{name}-body;\n\
         \x20   proxy_temp_path {d}/{name}-proxy;\n\
         \x20   fastcgi_temp_path {d}/{name}-fastcgi;\n\
         \x20   uwsgi_temp_path {d}/{name}-uwsgi;\n\
         \x20   scgi_temp_path {d}/{name}-scgi;\n\
         {body}\
         }}\n"
    )
}

/// haproxy's configuration as Neutron renders it for a router (docs/protocol.md §3), listening on
/// `listen` and forwarding over the Unix socket `socket`. Left out: `log` lines (no syslog
/// here; they only add a failing send per request), `user`/`group` (we are root) and
/// `daemon` (the bench keeps it in the foreground, in its process group).
pub fn neutron_haproxy_config(listen: SocketAddr, socket: &Path, pidfile: &Path) -> String {
    format!(
        "global\n\
         \x20   maxconn 1024\n\
         \x20   nbthread 2\n\
         \x20   pidfile {pid}\n\
         \n\
         defaults\n\
         \x20   mode http\n\
         \x20   option http-server-close\n\
         \x20   option forwardfor\n\
         \x20   retries 3\n\
         \x20   timeout http-request 30s\n\
         \x20   timeout connect 30s\n\
         \x20   timeout client 32s\n\
         \x20   timeout server 32s\n\
         \x20   timeout http-keep-alive 30s\n\
         \n\
         listen listener\n\
         \x20   bind {listen}\n\
         \x20   server metadata {socket}\n\
         \x20   http-request del-header X-Neutron-Network-ID\n\
         \x20   http-request set-header X-Neutron-Router-ID {BASELINE_ROUTER_ID}\n",
        pid = pidfile.display(),
        socket = socket.display(),
    )
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

fn nginx(dir: &Path, name: &str, body: &str) -> anyhow::Result<Server> {
    let conf = dir.join(format!("{name}.conf"));
    write(&conf, &nginx_config(dir, name, body))?;
    let mut cmd = Command::new(which(NGINX_BIN));
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join(format!("{name}.error.log")))
        .arg("-c")
        .arg(conf);
    Server::spawn(name, &mut cmd, dir)
}

fn haproxy(dir: &Path, name: &str, listen: SocketAddr, socket: &Path) -> anyhow::Result<Server> {
    let conf = dir.join(format!("{name}.cfg"));
    write(
        &conf,
        &neutron_haproxy_config(listen, socket, &dir.join(format!("{name}.pid"))),
    )?;
    let mut cmd = Command::new(which(HAPROXY_BIN));
    cmd.args(["-db", "-f"]).arg(conf);
    Server::spawn(name, &mut cmd, dir)
}

/// The tool's path: root's tools live in sbin, which a non-login PATH may lack.
pub fn which(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(tool))
}

impl Baselines {
    /// Writes `meta_data` as the static file and starts every baseline under `dir`.
    pub fn start(dir: &Path, meta_data: &[u8]) -> anyhow::Result<Self> {
        let www = dir.join("www");
        let file = www.join(META_DATA_PATH.trim_start_matches('/'));
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create {}", parent.display()))?;
        }
        std::fs::write(&file, meta_data)
            .with_context(|| format!("failed to write {}", file.display()))?;
        let static_sock = dir.join("static.sock");
        let hop_sock = dir.join("hop.sock");
        let nginx_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let haproxy_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let three_hop_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut servers = Vec::new();

        let mut origin = nginx(
            dir,
            "nginx-static",
            &format!(
                "    server {{\n        listen {nginx_addr};\n        listen unix:{sock};\n        root {www};\n    }}\n",
                sock = static_sock.display(),
                www = www.display()
            ),
        )?;
        origin.wait_ready(|| {
            TcpStream::connect(nginx_addr).is_ok() && UnixStream::connect(&static_sock).is_ok()
        })?;
        servers.push(origin);

        let mut hop = nginx(
            dir,
            "nginx-hop",
            &format!(
                "    upstream origin {{\n        server {nginx_addr};\n        keepalive 64;\n    }}\n\
                 \x20   server {{\n        listen unix:{sock};\n        location / {{\n\
                 \x20           proxy_pass http://origin;\n            proxy_http_version 1.1;\n\
                 \x20           proxy_set_header Connection \"\";\n        }}\n    }}\n",
                sock = hop_sock.display()
            ),
        )?;
        hop.wait_ready(|| UnixStream::connect(&hop_sock).is_ok())?;
        servers.push(hop);

        let mut neutron = haproxy(dir, "haproxy-neutron", haproxy_addr, &static_sock)?;
        neutron.wait_ready(|| TcpStream::connect(haproxy_addr).is_ok())?;
        servers.push(neutron);

        let mut front = haproxy(dir, "haproxy-3hop", three_hop_addr, &hop_sock)?;
        front.wait_ready(|| TcpStream::connect(three_hop_addr).is_ok())?;
        servers.push(front);

        Ok(Self {
            nginx_addr,
            haproxy_addr,
            three_hop_addr,
            servers,
        })
    }

    /// The process group of a baseline server by name (`nginx-static`, `nginx-hop`,
    /// `haproxy-neutron`, `haproxy-3hop`): its leader's PID.
    pub fn group(&self, name: &str) -> Option<u32> {
        self.servers
            .iter()
            .find(|s| s.name == name)
            .map(Server::pid)
    }
}

/// nginx serving fixed documents at exactly their paths on loopback: the boot storm's
/// baseline (the same bytes the guests get from metaboot, no lookup, no signature).
#[derive(Debug)]
pub struct StaticSite {
    /// Where it listens.
    pub addr: SocketAddr,
    /// nginx.
    pub server: Server,
}

/// Accept backlog of the storm's nginx (nginx's default is 511; metaboot listens with 4096,
/// so the baseline gets the same room for a thousand simultaneous connects).
pub const STATIC_SITE_BACKLOG: u32 = 4096;
/// The storm's nginx also accepts a connection only once its client has spoken (`deferred`,
/// `TCP_DEFER_ACCEPT`), as metaboot's listeners do (`server/src/http/listen.rs`), and then
/// reads the request at once: the storm compares the servers, not their listener options.
const STATIC_SITE_LISTEN_OPTIONS: &str = "deferred";

/// The `server {}` block of [`StaticSite`]: `paths[i]` answers with the file `doc-i` of
/// `site` (try_files, not alias: a path ending in '/' would be taken as a directory).
pub fn static_site_server(addr: SocketAddr, site: &Path, paths: &[&str]) -> String {
    let mut text = format!(
        "    server {{\n        listen {addr} backlog={STATIC_SITE_BACKLOG} {STATIC_SITE_LISTEN_OPTIONS};\n"
    );
    for (index, path) in paths.iter().enumerate() {
        text.push_str(&format!(
            "        location = {path} {{ root {}; try_files /doc-{index} =404; }}\n",
            site.display()
        ));
    }
    text.push_str("    }\n");
    text
}

impl StaticSite {
    /// Writes `documents` (path, bytes) under `dir` and starts nginx serving them.
    pub fn start(dir: &Path, documents: &[(String, Vec<u8>)]) -> anyhow::Result<Self> {
        let site = dir.join("site");
        std::fs::create_dir_all(&site)
            .with_context(|| format!("failed to create {}", site.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut paths = Vec::new();
        for (index, (path, bytes)) in documents.iter().enumerate() {
            let file = site.join(format!("doc-{index}"));
            std::fs::write(&file, bytes)
                .with_context(|| format!("failed to write {}", file.display()))?;
            paths.push(path.as_str());
        }
        let mut server = nginx(dir, "nginx-storm", &static_site_server(addr, &site, &paths))?;
        server.wait_ready(|| TcpStream::connect(addr).is_ok())?;
        Ok(Self { addr, server })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_config_is_neutrons() {
        let text = neutron_haproxy_config(
            "127.0.0.1:9697".parse().unwrap(),
            Path::new("/tmp/x/agent.sock"),
            Path::new("/tmp/x/h.pid"),
        );
        for line in [
            "maxconn 1024",
            "nbthread 2",
            "option http-server-close",
            "option forwardfor",
            "timeout http-keep-alive 30s",
            "bind 127.0.0.1:9697",
            "server metadata /tmp/x/agent.sock",
            "http-request del-header X-Neutron-Network-ID",
            "http-request set-header X-Neutron-Router-ID",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }

    #[test]
    fn the_static_site_serves_each_path_from_its_file() {
        let text = static_site_server(
            "127.0.0.1:8080".parse().unwrap(),
            Path::new("/s"),
            &["/openstack", "/latest/meta-data/"],
        );
        assert!(
            text.contains("listen 127.0.0.1:8080 backlog=4096 deferred;"),
            "{text}"
        );
        assert!(
            text.contains("location = /openstack { root /s; try_files /doc-0 =404; }"),
            "{text}"
        );
        assert!(
            text.contains("location = /latest/meta-data/ { root /s; try_files /doc-1 =404; }"),
            "{text}"
        );
    }

    #[test]
    fn nginx_config_keeps_everything_in_its_dir() {
        let text = nginx_config(Path::new("/tmp/b"), "n", "    server {}\n");
        assert!(text.contains("pid /tmp/b/n.pid;"));
        assert!(text.contains("access_log off;"));
        assert!(text.contains("client_body_temp_path /tmp/b/n-body;"));
        assert!(text.trim_end().ends_with("    server {}\n}"));
    }
}
