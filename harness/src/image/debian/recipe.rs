//! The recipe of the Debian images (`images/debian/`), compiled in: package lists, the files
//! each flavour gets, the scripts that finish a root and install GRUB, and the cache keys made
//! from all of them.

use super::sources::Source;
use crate::image::cache::InputHash;
use crate::image::disk::Provisioner;
use crate::image::packages::Package;

/// The two images of the recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Stock cloud-init.
    CloudInit,
    /// The guest agent instead of cloud-init.
    Metaboot,
}

impl Flavour {
    /// Both, in build order.
    pub const ALL: [Flavour; 2] = [Flavour::CloudInit, Flavour::Metaboot];

    /// The image's name (`debian-cloud-init`), also the name of its newest image's link.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::CloudInit => "debian-cloud-init",
            Flavour::Metaboot => "debian-metaboot",
        }
    }

    /// What provisions its guests.
    pub fn provisioner(self) -> Provisioner {
        match self {
            Flavour::CloudInit => Provisioner::CloudInit,
            Flavour::Metaboot => Provisioner::Metaboot,
        }
    }
}

/// The Debian release the images are made of.
pub const RELEASE: &str = "bookworm";

/// Bump when the builder makes something else from the same recipe and inputs.
pub const RECIPE_VERSION: u32 = 1;

/// mmdebstrap's package set under the recipe's packages: Essential plus apt.
pub const VARIANT: &str = "apt";

macro_rules! recipe {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../images/debian/",
            $name
        ))
    };
}

/// Packages of both flavours.
pub const PACKAGES: &str = recipe!("packages");

/// Packages only `debian-cloud-init` has (and `debian-metaboot` purges).
pub const CLOUD_INIT_PACKAGES: &str = recipe!("packages.cloud-init");

/// Runs a command inside a root with its own /proc, /sys and /dev (see the script).
pub const CHROOT_SH: &str = recipe!("chroot.sh");

/// Installs GRUB onto the disk from the image itself.
pub const BOOTLOADER_SH: &str = recipe!("bootloader.sh");

/// Finishes a root from inside it.
pub const CUSTOMIZE_SH: &str = recipe!("customize.sh");

/// The guest agent's unit, as the repository ships it.
pub const METABOOT_UNIT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../agent/systemd/metaboot.service"
));

/// The guest agent's final stage (the user scripts), as the repository ships it.
pub const METABOOT_FINAL_UNIT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../agent/systemd/metaboot-final.service"
));

/// Where the static guest agent goes in the image (as in agent/README.md).
pub const AGENT_PATH: &str = "usr/bin/metaboot";

/// A file of the recipe, placed into the root as is.
#[derive(Debug, Clone, Copy)]
pub struct RecipeFile {
    /// Its name in the recipe (for the cache key's list of inputs).
    pub name: &'static str,
    /// Where it goes, relative to the root.
    pub path: &'static str,
    /// Its mode.
    pub mode: u32,
    /// Its content.
    pub content: &'static str,
}

