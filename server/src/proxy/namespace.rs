//! The named network namespace a standalone `ns-proxy --netns NAME` serves, followed: Neutron
//! deletes a router's or network's namespace and makes it again (a router rescheduled, a DHCP
//! resync, `neutron-netns-cleanup`), and a proxy whose listeners stayed in the old one would
//! answer nobody (and keep the old namespace, its interfaces and addresses alive) while its
//! service manager sees it running. The proxy checks every [`NAMESPACE_CHECK_INTERVAL`] that
//! `/run/netns/NAME` still names the namespace it bound in; when it does not, its listeners
//! are closed and bound again in the namespace the name names next, once there is one
//! (`addresses.rs`).

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use crate::http::listen::netns_path;

/// How often a proxy checks that its namespace's name still names the namespace its listeners
/// are in, and while the name names none, whether it does again.
pub const NAMESPACE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How often a proxy whose name names no namespace (or one it cannot listen in yet) says so
/// again while that lasts: its unit looks healthy, the log says why it answers nobody.
pub const WAITING_LOG_INTERVAL: Duration = Duration::from_secs(300);

/// Which namespace a name names: the device and inode of `/run/netns/NAME` (a namespace's
/// bind mount: its nsfs inode), `None` while the name names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity(Option<(u64, u64)>);

impl Identity {
    /// What `name` names now.
    pub fn of(name: &str) -> io::Result<Identity> {
        match std::fs::metadata(netns_path(name)?) {
            Ok(meta) => Ok(Identity(Some((meta.dev(), meta.ino())))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Identity(None)),
            Err(err) => Err(err),
        }
    }

    /// Whether the name names a namespace.
    pub fn exists(self) -> bool {
        self.0.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_names_no_namespace_has_no_identity() {
        let identity = Identity::of("metaboot-test-no-such-namespace").unwrap();
        assert!(!identity.exists());
        assert!(Identity::of("../etc").is_err());
    }
}
