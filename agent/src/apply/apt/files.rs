//! The files apt reads that `apt` and `apt_pipelining` write, where cloud-init writes them.

/// apt's file of the system's sources.
pub const SOURCES_LIST: &str = "/etc/apt/sources.list";
/// Where a source named by a relative `filename` goes.
pub const SOURCES_DIR: &str = "/etc/apt/sources.list.d";
/// Keys every source is checked against.
pub const TRUSTED_DIR: &str = "/etc/apt/trusted.gpg.d";
/// Keys only the sources naming them (`signed-by`) are checked against.
pub const SIGNED_BY_DIR: &str = "/etc/apt/cloud-init.gpg.d";
/// cloud-init's files for `proxy` and `conf`, and for `apt_pipelining`.
pub const PROXY_FILE: &str = "/etc/apt/apt.conf.d/90cloud-init-aptproxy";
pub const CONF_FILE: &str = "/etc/apt/apt.conf.d/94cloud-init-config";
pub const PIPELINING_FILE: &str = "/etc/apt/apt.conf.d/90cloud-init-pipelining";
/// The image's release (`VERSION_CODENAME`).
pub const OS_RELEASE: &str = "/etc/os-release";
