//! Applying instance data under a root: hostname, hosts, users, keys, passwords, sshd,
//! write_files, scripts, entropy. Each submodule is one concern; the run drives them as steps.

pub mod home;
pub mod hostname;
pub mod hosts;
pub mod passwords;
pub mod random_seed;
pub mod scripts;
pub mod ssh_keys;
pub mod sshd;
pub mod users;
pub mod users_groups;
pub mod write_files;

/// Every step of a run, in order (cloud-init's init, config and final stages). `steps:` in
/// metaboot.yaml selects among them; `config` and `meta-data` always run.
pub const STEPS: &[&str] = &[
    "config",
    "meta-data",
    "user-data",
    "vendor-data",
    "network-data",
    "cloud-config",
    "random-seed",
    "bootcmd",
    "boothooks",
    "write-files",
    "hostname",
    "etc-hosts",
    "users-groups",
    "ssh-keys",
    "set-passwords",
    "ssh-pwauth",
    "runcmd",
    "write-files-deferred",
    "scripts-vendor",
    "scripts-per-once",
    "scripts-per-boot",
    "scripts-per-instance",
    "scripts-user",
];
