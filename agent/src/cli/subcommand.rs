//! The subcommands by name, for the parser and the help texts.

/// A subcommand of `metaboot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sub {
    Run,
    Status,
    Query,
    Local,
    Clean,
}

impl Sub {
    /// The subcommand called `name`.
    pub(super) fn from_name(name: &str) -> Option<Self> {
        match name {
            "run" => Some(Sub::Run),
            "status" => Some(Sub::Status),
            "query" => Some(Sub::Query),
            "local" => Some(Sub::Local),
            "clean" => Some(Sub::Clean),
            _ => None,
        }
    }
}
