//! Applying instance data under a root: hostname, hosts, users, keys, passwords, sshd,
//! write_files, scripts, entropy, the root partition and file system grown, mounts and swap,
//! the time zone,
//! the host keys on the console, the phone-home POST, the final message and the power state. Each submodule is one
//! concern; the run drives them as steps.

pub mod apt;
pub mod authkey_fingerprints;
pub mod ca_certs;
pub mod disable_ec2_metadata;
pub mod disk_setup;
pub mod final_message;
pub mod growpart;
pub mod grub_dpkg;
pub mod home;
pub mod hostname;
pub mod hosts;
pub mod instance_host_keys;
pub mod keyboard;
pub mod keys_to_console;
pub mod locale;
pub mod login_defs;
pub mod mounts;
pub mod network;
pub mod ntp;
pub mod packages;
pub mod password_postback;
pub mod passwords;
pub mod phone_home;
pub mod power_state;
pub mod random_seed;
pub mod resizefs;
pub mod rsyslog;
pub mod scripts;
pub mod ssh_genkeytypes;
pub mod ssh_host_key;
pub mod ssh_keys;
pub mod ssh_keys_file;
pub mod sshd;
pub mod sudoers;
pub mod timezone;
pub mod tool;
pub mod users;
pub mod users_groups;
pub mod write_files;
