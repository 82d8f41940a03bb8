//! What an `apt` run did ([`Applied`]) and why a part of it was not done ([`AptError`]): each
//! file written or removed noted, each failure kept while the other parts are tried.

use super::{armor, template::TemplateError};
use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;

/// Why an `apt` request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error("{what}: {source}")]
    Template {
        what: String,
        #[source]
        source: TemplateError,
    },
    #[error("the key of {what}: {source}")]
    Key {
        what: String,
        #[source]
        source: armor::ArmorError,
    },
    #[error(
        "sources_list: not rewritten: metaboot knows the default sources of Debian and Ubuntu, \
         and this image's os-release ID is {id:?}: give the file as `sources_list`, or keep the \
         image's with `preserve_sources_list: true`"
    )]
    NoDefaultSources { id: String },
    #[error(
        "sources_list: in deb822 format, it goes to /etc/apt/sources.list.d/<distribution>.sources, \
         and this image's os-release ID {id:?} names none: give `sources_list` in the one-line \
         format (`deb URI SUITE COMPONENTS`)"
    )]
    NoDistributionName { id: String },
    #[error("sources: {name:?} uses $KEY_FILE but gives no `key`")]
    NoKeyFile { name: String },
    #[error("sources: {name:?}: {line:?} is for add-apt-repository, which is not installed here")]
    NoAddAptRepository { name: String, line: String },
    #[error("sources: {name:?}: {line:?} needs add-apt-repository on the running system")]
    NotHost { name: String, line: String },
    #[error(transparent)]
    Tool(#[from] crate::apply::tool::ToolError),
    #[error(transparent)]
    Io(#[from] PathError),
}

/// What was written.
#[derive(Debug, Default)]
pub struct Applied {
    /// Files written, in order.
    pub written: Vec<String>,
    /// Files of an earlier run removed (a proxy or configuration no longer asked for).
    pub removed: Vec<String>,
    /// The image's one-line sources list removed, its sources being in the deb822 file written
    /// in its place (as cloud-init does off Ubuntu).
    pub superseded: Vec<String>,
    /// Sources handed to add-apt-repository.
    pub added: Vec<String>,
    /// What was done as cloud-init does it but may not be what the user meant.
    pub warnings: Vec<String>,
    /// `sources` was given: the package lists are to be refreshed.
    pub refresh: bool,
    pub errors: Vec<AptError>,
}

/// Removes `path` when it is there.
pub(super) fn remove(root: &Root, applied: &mut Applied, path: &str) {
    match root.remove_file(path) {
        Ok(true) => applied.removed.push(path.to_owned()),
        Ok(false) => {}
        Err(err) => applied
            .errors
            .push(PathError::fail("remove", path)(err).into()),
    }
}

/// Writes `path` (mode 0644 when new); true when written, else the error is noted.
pub(super) fn put(root: &Root, applied: &mut Applied, path: &str, contents: &[u8]) -> bool {
    match root.write_atomic(path, contents, &WriteOptions::keep_or(0o644)) {
        Ok(()) => {
            applied.written.push(path.to_owned());
            true
        }
        Err(err) => {
            applied.errors.push(err.into());
            false
        }
    }
}