/// Files of both flavours.
pub const COMMON_FILES: &[RecipeFile] = &[
    RecipeFile {
        name: "grub.cfg",
        path: "etc/default/grub.d/50-metaboot-image.cfg",
        mode: 0o644,
        content: recipe!("grub.cfg"),
    },
    RecipeFile {
        name: "hostname",
        path: "etc/hostname",
        mode: 0o644,
        content: recipe!("hostname"),
    },
    RecipeFile {
        name: "hosts",
        path: "etc/hosts",
        mode: 0o644,
        content: recipe!("hosts"),
    },
    RecipeFile {
        name: "locale",
        path: "etc/default/locale",
        mode: 0o644,
        content: recipe!("locale"),
    },
    RecipeFile {
        name: "initramfs.conf",
        path: "etc/initramfs-tools/conf.d/50-metaboot-image.conf",
        mode: 0o644,
        content: recipe!("initramfs.conf"),
    },
    RecipeFile {
        name: "initramfs-modules",
        path: "etc/initramfs-tools/modules",
        mode: 0o644,
        content: recipe!("initramfs-modules"),
    },
    RecipeFile {
        name: "modprobe.conf",
        path: "etc/modprobe.d/50-metaboot-image.conf",
        mode: 0o644,
        content: recipe!("modprobe.conf"),
    },
    RecipeFile {
        name: "modules-load.conf",
        path: "etc/modules-load.d/50-metaboot-image.conf",
        mode: 0o644,
        content: recipe!("modules-load.conf"),
    },
    RecipeFile {
        name: "nic-before-scan.conf",
        path: "etc/systemd/system/systemd-udev-trigger.service.d/50-metaboot-image.conf",
        mode: 0o644,
        content: recipe!("nic-before-scan.conf"),
    },
    RecipeFile {
        name: "udev-worker-per-cpu.conf",
        path: "etc/systemd/system/systemd-udevd.service.d/50-metaboot-image.conf",
        mode: 0o644,
        content: recipe!("udev-worker-per-cpu.conf"),
    },
    // One drop-in for each image's network units (a drop-in for a unit an image lacks is
    // ignored).
    RecipeFile {
        name: "network-first.conf",
        path: "etc/systemd/system/systemd-networkd.service.d/50-metaboot-image.conf",
        mode: 0o644,
        content: recipe!("network-first.conf"),
    },
    RecipeFile {
        name: "network-first.conf",
        path: "etc/systemd/system/systemd-networkd-wait-online.service.d/50-metaboot-image.conf",
        mode: 0o644,
        content: recipe!("network-first.conf"),
    },
    RecipeFile {
        name: "network-first.conf",
        path: "etc/systemd/system/networking.service.d/50-metaboot-image.conf",
        mode: 0o644,
        content: recipe!("network-first.conf"),
    },
    RecipeFile {
        name: "network-first.conf",
        path: "etc/systemd/system/ifupdown-wait-online.service.d/50-metaboot-image.conf",
        mode: 0o644,
        content: recipe!("network-first.conf"),
    },
];

/// Files of `debian-cloud-init`.
pub const CLOUD_INIT_FILES: &[RecipeFile] = &[RecipeFile {
    name: "cloud.cfg",
    path: "etc/cloud/cloud.cfg.d/90-metaboot-image.cfg",
    mode: 0o644,
    content: recipe!("cloud.cfg"),
}];

/// Files of `debian-metaboot` (the agent binary comes on top).
pub const METABOOT_FILES: &[RecipeFile] = &[
    RecipeFile {
        name: "metaboot.service",
        path: "usr/lib/systemd/system/metaboot.service",
        mode: 0o644,
        content: METABOOT_UNIT,
    },
    RecipeFile {
        name: "metaboot-final.service",
        path: "usr/lib/systemd/system/metaboot-final.service",
        mode: 0o644,
        content: METABOOT_FINAL_UNIT,
    },
    RecipeFile {
        name: "metaboot.yaml",
        path: "etc/metaboot/metaboot.yaml",
        mode: 0o644,
        content: recipe!("metaboot.yaml"),
    },
    RecipeFile {
        name: "dhcp.network",
        path: "etc/systemd/network/50-dhcp.network",
        mode: 0o644,
        content: recipe!("dhcp.network"),
    },
    RecipeFile {
        name: "ipv6-no-dad.conf",
        path: "etc/sysctl.d/50-metaboot-image.conf",
        mode: 0o644,
        content: recipe!("ipv6-no-dad.conf"),
    },
    RecipeFile {
        name: "ssh-host-keys.conf",
        path: "etc/systemd/system/ssh.service.d/50-host-keys.conf",
        mode: 0o644,
        content: recipe!("ssh-host-keys.conf"),
    },
    RecipeFile {
        name: "ssh-host-keys.service",
        path: "usr/lib/systemd/system/ssh-host-keys.service",
        mode: 0o644,
        content: recipe!("ssh-host-keys.service"),
    },
    RecipeFile {
        name: "ssh-host-keys-later.service",
        path: "usr/lib/systemd/system/ssh-host-keys-later.service",
        mode: 0o644,
        content: recipe!("ssh-host-keys-later.service"),
    },
];

/// The recipe files of a flavour: the common ones, then its own.
pub fn files(flavour: Flavour) -> impl Iterator<Item = &'static RecipeFile> {
    let own = match flavour {
        Flavour::CloudInit => CLOUD_INIT_FILES,
        Flavour::Metaboot => METABOOT_FILES,
    };
    COMMON_FILES.iter().chain(own)
}

