//! The OpenStack tree (docs/protocol.md §1.3, §1.4): `/openstack`, `/openstack/<version>` and its
//! files.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::StatusCode;
use metaboot_proto::{MetaData, OpenStackVersion};

use super::path::Segment;
use super::rendering::Rendering;
use super::tree::listing;
use super::view::{InstanceView, MetaDataDoc};
use crate::http::Answer;
use crate::http::response::{APPLICATION_JSON, TEXT_PLAIN};

pub const META_DATA: &str = "meta_data.json";
pub const USER_DATA: &str = "user_data";
pub const PASSWORD: &str = "password";
pub const VENDOR_DATA: &str = "vendor_data.json";
pub const NETWORK_DATA: &str = "network_data.json";
pub const VENDOR_DATA2: &str = "vendor_data2.json";
/// The name nova routes `/openstack/<v>` to (`base.py`, `VERSION`): `/openstack/<v>/version`
/// answers the same listing.
pub const VERSION: &str = "version";

/// What a path under `/openstack` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `/openstack`: the version list.
    Versions,
    /// `/openstack/<v>` and `/openstack/<v>/version`: the files of a version.
    Version(OpenStackVersion),
    MetaData(OpenStackVersion),
    UserData,
    Password,
    VendorData,
    NetworkData,
    VendorData2,
}

