//! `sources_list` (or the distribution's default) rendered with the mirrors, and written where
//! its format says (`/etc/apt/sources.list`, or the distribution's deb822 `.sources` file), the
//! mirrors' keys beside it and `disable_suites` commented out.

use super::applied::{Applied, AptError, put};
use super::config::Request;
use super::distro::{Distro, deb822_file};
use super::files::{SOURCES_LIST, TRUSTED_DIR};
use super::template::{self, Params};
use super::{armor, deb822};
use crate::fsutil::PathError;
use crate::root::Root;

/// Rewrites the sources list from `template`: the mirrors' keys (cloud-init 25.1: a mirror's
/// key file is the template's `primary_key`/`security_key`), then the rendered list.
pub(super) fn rewrite(
    root: &Root,
    template: &str,
    request: &Request,
    params: &Params,
    distro: &Result<Distro, String>,
    applied: &mut Applied,
) {
    let mut list_params = params.clone();
    for (file, mirror) in [
        ("primary", &request.primary),
        ("security", &request.security),
    ] {
        if let Some(key) = mirror.as_ref().and_then(|m| m.key.as_deref()) {
            match armor::dearmor(key) {
                Ok(binary) => {
                    let path = format!("{TRUSTED_DIR}/{file}.gpg");
                    if put(root, applied, &path, &binary) {
                        list_params.insert(format!("{file}_key"), path);
                    }
                }
                Err(source) => applied.errors.push(AptError::Key {
                    what: format!("the {file} mirror"),
                    source,
                }),
            }
        }
    }
    // The `Signed-By` of the distribution's deb822 sources (jinja's `default` in cloud-init's
    // templates): for metaboot's templates only, not a variable of the user's.
    if let (None, Ok(distro)) = (&request.sources_list, &distro) {
        let key = |name: &str| list_params.get(name).cloned();
        let (primary_key, security_key) = (key("primary_key"), key("security_key"));
        let signed_by = deb822::signed_by(
            distro.keyring(),
            primary_key.as_deref(),
            security_key.as_deref(),
        );
        for (name, value) in signed_by {
            list_params.insert(name.to_owned(), value);
        }
    }
    match template::render(template, &list_params) {
        Ok(rendered) => {
            write_sources_list(root, &rendered, request, params, distro, applied);
        }
        Err(source) => applied.errors.push(AptError::Template {
            what: "sources_list".into(),
            source,
        }),
    }
}

/// Writes a rendered sources list where cloud-init writes it, its `disable_suites` commented
/// out: one in deb822 format to the distribution's `.sources` file, after which the one-line
/// `/etc/apt/sources.list` steps aside (Ubuntu's note pointing to the new file in it, else
/// removed) so that apt reads no source twice; one in the one-line format to
/// `/etc/apt/sources.list`.
fn write_sources_list(
    root: &Root,
    rendered: &str,
    request: &Request,
    params: &Params,
    distro: &Result<Distro, String>,
    applied: &mut Applied,
) {
    let text = disable_suites(rendered, &request.disable_suites, params);
    if !deb822::is_deb822(rendered) {
        if let Ok(distro) = distro {
            let image_file = distro.deb822_file();
            if root.exists(&image_file) {
                applied.warnings.push(format!(
                    "apt: `sources_list` is in the one-line format: written to {SOURCES_LIST} as \
                     cloud-init writes it, beside the image's {image_file}, which is kept: apt \
                     reads both (give `sources_list` in deb822 format to replace that file)"
                ));
            }
        }
        put(root, applied, SOURCES_LIST, text.as_bytes());
        return;
    }
    let name = match distro {
        Ok(distro) => distro.name(),
        Err(id) if is_plain_name(id) => id.as_str(),
        Err(id) => {
            applied
                .errors
                .push(AptError::NoDistributionName { id: id.clone() });
            return;
        }
    };
    if !put(root, applied, &deb822_file(name), text.as_bytes()) {
        return;
    }
    if *distro == Ok(Distro::Ubuntu) {
        match root.read_optional_string(SOURCES_LIST) {
            Ok(Some(old)) if old != deb822::UBUNTU_SOURCES_LIST_NOTE => {
                put(
                    root,
                    applied,
                    SOURCES_LIST,
                    deb822::UBUNTU_SOURCES_LIST_NOTE.as_bytes(),
                );
            }
            Ok(_) => {}
            Err(err) => applied
                .errors
                .push(PathError::fail("read", SOURCES_LIST)(err).into()),
        }
        return;
    }
    match root.remove_file(SOURCES_LIST) {
        Ok(true) => applied.superseded.push(SOURCES_LIST.to_owned()),
        Ok(false) => {}
        Err(err) => applied
            .errors
            .push(PathError::fail("remove", SOURCES_LIST)(err).into()),
    }
}

/// An os-release `ID` that can name a file: lowercase letters, digits, `.`, `_`, `-`.
fn is_plain_name(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// cloud-init's `disable_suites`: each line (not a comment) whose suite is one of `suites`
/// (`updates`, `security`, `backports`, `proposed` and `release` name the release's) commented
/// out; in a deb822 text, the suites taken out of their sections ([`deb822::disable_suites`]).
pub fn disable_suites(text: &str, suites: &[String], params: &Params) -> String {
    if suites.is_empty() {
        return text.to_owned();
    }
    let release = params.get("RELEASE").map_or("", String::as_str);
    let disabled: Vec<String> = suites
        .iter()
        .map(|suite| match suite.as_str() {
            "updates" | "backports" | "security" | "proposed" => format!("{release}-{suite}"),
            "release" => release.to_owned(),
            other => other.replace("$RELEASE", release),
        })
        .collect();
    if deb822::is_deb822(text) {
        return deb822::disable_suites(text, &disabled);
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if !line.starts_with('#') && suite_of(line).is_some_and(|s| disabled.iter().any(|d| d == s))
        {
            out.push_str("# suite disabled by metaboot: ");
        }
        out.push_str(line);
    }
    out
}

/// The suite of a source line: its third column, after any `[ options ]`.
pub(super) fn suite_of(line: &str) -> Option<&str> {
    let mut columns = line.split_whitespace();
    columns.next()?;
    let mut column = columns.next()?;
    if column.starts_with('[') {
        while !column.ends_with(']') {
            column = columns.next()?;
        }
        columns.next()?;
    }
    columns.next()
}
