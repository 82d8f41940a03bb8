//! Users and passwords from `#cloud-config` as cloud-init leaves them (docs/protocol.md §5.3,
//! §5.4): what `/etc/passwd`, `/etc/shadow`, `/etc/group` and the homes hold after a run.

mod support;

use support::*;

/// `password:` beside a `chpasswd` whose list is empty: cloud-init sets the default user's
/// password (an empty `users` or `list` names no one), and so does metaboot.
#[test]
fn an_empty_chpasswd_list_leaves_password_to_the_default_user() {
    for chpasswd in ["{users: []}", "{list: []}", "{expire: false, users: []}"] {
        let guest = Guest::with_debian();
        guest.user_data(format!(
            "#cloud-config\npassword: Given-pw-1\nchpasswd: {chpasswd}\n"
        ));
        let (code, stderr) = guest.run();
        assert_eq!(code, 0, "{chpasswd}: {stderr}");
        let hash = guest.shadow_hash("debian");
        assert!(crypt_verifies("Given-pw-1", &hash), "{chpasswd}: {hash}");
    }
}
