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

/// The keys of a user's entry in `users` (or of `user`) that cloud-init applies and metaboot
/// does not, sorted, with why. The user is still made, without them.
pub const USER_NOT_APPLIED: &[(&str, &str)] = &[
    ("doas", "metaboot writes sudo rules only (`sudo`)"),
    ("expiredate", "metaboot sets no account expiry date"),
    ("inactive", "metaboot sets no password inactivity period"),
    ("selinux_user", "metaboot sets no SELinux user"),
    ("snapuser", "metaboot makes no snap users"),
    (
        "ssh_import_id",
        "metaboot fetches no keys from Launchpad or GitHub (give them in ssh_authorized_keys)",
    ),
    (
        "ssh_redirect_user",
        "metaboot redirects no user's keys (`disable_root` does it for root)",
    ),
];

/// A warning for each user option of [`USER_NOT_APPLIED`] that a cloud-config document's
/// `users` (a list of entries, or a map of name → options) or `user` sets.
pub fn user_warnings(doc: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    use serde_json::Value;
    let mut entries: Vec<(String, &serde_json::Map<String, Value>)> = Vec::new();
    let named = |entry: &serde_json::Map<String, Value>, fallback: &str| {
        entry
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(fallback)
            .to_owned()
    };
    match doc.get("users") {
        Some(Value::Array(list)) => {
            for item in list {
                if let Value::Object(entry) = item {
                    entries.push((named(entry, "default"), entry));
                }
            }
        }
        Some(Value::Object(map)) => {
            for (name, value) in map {
                if let Value::Object(entry) = value {
                    entries.push((name.clone(), entry));
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Object(entry)) = doc.get("user") {
        entries.push((named(entry, "default"), entry));
    }
    let mut warnings = Vec::new();
    for (user, entry) in entries {
        for (key, why) in USER_NOT_APPLIED {
            // Named as cloud-init reads the key: `-` as `_` (`ssh-import-id`).
            let given = entry
                .iter()
                .any(|(name, value)| name.replace('-', "_").trim() == *key && !value.is_null());
            if given {
                warnings.push(format!(
                    "users: {user}: `{key}` is a cloud-init user option metaboot does not \
                     apply: {why}"
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::userdata::cloud_config::CloudConfig;

    #[test]
    fn user_options_metaboot_skips_are_named_with_the_user() {
        assert!(USER_NOT_APPLIED.windows(2).all(|w| w[0].0 < w[1].0));
        let doc = serde_json::json!({
            "users": ["default", {"name": "bob", "ssh_import_id": ["gh:bob"], "shell": "/bin/sh"}],
            "user": {"name": "deb", "expiredate": "2030-01-01"},
        });
        let serde_json::Value::Object(doc) = doc else {
            unreachable!()
        };
        let warnings = user_warnings(&doc);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("users: bob: `ssh_import_id` is a cloud-init user option"));
        assert!(warnings[1].starts_with("users: deb: `expiredate`"));
        let map = serde_json::json!({"users": {"carol": {"doas": ["permit carol"]}}});
        let serde_json::Value::Object(map) = map else {
            unreachable!()
        };
        assert_eq!(user_warnings(&map).len(), 1);
    }

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
