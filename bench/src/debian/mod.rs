//! Debian 12 cloud images side by side: `debian-cloud-init` and `debian-metaboot`, booted under
//! QEMU, each guest's boot read from systemd over SSH (see [`timeline`]).

pub mod timeline;
