//! `apt` and `apt_pipelining` (cloud-init's cc_apt_configure and cc_apt_pipelining, per
//! instance, before `packages`): apt's sources, keys, proxies and configuration written as
//! cloud-init 22.4 writes them on the Debian family, so that the packages the user data asks
//! for come from the repositories it names.
//!
//! - `sources: {NAME: {source, key, filename, append}}`: `source` (its `$MIRROR`, `$RELEASE`,
//!   `$KEY_FILE`, … filled in, `template.rs`) appended to `/etc/apt/sources.list.d/NAME.list`;
//!   `key` (ASCII-armored) dearmored into `/etc/apt/trusted.gpg.d/NAME.gpg`, or into
//!   `/etc/apt/cloud-init.gpg.d/NAME.gpg` when the source names it as `$KEY_FILE`
//!   (`[signed-by=$KEY_FILE]`); a `ppa:…`-like source goes to `add-apt-repository`. Then
//!   `apt-get update` on the running system (once per instance, shared with `packages`).
//! - `preserve_sources_list: false` rewrites `/etc/apt/sources.list` from `sources_list` (or
//!   the distribution's default, [`Distro`]: Debian's, or Ubuntu's on Ubuntu and its
//!   derivatives; refused on another) with the `primary` and `security` mirrors for this
//!   architecture (default the distribution's);
//!   `disable_suites` comments suites out. On Ubuntu 24.04 and Debian 13 and later, or where
//!   the image already has `ubuntu.sources`/`debian.sources`, the default is written in deb822
//!   format to that file instead, and so is a deb822 `sources_list` on any release; the one-line
//!   file then steps aside, as cloud-init 24.1 and later do it (`deb822.rs`). The default keeps the image's file, as Debian's own
//!   cloud.cfg tells cloud-init (`preserve_sources_list: true`); what then does nothing is a
//!   warning (`unused_while_kept`).
//! - `proxy`/`http_proxy`, `https_proxy`, `ftp_proxy` → `90cloud-init-aptproxy`; `conf` →
//!   `94cloud-init-config` (both in `/etc/apt/apt.conf.d`).
//! - `apt_pipelining: false` or 0–5 → `90cloud-init-pipelining`; `os`, `none`, `unchanged`
//!   leave apt's default.
//!
//! Not done, each a warning: `keyid`/`keyserver` (no key server is reached: give `key`),
//! mirror `search`/`search_dns`, `debconf_selections`, `add_apt_repo_match`.
//!
//! This file runs the parts in cloud-init's order; each concern is a file of its own: the keys
//! read (`config.rs`), the distributions (`distro.rs`), the mirrors (`mirrors.rs`), the
//! sources list (`sources_list.rs`), the `sources` entries (`sources.rs`), apt's
//! configuration files (`conf.rs`), the paths (`files.rs`), the outcome (`applied.rs`).

mod applied;
pub mod armor;
mod conf;
mod config;
pub mod deb822;
mod distro;
mod files;
pub mod legacy;
mod mirrors;
mod sources;
mod sources_list;
pub mod template;

pub use applied::{Applied, AptError};
pub use conf::stale_files;
pub use config::{MAX_SOURCES, Mirror, Request, Source, request};
pub use distro::{
    DEFAULT_PRIMARY, DEFAULT_SECURITY, Distro, UBUNTU_ARCHIVE_ARCHES, UBUNTU_PORTS, UBUNTU_PRIMARY,
    UBUNTU_SECURITY, deb822_file, default_is_deb822, dpkg_architecture,
};
pub use files::{
    CONF_FILE, OS_RELEASE, PIPELINING_FILE, PROXY_FILE, SIGNED_BY_DIR, SOURCES_DIR, SOURCES_LIST,
    TRUSTED_DIR,
};
pub use sources_list::disable_suites;

use crate::root::Root;

/// Writes what `request` asks under `root`; each part is tried when one before it failed.
pub fn apply(root: &Root, request: &Request) -> Applied {
    let mut applied = Applied::default();
    let os_release = root.read_optional_string(OS_RELEASE).ok().flatten();
    let distro = os_release
        .as_deref()
        .map_or_else(|| Err(String::new()), Distro::of_os_release);
    let mut params = mirrors::mirror_params(root, request, distro.as_ref().ok().copied());
    conf::write_pipelining(root, request, &mut applied);
    // The default sources are the distribution's, in the format its cloud-init writes them in
    // on this release; on another distribution, the rewrite is refused.
    let default_deb822 =
        |distro: Distro| default_is_deb822(root, distro, os_release.as_deref().unwrap_or_default());
    let template = match (request.rewrite_sources_list, &request.sources_list, &distro) {
        (false, ..) => None,
        (true, Some(template), _) => Some(template.as_str()),
        (true, None, Ok(distro)) => Some(distro.template(default_deb822(*distro))),
        (true, None, Err(id)) => {
            applied
                .errors
                .push(AptError::NoDefaultSources { id: id.clone() });
            None
        }
    };
    if let Some(template) = template {
        sources_list::rewrite(root, template, request, &params, &distro, &mut applied);
    }
    conf::write_proxy_and_conf(root, request, &mut applied);
    for source in request.sources.iter().flatten() {
        if let Err(err) = sources::add_source(root, source, &mut params, &mut applied) {
            applied.errors.push(err);
        }
    }
    applied.refresh = request.sources.is_some();
    applied
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_deb822;
