//! apt's configuration files: `apt_pipelining`'s depth, the `proxy` lines and `conf`
//! (`/etc/apt/apt.conf.d`), a proxy or a configuration no longer asked for removed.

use super::applied::{Applied, put, remove};
use super::config::Request;
use super::files::{CONF_FILE, PIPELINING_FILE, PROXY_FILE};
use crate::root::Root;

/// The proxy and configuration files an earlier run (metaboot's or cloud-init's) left.
pub fn stale_files(root: &Root) -> bool {
    root.exists(PROXY_FILE) || root.exists(CONF_FILE)
}

/// Writes `apt_pipelining`'s depth, when it sets one.
pub(super) fn write_pipelining(root: &Root, request: &Request, applied: &mut Applied) {
    if let Some(depth) = request.pipeline_depth {
        let text = format!(
            "//Written by metaboot per 'apt_pipelining'\nAcquire::http::Pipeline-Depth \"{depth}\";\n"
        );
        put(root, applied, PIPELINING_FILE, text.as_bytes());
    }
}

/// Writes the proxy lines and `conf`, each file removed when not asked for.
pub(super) fn write_proxy_and_conf(root: &Root, request: &Request, applied: &mut Applied) {
    // A proxy or a configuration no longer asked for (an image made with a build proxy) is
    // removed, as cloud-init removes them: apt must not keep going through it.
    if request.proxies.is_empty() {
        remove(root, applied, PROXY_FILE);
    } else {
        let text = request.proxies.join("\n") + "\n";
        put(root, applied, PROXY_FILE, text.as_bytes());
    }
    match request.conf.as_deref().filter(|conf| !conf.is_empty()) {
        Some(conf) => {
            put(root, applied, CONF_FILE, conf.as_bytes());
        }
        None => remove(root, applied, CONF_FILE),
    }
}
