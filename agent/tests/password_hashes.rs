//! The shadow hashes the guest agent writes are the ones glibc's crypt(3) accepts (what PAM and
//! busybox login check a password with), for passwords with spaces and non-ASCII too.

mod support;

use metaboot::apply::passwords::hash_password;
use support::crypt_verifies;

#[test]
fn glibc_crypt_verifies_our_hashes() {
    for password in ["passw0rd", "with space and ünïcode", "x"] {
        let hash = hash_password(password).unwrap();
        assert!(crypt_verifies(password, &hash), "{password}: {hash}");
        assert!(!crypt_verifies("wrong", &hash), "{password}: {hash}");
    }
}
