//! The metadata REST API (the role of nova-api-metadata).

use clap::Args;

#[derive(Debug, Args)]
pub struct ApiArgs {}

pub fn serve(_db: &str, _args: ApiArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
