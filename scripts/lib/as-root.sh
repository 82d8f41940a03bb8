# Sourced by scripts/test and scripts/demo, which need root (network namespaces, taps,
# iptables, loop devices): a user with sudo gets the same run. Expects `self`, the calling
# script's absolute path (sudo is handed it, so the re-run works from any directory).

# Re-runs the calling script as root through sudo when a user runs it, or fails saying
# WHAT needs root. Run as root by sudo, gives the files the run makes in the user's checkout
# and cargo homes back to the user when it ends. Usage: as_root WHAT "$@"
as_root() {
  local what=$1
  shift
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "error: $what: run it as root" >&2; exit 1; }
    # sudo resets PATH to its secure_path and HOME to root's: the caller's cargo and rustup
    # are handed over explicitly, and the sbin directories a user's PATH lacks (ip,
    # iptables, mkfs.ext4, losetup) are added.
    exec sudo env PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" \
      CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
      CI="${CI:-}" "$self" "$@"
  fi
  if [ -n "${SUDO_UID:-}" ] && [ "$SUDO_UID" != 0 ]; then
    trap give_back_to_sudo_user EXIT
  fi
}

# The build directory and the cargo and rustup homes, where they are the sudo user's own:
# what root made in them (builds, downloaded crates, toolchains) becomes the user's again, so
# that the user's next `cargo build` can write there. Nothing else changes owner.
give_back_to_sudo_user() {
  local dir
  for dir in "${CARGO_TARGET_DIR:-target}" "${CARGO_HOME:-}" "${RUSTUP_HOME:-}"; do
    if [ -n "$dir" ] && [ -d "$dir" ] && [ "$(stat -c %u "$dir")" = "$SUDO_UID" ]; then
      chown -R --from=0 "$SUDO_UID:$SUDO_GID" "$dir" || true
    fi
  done
}