/// Package names of a list: one per line, `#` comments and blank lines skipped.
pub fn package_names(list: &str) -> Vec<&str> {
    list.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Every package mmdebstrap installs into the shared root (both lists).
pub fn rootfs_packages() -> Vec<&'static str> {
    let mut names = package_names(PACKAGES);
    names.extend(package_names(CLOUD_INIT_PACKAGES));
    names
}

/// The key of the shared root: release, variant, packages, the apt sources, and every package
/// the root is made of at its version (`resolved`: [`super::closure::resolve`] of
/// [`rootfs_packages`], dependencies included): a point release, a security update or a new
/// kernel makes a new root, and with it new flavours.
pub fn rootfs_key(sources: &[Source], resolved: &[Package]) -> InputHash {
    let mut key = InputHash::new("debian-rootfs");
    key.add("recipe-version", RECIPE_VERSION.to_string().as_bytes());
    key.add("release", RELEASE.as_bytes());
    key.add("variant", VARIANT.as_bytes());
    key.add("recipe:packages", PACKAGES.as_bytes());
    key.add("recipe:packages.cloud-init", CLOUD_INIT_PACKAGES.as_bytes());
    let lines: Vec<String> = sources.iter().map(Source::line).collect();
    key.add("apt-sources", lines.join("\n").as_bytes());
    for package in resolved {
        key.add(
            &format!("package:{}", package.spec()),
            package.file_name().as_bytes(),
        );
    }
    key
}

