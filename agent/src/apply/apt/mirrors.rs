//! The mirrors a sources list is rendered with: the `primary` and `security` ones asked for
//! or the distribution's for this architecture, and the image's release.

use super::config::{Mirror, Request};
use super::distro::{Distro, dpkg_architecture};
use super::files::OS_RELEASE;
use super::template::Params;
use crate::root::Root;

/// The template parameters: `MIRROR`/`PRIMARY`, `SECURITY` (the security mirror defaults to
/// the primary, both to the distribution's: Ubuntu's on Ubuntu, else Debian's),
/// `RELEASE`/`codename` when the image names its release.
pub(super) fn mirror_params(root: &Root, request: &Request, distro: Option<Distro>) -> Params {
    let uri = |m: &Option<Mirror>| m.as_ref().and_then(|m| m.uri.clone());
    let (default_primary, default_security) = distro
        .unwrap_or(Distro::Debian)
        .mirrors(dpkg_architecture());
    let (primary, security) = match (uri(&request.primary), uri(&request.security)) {
        (Some(primary), security) => (primary.clone(), security.unwrap_or(primary)),
        (None, security) => (
            default_primary.to_owned(),
            security.unwrap_or_else(|| default_security.to_owned()),
        ),
    };
    let mut params = Params::new();
    for (name, value) in [
        ("MIRROR", &primary),
        ("PRIMARY", &primary),
        ("SECURITY", &security),
    ] {
        params.insert(name.to_owned(), value.clone());
        params.insert(name.to_ascii_lowercase(), value.clone());
    }
    if let Some(release) = release(root) {
        let suite = if ["buster", "stretch", "jessie"].contains(&release.as_str()) {
            format!("{release}/updates")
        } else {
            format!("{release}-security")
        };
        params.insert("SECURITY_SUITE".into(), suite);
        params.insert("RELEASE".into(), release.clone());
        params.insert("codename".into(), release);
    }
    params
}

/// `VERSION_CODENAME` of the image's os-release.
fn release(root: &Root) -> Option<String> {
    let text = root.read_optional_string(OS_RELEASE).ok()??;
    crate::apply::locale::shell_value(&text, "VERSION_CODENAME").filter(|name| !name.is_empty())
}