/// Routes the segments after `openstack`; `None` is 404 (unknown version, unknown file, file
/// newer than the version — except `network_data.json` —, `/openstack/content` — metaboot
/// injects no files).
pub fn route(rest: &[Segment<'_>]) -> Option<Target> {
    let Some((version, file)) = rest.split_first() else {
        return Some(Target::Versions);
    };
    let version = OpenStackVersion::parse(version)?;
    let file = match file {
        [] => return Some(Target::Version(version)),
        [file] => &**file,
        _ => return None,
    };
    use OpenStackVersion as V;
    match file {
        VERSION => Some(Target::Version(version)),
        META_DATA => Some(Target::MetaData(version)),
        USER_DATA => Some(Target::UserData),
        PASSWORD if version >= V::Grizzly => Some(Target::Password),
        VENDOR_DATA if version >= V::Havana => Some(Target::VendorData),
        // Listed from 2015-10-15 on but served under every version: nova's `_network_data`
        // has no version check (docs/protocol.md §1.3).
        NETWORK_DATA => Some(Target::NetworkData),
        VENDOR_DATA2 if version >= V::NewtonTwo => Some(Target::VendorData2),
        _ => None,
    }
}

/// The files of a version, in nova's order; `user_data` only when the instance has some.
pub fn version_listing(version: OpenStackVersion, has_user_data: bool) -> Bytes {
    use OpenStackVersion as V;
    let mut files = vec![META_DATA];
    if has_user_data {
        files.push(USER_DATA);
    }
    if version >= V::Grizzly {
        files.push(PASSWORD);
    }
    if version >= V::Havana {
        files.push(VENDOR_DATA);
    }
    if version >= V::Liberty {
        files.push(NETWORK_DATA);
    }
    if version >= V::NewtonTwo {
        files.push(VENDOR_DATA2);
    }
    listing(&files)
}

/// Answers a GET of a file (not the password, which has its own handler).
pub fn answer(target: Target, view: &InstanceView, rendering: &Rendering) -> Answer {
    match target {
        Target::Versions => Answer::text(Bytes::from(OpenStackVersion::listing(&today_utc()))),
        Target::Version(version) => {
            Answer::text(version_listing(version, view.user_data().is_some()))
        }
        Target::MetaData(version) => Answer::ok(
            APPLICATION_JSON,
            view.meta_data(version, || render_meta_data(view, version, rendering)),
        ),
        Target::UserData => match view.user_data() {
            Some(data) => Answer::ok(TEXT_PLAIN, data.clone()),
            None => Answer::refuse(StatusCode::NOT_FOUND, "the instance has no user data"),
        },
        Target::VendorData => Answer::ok(APPLICATION_JSON, rendering.vendor.vendor_data.clone()),
        Target::VendorData2 => Answer::ok(APPLICATION_JSON, rendering.vendor.vendor_data2.clone()),
        // Nova serves network_data.json as text/plain although the body is JSON
        // (docs/protocol.md §1.3); we keep that: cloud-init does not look at the type.
        Target::NetworkData => Answer::ok(TEXT_PLAIN, view.network_data()),
        // The password has its own handler (it reads the record, not the rendered view).
        Target::Password => Answer::refuse(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Renders `meta_data.json` for a version (nova's `_metadata_as_json`), leaving the
/// `random_seed` to be filled per request.
pub fn render_meta_data(
    view: &InstanceView,
    version: OpenStackVersion,
    rendering: &Rendering,
) -> MetaDataDoc {
    render_meta_data_with(view, version, rendering, None)
}

/// [`render_meta_data`] with `admin_pass`, which only a config drive carries (nova passes it
/// as `extra_md` there, docs/protocol.md §1.4); everything else is byte for byte the same.
pub fn render_meta_data_with(
    view: &InstanceView,
    version: OpenStackVersion,
    rendering: &Rendering,
    admin_pass: Option<String>,
) -> MetaDataDoc {
    use OpenStackVersion as V;
    let instance = &view.instance;
    let has_keys = !instance.key_pairs.is_empty();
    let document = MetaData {
        uuid: instance.uuid.clone(),
        meta: (!instance.meta.is_empty()).then(|| instance.meta.clone()),
        public_keys: has_keys.then(|| {
            instance
                .key_pairs
                .iter()
                .map(|key| (key.name.clone(), key.data.clone()))
                .collect::<BTreeMap<_, _>>()
        }),
        keys: has_keys.then(|| instance.key_pairs.clone()),
        hostname: rendering.hostname(&instance.hostname),
        name: instance.name.clone(),
        launch_index: instance.launch_index,
        availability_zone: Some(rendering.availability_zone(instance.availability_zone.as_deref())),
        random_seed: None,
        project_id: (version >= V::Liberty).then(|| instance.project.clone()),
        devices: (version >= V::NewtonOne).then(Vec::new),
        dedicated_cpus: (version >= V::Victoria).then(Vec::new),
        admin_pass,
        files: None,
    };
    // Serialising a struct of strings, maps and numbers cannot fail.
    let json = serde_json::to_vec(&document).unwrap_or_else(|_| b"{}".to_vec());
    if version >= V::Grizzly && json.len() > 2 {
        MetaDataDoc::Seeded {
            rest: Bytes::copy_from_slice(&json[1..]),
        }
    } else {
        MetaDataDoc::Fixed(Bytes::from(json))
    }
}

/// Today's date in UTC as `YYYY-MM-DD`, for hiding future versions.
pub fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn routes_files_by_version() {
        let r = |p: &[&str]| route(&p.iter().map(|s| Segment::from(*s)).collect::<Vec<_>>());
        assert_eq!(r(&[]), Some(Target::Versions));
        assert_eq!(
            r(&["latest"]),
            Some(Target::Version(OpenStackVersion::LATEST))
        );
        assert_eq!(
            r(&["2012-08-10", "version"]),
            Some(Target::Version(OpenStackVersion::Folsom))
        );
        assert_eq!(r(&["2012-08-10", "password"]), None);
        assert_eq!(r(&["2013-04-04", "password"]), Some(Target::Password));
        assert_eq!(r(&["2013-04-04", "vendor_data.json"]), None);
        for version in ["2012-08-10", "2013-10-17", "2015-10-15", "latest"] {
            assert_eq!(
                r(&[version, "network_data.json"]),
                Some(Target::NetworkData),
                "{version}"
            );
        }
        assert_eq!(r(&["2016-06-30", "vendor_data2.json"]), None);
        assert_eq!(
            r(&["2016-10-06", "vendor_data2.json"]),
            Some(Target::VendorData2)
        );
        assert_eq!(r(&["2099-01-01"]), None);
        assert_eq!(r(&["latest", "meta_data.json", "x"]), None);
        assert_eq!(r(&["content", "0000"]), None);
    }

    #[test]
    fn version_listing_is_gated() {
        assert_eq!(
            version_listing(OpenStackVersion::Folsom, true),
            "meta_data.json\nuser_data"
        );
        assert_eq!(
            version_listing(OpenStackVersion::LATEST, false),
            "meta_data.json\npassword\nvendor_data.json\nnetwork_data.json\nvendor_data2.json"
        );
    }
}
