//! The metadata agent (the role of neutron-metadata-agent).

use clap::Args;

#[derive(Debug, Args)]
pub struct AgentArgs {}

pub fn serve(_args: AgentArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
