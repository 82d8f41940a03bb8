//! One guest booted from a cloud image's disk (through a copy-on-write overlay: the image is
//! never written) on a lab network, provisioned through the chain by what the image runs
//! (cloud-init or metaboot), and checked from outside as its user would: key login as the
//! default user, the host name, the time zone, a CA in the trust store, a user with a key and a password from the user data, sudo,
//! runcmd's effect, the root file system grown to a disk larger than the image, the host keys sshd offers against those the console showed, and the
//! provisioner's own verdict.

mod batch;
mod checks;
mod console_keys;
pub(crate) mod guest;
mod host_keys;
pub mod own;
mod spec;

pub use batch::{CloudImageRun, GUEST_COLUMN, run_all, table};
pub use console_keys::console_keys;
pub use guest::{Inspect, LabServices, RunHooks, cloud_config, run, run_with};
pub use spec::{
    CloudImageGuest, CloudImageReport, DiskBootTimes, FLAVOUR_DISK_GROWTH, POLL, PROVISION_TIMEOUT,
    USER,
};
