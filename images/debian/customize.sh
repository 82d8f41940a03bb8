#!/bin/sh
# Finishes an image root from inside it (started by chroot.sh, in a namespace without network).
#
#   customize.sh FLAVOUR [PACKAGE...]
#
# FLAVOUR is debian-cloud-init or debian-metaboot. For debian-metaboot, the PACKAGEs are those
# only debian-cloud-init has: they are purged with everything they pulled in, so both flavours
# share one base. The recipe's files are already in place.
set -eu
flavour=$1
shift

case "$flavour" in
debian-cloud-init) ;;
debian-metaboot)
	# iproute2 suggests python3: without this, autoremove would keep cloud-init's python3.
	apt-get purge -y -q --autoremove -o APT::AutoRemove::SuggestsImportant=false "$@"
	systemctl enable metaboot.service metaboot-final.service systemd-networkd.service \
		systemd-networkd-wait-online.service ssh-host-keys-later.service
	# Enabled with systemd-networkd: it writes .network files from ip= on the kernel command
	# line, and the image's has none (DHCP comes from 50-dhcp.network).
	systemctl disable systemd-network-generator.service
	# The units must load cleanly in the system they are installed in.
	for unit in metaboot.service metaboot-final.service ssh-host-keys.service \
		ssh-host-keys-later.service; do
		out=$(systemd-analyze verify --man=no "$unit" 2>&1) || true
		if [ -n "$out" ]; then
			echo "customize.sh: systemd-analyze verify $unit: $out" >&2
			exit 1
		fi
	done
	;;
*)
	echo "customize.sh: unknown flavour $flavour" >&2
	exit 2
	;;
esac

# Dead weight in a cloud VM, off in both flavours (the guest may have one CPU, under emulation:
# every unit and module the boot loads slows the rest): e2scrub checks ext4 file systems on LVM
# snapshots, and the image has no LVM; systemd-repart has no repart.d to act on, but pulls in the
# loop and dm_mod modules; systemd-pstore reads crash logs from EFI variables, and the VM boots
# from BIOS (it pulls in efi_pstore); logind loads drm early for seats with a display, and the
# VM is reached by SSH and the serial console; configfs (USB gadgets, storage targets) and the
# FUSE control file system (aborting hung FUSE mounts) are mounted for uses a cloud VM does not
# have, each with its module loaded first (FUSE's still loads when /dev/fuse is opened).
systemctl disable e2scrub_reap.service e2scrub_all.timer systemd-pstore.service
systemctl mask systemd-repart.service modprobe@drm.service sys-kernel-config.mount \
	modprobe@configfs.service sys-fs-fuse-connections.mount modprobe@fuse.service
# Generators that look for what a cloud VM has none of: encrypted, integrity or verity volumes
# (no crypttab, integritytab or veritytab), a root found by GPT partition type (the root is in
# fstab), a hibernation image. systemd runs every generator before it loads a unit; a
# /dev/null link in /etc/systemd/system-generators masks one (systemd.generator(7)).
mkdir -p /etc/systemd/system-generators
for generator in cryptsetup integritysetup veritysetup gpt-auto hibernate-resume; do
	ln -sf /dev/null "/etc/systemd/system-generators/systemd-$generator-generator"
done

# The initramfs with only the root disk's drivers (conf.d/50-metaboot-image.conf), and without
# the blacklisted modules (modprobe.d/50-metaboot-image.conf).
update-initramfs -u -k all

# A GRUB upgrade inside the guest reinstalls it on the boot disk: the disk a cloud gives its
# instances (virtio). Each instance's provisioner checks it against the disk it booted from
# and answers again where they differ (cloud-init's and metaboot's `grub_dpkg`).
echo "grub-pc grub-pc/install_devices multiselect /dev/vda" | debconf-set-selections
echo "grub-pc grub-pc/install_devices_empty boolean false" | debconf-set-selections

# Every instance gets its own identity: no SSH host keys (cloud-init, or ssh-host-keys.service
# and ssh-host-keys-later.service, make them at first boot), an empty machine-id (systemd makes one at boot).
rm -f /etc/ssh/ssh_host_*
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id

# Nothing of the build machine or the build: its resolv.conf (mmdebstrap copies it in), apt's
# package lists and downloads.
rm -f /etc/resolv.conf
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/*
