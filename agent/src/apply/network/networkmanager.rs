//! NetworkManager, which metaboot writes no connections for. The direct renderer's `ip`
//! commands would last until the next boot only (the step runs once per instance), and a
//! static instance would lose its network at its first reboot: so nothing is applied, and a
//! plan with static addresses or routes is an error that says what to do. A DHCP-only plan is
//! NetworkManager's own (its default connection asks DHCP on every wired link, and takes the
//! MTU and DNS servers the DHCP server gives); what the document adds to it is a warning.

use super::plan::{Applied, Plan};

/// What to do instead, in each message.
const WHAT_TO_DO: &str = "bring the image's network up with systemd-networkd or ifupdown, \
                          which metaboot writes for, or keep cloud-init, whose \
                          NetworkManager renderer writes connections";

/// Applies nothing: an error for static interfaces, a warning for the rest of the document
/// that NetworkManager's DHCP does not give.
pub fn apply(plan: &Plan, source: &str) -> Applied {
    let mut applied = Applied::default();
    let fixed: Vec<String> = plan
        .interfaces
        .iter()
        .filter(|i| i.is_static())
        .map(|i| i.label())
        .collect();
    if !fixed.is_empty() {
        applied.errors.push(format!(
            "the image uses NetworkManager, which metaboot writes no connections for: the static \
             addresses and routes of {source} ({}) are not applied (applied with ip they would \
             be lost at the first reboot); {WHAT_TO_DO}",
            fixed.join(", ")
        ));
        applied.done.push("nothing written".to_owned());
        return applied;
    }
    applied
        .done
        .push("left to NetworkManager's own configuration (DHCP)".to_owned());
    let mut left_out = Vec::new();
    if plan.interfaces.iter().any(|i| i.mtu.is_some()) {
        left_out.push("MTU");
    }
    if !plan.nameservers.is_empty() {
        left_out.push("DNS servers");
    }
    if !plan.search.is_empty() {
        left_out.push("search domains");
    }
    if !left_out.is_empty() {
        applied.warnings.push(format!(
            "the {} of {source} are not applied, only what NetworkManager's DHCP gives; \
             {WHAT_TO_DO}",
            left_out.join(", ")
        ));
    }
    applied
}
