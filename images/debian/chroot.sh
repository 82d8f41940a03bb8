#!/bin/sh
# Runs COMMAND inside the image root ROOT, with /proc, /sys and a minimal /dev of its own.
#
#   chroot.sh ROOT [DEVICE...] -- COMMAND [ARG...]
#
# The harness starts this script under `unshare --mount --net --pid --fork`: every mount made
# here lives in that private mount namespace and disappears with it, however the script ends
# (even killed), and nothing run inside can touch the host's network or outlive the build.
# /dev is a fresh tmpfs with the usual nodes plus each DEVICE (for GRUB: the loop device and
# its partitions) and its /dev/disk/by-uuid link, which grub-mkconfig needs to write
# root=UUID=… (no udev runs here). policy-rc.d keeps maintainer scripts from starting or
# stopping services.
set -eu
root=$1
shift
devices=
while [ $# -gt 0 ] && [ "$1" != -- ]; do
	devices="$devices $1"
	shift
done
[ "${1:-}" = -- ] || { echo "chroot.sh: usage: chroot.sh ROOT [DEVICE...] -- COMMAND" >&2; exit 2; }
shift

mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount -t tmpfs -o mode=0755,size=16m dev "$root/dev"
mkdir -p "$root/dev/pts" "$root/dev/shm" "$root/dev/disk/by-uuid"
for node in null zero full random urandom tty; do
	touch "$root/dev/$node"
	mount --bind "/dev/$node" "$root/dev/$node"
done
for dev in $devices; do
	touch "$root$dev"
	mount --bind "$dev" "$root$dev"
	uuid=$(blkid -s UUID -o value "$dev" || true)
	[ -z "$uuid" ] || ln -s "../../${dev#/dev/}" "$root/dev/disk/by-uuid/$uuid"
done

policy="$root/usr/sbin/policy-rc.d"
printf '#!/bin/sh\n# the image is being built: no service starts or stops\nexit 101\n' >"$policy"
chmod 0755 "$policy"
status=0
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
	DEBIAN_FRONTEND=noninteractive "$@" || status=$?
rm -f "$policy"
# Unmount before returning, so a file system mounted by the caller is clean when it is
# unmounted in turn; the namespace would drop these mounts anyway.
umount -R "$root/dev" "$root/sys" "$root/proc"
exit "$status"
