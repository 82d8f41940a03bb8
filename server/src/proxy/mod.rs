//! The namespace proxy (the role of neutron-ns-metadata-proxy / haproxy).

use clap::Args;

#[derive(Debug, Args)]
pub struct ProxyArgs {}

pub fn serve(_args: ProxyArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
