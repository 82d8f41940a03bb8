//! The ifupdown file of the instance an image was made from, found before the network starts
//! (`metaboot local`, run by metaboot-local.service before `network-pre.target`, as
//! cloud-init-local.service runs). ifupdown names interfaces (`iface ens3 inet static`), so an
//! image made from an instance (a snapshot, Packer) would bring that instance's static
//! addresses up on the next instance's NIC of the same name, before metaboot.service can ask
//! the metadata service for the new ones (which those addresses may keep it from reaching). The
//! file records the MAC each interface's stanzas were written for (`ifupdown::MAC_COMMENT`);
//! when one of them is on no interface of the system, or is on an interface of another name
//! (the NICs named otherwise: the stanzas would come up on the wrong NIC, or, their name being
//! no interface's, configure nothing while the NIC gets no configuration), the file is moved
//! out of `interfaces.d`, and the image's own configuration (DHCP) brings the network up. A file that
//! records no MAC (an older metaboot's) is left as it is. systemd-networkd files need none of
//! this: they match their link by `MACAddress=`.

use std::process::Command;

use super::ifupdown::{FILE, recorded_macs};
use super::links::system_links;
use super::plan::normal_mac;
use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;

/// Where the file is set aside: under metaboot's state, outside `interfaces.d`, which Debian's
/// `/etc/network/interfaces` reads whole (`source /etc/network/interfaces.d/*`).
pub const SET_ASIDE: &str = "/var/lib/metaboot/50-metaboot.set-aside";
/// Longest wait for udev to name the NICs (`udevadm settle --timeout`) when a MAC the file
/// records is missing: the NIC's driver may still be loading (cloud-init settles udev too
/// before it gives up on a MAC).
pub const UDEV_SETTLE_TIMEOUT_SECS: u32 = 10;

/// What was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// No file.
    NoFile,
    /// A file that records no MAC (written by an older metaboot): left as it is.
    Unrecorded,
    /// Every MAC the file records is on an interface of the system: kept.
    Current,
    /// The file was set aside: the stanzas of `name` were written for the NIC with `mac`,
    /// which is not `name` now (`nic`).
    SetAside {
        name: String,
        mac: String,
        nic: NicNow,
    },
}

/// Where the NIC that stanzas were written for is now, when it is not under their name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicNow {
    /// No interface has its MAC (an image made from another instance).
    Gone,
    /// `holder` has its MAC, and the stanzas' name is another NIC's (NICs named otherwise
    /// than when the file was written: a NIC hot-added before a reboot takes `eth0` with
    /// `net.ifnames=0`): the stanzas for one NIC would come up on another.
    Swapped { holder: String },
    /// `holder` has its MAC, and no interface has the stanzas' name (NICs named otherwise:
    /// `net.ifnames` turned on or off, another PCI slot): the stanzas would configure
    /// nothing, and the NIC would get no configuration.
    Renamed { holder: String },
}

/// The arguments of `udevadm` that wait for udev's queue, at most
/// [`UDEV_SETTLE_TIMEOUT_SECS`].
pub fn settle_args() -> [String; 2] {
    [
        "settle".to_owned(),
        format!("--timeout={UDEV_SETTLE_TIMEOUT_SECS}"),
    ]
}

/// Waits for udev (`udevadm settle`); a system without udevadm has nothing to wait for.
pub fn udev_settle() {
    let _ = Command::new("udevadm").args(settle_args()).status();
}

/// Sets the file aside when a MAC it records is on no interface of the system (under the
/// root's `/sys/class/net`), or on an interface of another name than the recorded one
/// ([`NicNow`]). `settle` waits for udev (which may still be loading a driver or renaming a
/// NIC) before the system's interfaces are read again, once, when one of those is found
/// (`None`: no waiting, a root other than `/`).
pub fn set_aside_stale(root: &Root, settle: Option<&mut dyn FnMut()>) -> Result<Stale, PathError> {
    let shown = root.host_path(FILE);
    let Some(bytes) = root
        .read_optional(FILE)
        .map_err(PathError::fail("read", &shown))?
    else {
        return Ok(Stale::NoFile);
    };
    let recorded = recorded_macs(&String::from_utf8_lossy(&bytes));
    if recorded.is_empty() {
        return Ok(Stale::Unrecorded);
    }
    let mismatch = || {
        let links = system_links(root);
        recorded.iter().find_map(|(name, mac)| {
            let holder = links
                .iter()
                .find(|(_, address)| normal_mac(address) == *mac)
                .map(|(holder, _)| holder);
            let nic = match holder {
                None => NicNow::Gone,
                Some(holder) if holder == name => return None,
                // The NIC is there under another name.
                Some(holder) if links.iter().any(|(n, _)| n == name) => NicNow::Swapped {
                    holder: holder.clone(),
                },
                Some(holder) => NicNow::Renamed {
                    holder: holder.clone(),
                },
            };
            Some((name.clone(), mac.clone(), nic))
        })
    };
    let mut found = mismatch();
    if found.is_some()
        && let Some(settle) = settle
    {
        settle();
        found = mismatch();
    }
    let Some((name, mac, nic)) = found else {
        return Ok(Stale::Current);
    };
    root.write_atomic(SET_ASIDE, &bytes, &WriteOptions::keep_or(0o644))?;
    root.remove_file(FILE)
        .map_err(PathError::fail("remove", &shown))?;
    Ok(Stale::SetAside { name, mac, nic })
}
