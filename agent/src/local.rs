//! `metaboot local`: what must happen before the network starts, with no network
//! (metaboot-local.service, before `network-pre.target` as cloud-init-local.service; its
//! ordering and how it differs from cloud-init's: agent/README.md, "Installing into an
//! image"): setting aside an ifupdown
//! file written for the NICs of another instance (`apply/network/stale.rs`). One line on
//! standard error when it does; nothing otherwise.

use crate::apply::network::{
    IFUPDOWN_FILE, NicNow, SET_ASIDE, Stale, set_aside_stale, udev_settle,
};
use crate::cli::LocalArgs;
use crate::log::chain;
use crate::root::Root;

/// The semaphore of the current instance's `network` step (`state/semaphore.rs`): without
/// it, the next run writes the network configuration again.
const NETWORK_SEMAPHORE: &str = "/var/lib/metaboot/instance/sem/config_network";

/// What `metaboot local` says when it set the file written for `name` (with MAC `mac`) aside:
/// where that MAC is now, and how to have the file written again for the NICs as named now.
fn set_aside_message(name: &str, mac: &str, nic: &NicNow) -> String {
    let rewrite = format!(
        "; to have metaboot write the file for these names, remove {NETWORK_SEMAPHORE} and run \
         `metaboot run --stage init && metaboot run --stage final`"
    );
    let (now, then) = match nic {
        NicNow::Gone => (
            "which no interface of this system has (an image made from another instance)"
                .to_owned(),
            " until metaboot writes this instance's".to_owned(),
        ),
        NicNow::Swapped { holder } => (
            format!(
                "which is {holder}'s now ({name} is another NIC: the NICs are named otherwise \
                 than when it was written)"
            ),
            rewrite,
        ),
        NicNow::Renamed { holder } => (
            format!(
                "which is {holder}'s now (no interface is {name}: the NICs are named otherwise \
                 than when it was written, and its stanzas would configure nothing)"
            ),
            rewrite,
        ),
    };
    format!(
        "metaboot local: {IFUPDOWN_FILE} was written for {name} with MAC {mac}, {now}: set aside \
         as {SET_ASIDE}, the image's own network configuration applies{then}"
    )
}

/// Runs `metaboot local`; 0 when the file is kept, set aside or absent, 1 when it could not be
/// read or moved.
pub fn main(args: &LocalArgs) -> u8 {
    let root = match Root::open(&args.root) {
        Ok(root) => root,
        Err(err) => {
            eprintln!(
                "metaboot local: failed to open the root {}: {err}",
                args.root.display()
            );
            return 1;
        }
    };
    let mut settle = udev_settle;
    let settle: Option<&mut dyn FnMut()> = root.is_host().then_some(&mut settle);
    match set_aside_stale(&root, settle) {
        Ok(Stale::SetAside { name, mac, nic }) => {
            eprintln!("{}", set_aside_message(&name, &mac, &nic));
            0
        }
        Ok(Stale::NoFile | Stale::Unrecorded | Stale::Current) => 0,
        Err(err) => {
            eprintln!(
                "metaboot local: {}: if it was written for another instance, move it out of \
                 /etc/network/interfaces.d by hand (its addresses would come up on this \
                 instance's NICs)",
                chain(&err)
            );
            1
        }
    }
}
