//! cloud-init's cloud-config keys that metaboot reads past: a user moving from cloud-init sees
//! each one the user or vendor data sets in `metaboot status` (a warning), with why, instead of
//! finding out later that nothing happened. Keys of neither kind are left alone, as cloud-init
//! leaves them.

/// Why a group of keys is not applied.
const PACKAGES: &str = "metaboot installs packages with apt-get (`packages`), no snaps or drivers";
const REBOOT: &str = "metaboot does not reboot after installing packages (`power_state` reboots)";
const REPOSITORIES: &str = "metaboot configures apt's repositories only (`apt`)";
const SERVICES: &str = "metaboot installs and configures no agents or services";
const SYSTEM: &str = "metaboot leaves this system setting to the image";

/// The keys of cloud-init's modules (its cloud-config schema) that metaboot does not apply,
/// sorted, with why.
pub const NOT_APPLIED: &[(&str, &str)] = &[
    ("ansible", SERVICES),
    ("apk_repos", REPOSITORIES),
    ("apt_reboot_if_required", REBOOT),
    ("byobu_by_default", SYSTEM),
    ("chef", SERVICES),
    ("drivers", PACKAGES),
    ("fan", SERVICES),
    ("landscape", SERVICES),
    ("lxd", SERVICES),
    ("manage_resolv_conf", SYSTEM),
    ("mcollective", SERVICES),
    ("package_reboot_if_required", REBOOT),
    ("puppet", SERVICES),
    ("resolv_conf", SYSTEM),
    ("rh_subscription", SERVICES),
    ("salt_minion", SERVICES),
    ("snap", PACKAGES),
    ("spacewalk", SERVICES),
    (
        "ssh_import_id",
        "metaboot fetches no keys from Launchpad or GitHub (no name lookup, no TLS)",
    ),
    (
        "ssh_publish_hostkeys",
        "metaboot publishes no host keys (neither does cloud-init on OpenStack)",
    ),
    ("ubuntu_advantage", SERVICES),
    ("ubuntu_pro", SERVICES),
    ("updates", SYSTEM),
    ("wireguard", SERVICES),
    ("yum_repo_dir", REPOSITORIES),
    ("yum_repos", REPOSITORIES),
    ("zypper", REPOSITORIES),
];

/// The warning for `key`, when it is a cloud-init key metaboot does not apply.
pub fn warning(key: &str) -> Option<String> {
    let index = NOT_APPLIED.binary_search_by(|(k, _)| k.cmp(&key)).ok()?;
    let why = NOT_APPLIED[index].1;
    Some(format!(
        "`{key}` is a cloud-init key metaboot does not apply: {why}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::userdata::cloud_config::CloudConfig;

    #[test]
    fn the_list_is_sorted_and_never_names_a_key_metaboot_applies() {
        assert!(NOT_APPLIED.windows(2).all(|w| w[0].0 < w[1].0));
        for (key, _) in NOT_APPLIED {
            assert!(!CloudConfig::KEYS.contains(key), "{key} is applied");
        }
    }

    #[test]
    fn a_key_metaboot_skips_is_named_with_why() {
        assert_eq!(
            warning("package_reboot_if_required").unwrap(),
            "`package_reboot_if_required` is a cloud-init key metaboot does not apply: metaboot \
             does not reboot after installing packages (`power_state` reboots)"
        );
        assert!(warning("packages").is_none());
        assert!(warning("runcmd").is_none());
        assert!(warning("merge_how").is_none());
        assert!(warning("zz").is_none());
    }
}
