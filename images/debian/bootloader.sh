#!/bin/sh
# Installs GRUB for BIOS firmware onto the image's disk, with the image's own GRUB (grub-pc),
# as Debian's cloud images have it: grub-install writes the boot sector and embeds its core
# image in the BIOS boot partition; update-grub writes /boot/grub/grub.cfg from
# /etc/default/grub and /etc/default/grub.d (root=UUID=…, the serial console).
#
#   bootloader.sh DISK PARTITION MOUNTPOINT
#
# DISK is the whole disk's loop device, PARTITION its root partition. Run under
# `unshare --mount --net --pid --fork` (see chroot.sh): the mounts die with the namespace.
set -eu
disk=$1
part=$2
mnt=$3
here=$(dirname "$0")

mount -t ext4 "$part" "$mnt"
status=0
sh "$here/chroot.sh" "$mnt" "$disk" "$part" -- \
	sh -ec 'grub-install --target=i386-pc --modules="part_gpt ext2" "$1"; update-grub' grub "$disk" ||
	status=$?
umount "$mnt"
exit "$status"
