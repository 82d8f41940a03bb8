//! `disable_ec2_metadata: true` (cloud-init's `cc_disable_ec2_metadata`, every boot): once
//! metaboot has what it needs from the metadata service, the running system's route to it is
//! made a prohibited one, so that no process of the guest (a user's script, a compromised
//! service) reads the instance's metadata and user data afterwards. As cloud-init: `ip route …
//! prohibit 169.254.169.254`, or without `ip` `route add -host 169.254.169.254 reject`. The
//! route lives until the next boot, whose run reads the metadata before it is added again;
//! `replace` instead of cloud-init's `add` lets a second run of the same boot succeed.

use crate::apply::tool::{self, ToolError};

/// The metadata service's address.
pub const METADATA_ADDRESS: &str = "169.254.169.254";

/// The commands tried in order (cloud-init's, `add` → `replace` for `ip`).
pub const REJECT_COMMANDS: [(&str, &[&str]); 2] = [
    ("ip", &["route", "replace", "prohibit", METADATA_ADDRESS]),
    ("route", &["add", "-host", METADATA_ADDRESS, "reject"]),
];

/// Failures blocking the route.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("neither ip nor route is installed: the metadata service stays reachable")]
    NoTool,
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// Blocks the route on the running system; returns the command that did it.
pub fn block() -> Result<String, BlockError> {
    for (tool, args) in REJECT_COMMANDS {
        if tool::run(tool, args)?.is_some() {
            return Ok(std::iter::once(tool)
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join(" "));
        }
    }
    Err(BlockError::NoTool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_block_the_metadata_address_as_cloud_init_does() {
        assert_eq!(REJECT_COMMANDS[0].0, "ip");
        assert_eq!(
            REJECT_COMMANDS[0].1,
            ["route", "replace", "prohibit", "169.254.169.254"]
        );
        assert_eq!(
            REJECT_COMMANDS[1].1,
            ["add", "-host", "169.254.169.254", "reject"]
        );
    }
}