/// One way the builder makes a flavour's image from the root, by name: the disk's layout and
/// partition types, its fstab, the options of mkfs.ext4 and tar. Each is an input of the
/// flavour's key: changed, it makes other images from the same recipe.
pub type BuilderInput = (&'static str, String);

/// The key of a flavour's disk: the root's key, the scripts, the flavour's files, how the
/// builder makes the disk (`builder`), and the guest agent for `debian-metaboot`.
pub fn flavour_key(
    rootfs_key: &str,
    flavour: Flavour,
    agent: Option<&[u8]>,
    builder: &[BuilderInput],
) -> InputHash {
    let mut key = InputHash::new(flavour.name());
    key.add("recipe-version", RECIPE_VERSION.to_string().as_bytes());
    key.add("rootfs", rootfs_key.as_bytes());
    key.add("recipe:chroot.sh", CHROOT_SH.as_bytes());
    key.add("recipe:bootloader.sh", BOOTLOADER_SH.as_bytes());
    key.add("recipe:customize.sh", CUSTOMIZE_SH.as_bytes());
    for (name, value) in builder {
        key.add(&format!("builder:{name}"), value.as_bytes());
    }
    for file in files(flavour) {
        key.add(
            &format!("recipe:{} {} mode {:o}", file.name, file.path, file.mode),
            file.content.as_bytes(),
        );
    }
    if let (Flavour::Metaboot, Some(agent)) = (flavour, agent) {
        key.add("agent:metaboot", agent);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A builder whose only input is a disk layout.
    fn disk(layout: &str) -> Vec<BuilderInput> {
        vec![("disk-layout", layout.to_owned())]
    }

    #[test]
    fn the_recipe_names_what_the_images_need() {
        let common = package_names(PACKAGES);
        for needed in [
            "linux-image-cloud-amd64",
            "grub-pc",
            "openssh-server",
            "systemd-sysv",
            "sudo",
            "e2fsprogs",
            "locales",
            "tzdata",
            "ca-certificates",
            "systemd-timesyncd",
            "fdisk",
        ] {
            assert!(
                common.contains(&needed),
                "{needed} in images/debian/packages"
            );
        }
        assert_eq!(
            package_names(CLOUD_INIT_PACKAGES),
            ["cloud-init", "ifupdown", "cloud-guest-utils", "gpg"]
        );
        assert!(
            !common.contains(&"cloud-init"),
            "the shared base has no cloud-init"
        );
        assert!(METABOOT_UNIT.contains("ExecStart=/usr/bin/metaboot run"));
        assert_eq!(format!("/{AGENT_PATH}"), "/usr/bin/metaboot");
        for script in [CHROOT_SH, BOOTLOADER_SH, CUSTOMIZE_SH] {
            assert!(script.starts_with("#!/bin/sh\n"));
        }
        let paths: Vec<&str> = files(Flavour::Metaboot).map(|f| f.path).collect();
        assert!(paths.contains(&"etc/metaboot/metaboot.yaml"), "{paths:?}");
        assert!(
            !paths.iter().any(|p| p.starts_with("etc/cloud")),
            "{paths:?}"
        );
    }

    /// The recipe file of a flavour named `name`.
    fn recipe_file(flavour: Flavour, name: &str) -> &'static str {
        files(flavour)
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} in the {} recipe", flavour.name()))
            .content
    }

    /// A unit file's `Key=value` settings, comments left out.
    fn settings(unit: &str) -> Vec<&str> {
        unit.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && l.contains('='))
            .collect()
    }

    #[test]
    fn sshd_waits_for_no_slow_host_key_and_for_no_ssh_keygen_when_metaboot_made_one() {
        // metaboot makes the ed25519 key in-process; the unit is the fallback after it, and
        // starts no process when the key is there.
        let quick = settings(recipe_file(Flavour::Metaboot, "ssh-host-keys.service"));
        for wanted in [
            "After=metaboot.service",
            "Before=ssh.service",
            "ConditionPathExists=|!/etc/ssh/ssh_host_ed25519_key",
            "ConditionPathExists=|!/etc/ssh/ssh_host_ed25519_key.pub",
        ] {
            assert!(quick.contains(&wanted), "{wanted} in {quick:?}");
        }
        let drop_in = settings(recipe_file(Flavour::Metaboot, "ssh-host-keys.conf"));
        for wanted in [
            "Wants=ssh-host-keys.service",
            "After=ssh-host-keys.service",
            "ExecStartPre=",
        ] {
            assert!(drop_in.contains(&wanted), "{wanted} in {drop_in:?}");
        }
        assert!(
            quick.iter().any(|s| s.contains("-t ed25519"))
                && !quick
                    .iter()
                    .any(|s| s.contains("ecdsa") || s.contains("rsa")),
            "sshd waits for the ed25519 key alone: {quick:?}"
        );
        let rsa = settings(recipe_file(
            Flavour::Metaboot,
            "ssh-host-keys-later.service",
        ));
        assert!(
            !rsa.iter().any(|s| s.starts_with("Before=")),
            "nothing waits for the ECDSA and RSA keys: {rsa:?}"
        );
        // They wait for metaboot (which deletes a new instance's old keys, and must not meet
        // these half made) and for sshd's start (the first login's), nothing else.
        assert_eq!(
            rsa.iter()
                .filter(|s| s.starts_with("After="))
                .collect::<Vec<_>>(),
            [&"After=metaboot.service ssh.service"],
            "{rsa:?}"
        );
        assert!(rsa.contains(&"Nice=19"), "{rsa:?}");
        assert!(
            !rsa.iter().any(|s| s.ends_with("=idle")),
            "an idle-class key could wait without bound on a busy guest: {rsa:?}"
        );
        assert!(
            rsa.iter()
                .any(|s| s.contains("try-reload-or-restart ssh.service")),
            "{rsa:?}"
        );
    }

    #[test]
    fn udev_names_the_nic_first_in_the_device_scan_in_both_images() {
        for flavour in [Flavour::CloudInit, Flavour::Metaboot] {
            let trigger = settings(recipe_file(flavour, "nic-before-scan.conf"));
            assert_eq!(
                trigger[..2],
                ["After=systemd-modules-load.service", "ExecStart="]
            );
            assert!(
                trigger[2].contains("--prioritized-subsystem=net,"),
                "the network devices first: {trigger:?}"
            );
            let modules = recipe_file(flavour, "modules-load.conf");
            assert!(modules.lines().any(|l| l == "virtio_net"), "{modules}");
            let udevd = settings(recipe_file(flavour, "udev-worker-per-cpu.conf"));
            assert_eq!(
                udevd[0], "ExecStart=",
                "the drop-in replaces udevd's command"
            );
            assert!(udevd[1].contains("--children-max=") && udevd[1].contains("nproc"));
        }
    }

    #[test]
    fn network_online_waits_for_no_ipv6_duplicate_address_detection() {
        // The kernel's own check: detection runs unless both "all" and the interface say 0.
        let sysctl = settings(recipe_file(Flavour::Metaboot, "ipv6-no-dad.conf"));
        for wanted in [
            "net.ipv6.conf.all.accept_dad = 0",
            "net.ipv6.conf.default.accept_dad = 0",
            "net.ipv6.conf.*.accept_dad = 0",
        ] {
            assert!(sysctl.contains(&wanted), "{wanted} in {sysctl:?}");
        }
        let path = files(Flavour::Metaboot)
            .find(|f| f.name == "ipv6-no-dad.conf")
            .map(|f| f.path);
        assert_eq!(path, Some("etc/sysctl.d/50-metaboot-image.conf"));
        let network = settings(recipe_file(Flavour::Metaboot, "dhcp.network"));
        assert!(
            network.contains(&"IPv6DuplicateAddressDetection=0"),
            "{network:?}"
        );
    }

    /// Neutron's DHCP server gives a VXLAN port its MTU (1450, option 26), which networkd
    /// ignores unless told: at 1500 the first boot's large packets would be lost.
    #[test]
    fn the_dhcp_link_takes_the_mtu_the_dhcp_server_gives() {
        let network = recipe_file(Flavour::Metaboot, "dhcp.network");
        let dhcpv4 = network
            .split_once("[DHCPv4]")
            .map(|(_, section)| section.split("\n[").next().unwrap_or_default())
            .unwrap_or_default();
        assert!(settings(dhcpv4).contains(&"UseMTU=yes"), "{network}");
    }

    #[test]
    fn the_initramfs_holds_the_root_disk_drivers() {
        let conf = settings(recipe_file(Flavour::CloudInit, "initramfs.conf"));
        assert_eq!(conf, ["MODULES=list"]);
        let modules = package_names(recipe_file(Flavour::Metaboot, "initramfs-modules"));
        for driver in ["virtio_pci", "virtio_blk", "virtio_scsi"] {
            assert!(modules.contains(&driver), "{driver} in {modules:?}");
        }
        assert!(CUSTOMIZE_SH.contains("update-initramfs -u"));
    }

    #[test]
    fn keys_follow_their_inputs() {
        let debian = Source {
            uri: "http://deb.debian.org/debian".into(),
            suite: RELEASE.into(),
            signed_by: None,
        };
        let mirror = Source {
            uri: "http://mirror.example/debian".into(),
            ..debian.clone()
        };
        let kernel = |version: &str| Package {
            name: "linux-image-cloud-amd64".into(),
            version: version.into(),
            arch: "amd64".into(),
        };
        let packages = [kernel("6.1.129-1")];
        let base = rootfs_key(std::slice::from_ref(&debian), &packages).key();
        assert_eq!(
            base,
            rootfs_key(std::slice::from_ref(&debian), &packages).key()
        );
        assert_ne!(
            base,
            rootfs_key(&[mirror], &packages).key(),
            "other apt sources"
        );
        // A point release or a new kernel in apt's lists: a new root, and so new flavours
        // (whose keys are looked up before the root's).
        let newer = rootfs_key(std::slice::from_ref(&debian), &[kernel("6.1.133-1")]);
        assert_ne!(base, newer.key(), "a new package version");
        assert!(
            newer
                .inputs()
                .iter()
                .any(|i| i.starts_with("package:linux-image-cloud-amd64=6.1.133-1 ")),
            "{:?}",
            newer.inputs()
        );
        for flavour in Flavour::ALL {
            assert_ne!(
                flavour_key(&base, flavour, Some(b"a"), &disk("gpt")).key(),
                flavour_key(&newer.key(), flavour, Some(b"a"), &disk("gpt")).key(),
                "{} follows its root",
                flavour.name()
            );
        }

        let metaboot = |agent: &[u8], layout| {
            flavour_key(&base, Flavour::Metaboot, Some(agent), &disk(layout)).key()
        };
        assert_eq!(metaboot(b"a", "gpt"), metaboot(b"a", "gpt"));
        assert_ne!(
            metaboot(b"a", "gpt"),
            metaboot(b"b", "gpt"),
            "another agent"
        );
        assert_ne!(
            metaboot(b"a", "gpt"),
            metaboot(b"a", "mbr"),
            "another layout"
        );
        let cloud_init =
            |agent: &[u8]| flavour_key(&base, Flavour::CloudInit, Some(agent), &disk("gpt")).key();
        assert_eq!(
            cloud_init(b"a"),
            cloud_init(b"b"),
            "cloud-init has no agent"
        );
        assert_ne!(
            flavour_key("other", Flavour::CloudInit, None, &disk("gpt")).key(),
            cloud_init(b"a"),
            "another root"
        );
    }
}
