//! The `sources` entries: each one's key dearmored (into `trusted.gpg.d`, or `cloud-init.gpg.d`
//! for a source naming it as `$KEY_FILE`), then its line rendered and added to its `.list`
//! file, or handed to `add-apt-repository`.

use super::applied::{Applied, AptError};
use super::armor;
use super::config::Source;
use super::files::{SIGNED_BY_DIR, SOURCES_DIR, TRUSTED_DIR};
use super::template::{self, Params};
use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;

/// A source matching this is for `add-apt-repository` (cloud-init's `ADD_APT_REPO_MATCH`,
/// `^[\w-]+:\w`): `ppa:owner/name`.
pub(super) fn is_repository_shorthand(source: &str) -> bool {
    let Some((scheme, rest)) = source.split_once(':') else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        && rest
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// One `sources` entry: its key, then its line (or add-apt-repository).
pub(super) fn add_source(
    root: &Root,
    source: &Source,
    params: &mut Params,
    applied: &mut Applied,
) -> Result<(), AptError> {
    let options = WriteOptions::keep_or(0o644);
    let signed_by = source
        .source
        .as_deref()
        .is_some_and(|line| line.contains("$KEY_FILE") || line.contains("${KEY_FILE}"));
    params.remove("KEY_FILE");
    if let Some(key) = &source.key {
        let binary = armor::dearmor(key).map_err(|err| AptError::Key {
            what: format!("sources: {:?}", source.name),
            source: err,
        })?;
        let dir = if signed_by {
            SIGNED_BY_DIR
        } else {
            TRUSTED_DIR
        };
        let path = format!("{dir}/{}.gpg", stem(&source.filename));
        root.write_atomic(&path, &binary, &options)?;
        applied.written.push(path.clone());
        params.insert("KEY_FILE".into(), path);
    } else if signed_by {
        return Err(AptError::NoKeyFile {
            name: source.name.clone(),
        });
    }
    let Some(line) = &source.source else {
        return Ok(());
    };
    let line = template::render(line, params).map_err(|err| AptError::Template {
        what: format!("sources: {:?}", source.name),
        source: err,
    })?;
    if is_repository_shorthand(&line) {
        if !root.is_host() {
            return Err(AptError::NotHost {
                name: source.name.clone(),
                line,
            });
        }
        root.publish();
        return match crate::apply::tool::run("add-apt-repository", &["--no-update", &line])? {
            Some(()) => {
                applied.added.push(line);
                Ok(())
            }
            None => Err(AptError::NoAddAptRepository {
                name: source.name.clone(),
                line,
            }),
        };
    }
    let mut path = if source.filename.starts_with('/') {
        source.filename.clone()
    } else {
        format!("{SOURCES_DIR}/{}", source.filename)
    };
    if !path.ends_with(".list") {
        path.push_str(".list");
    }
    let shown = root.host_path(&path);
    let (dir, name) = root.write_target(std::path::Path::new(&path))?;
    let mut text = if source.append {
        // As write_files' `append`: never through a symlink or a hard link.
        dir.read_unshared(&name)
            .map_err(PathError::fail("read", &shown))?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line);
    text.push('\n');
    dir.write_atomic_as(&name, &shown, text.as_bytes(), &options)?;
    applied.written.push(path);
    Ok(())
}

/// A file name without its directory and last extension (Python's `pathlib.Path.stem`).
pub(super) fn stem(filename: &str) -> &str {
    std::path::Path::new(filename)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or(filename)
}
