//! The failures of `disk_setup` and `fs_setup`.

use crate::apply::tool::ToolError;

/// Failures of the step.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{0}")]
    Config(String),
    #[error("{tool} is not installed: install {package}")]
    Missing {
        tool: &'static str,
        package: &'static str,
    },
    #[error(transparent)]
    Tool(#[from] ToolError),
}
