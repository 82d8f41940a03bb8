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
    # Made by the user, so that root's run gives back what it builds there (a fresh clone has
    # no build directory yet).
    mkdir -p "${CARGO_TARGET_DIR:-target}"
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

# Runs COMMAND ARGS: as plain root in its place (exec), so that a stop signal sent to the
# script's pid reaches it; under sudo as a child, so that the files are given back after it
# ends. The child gets Ctrl-C (INT, QUIT) and a hang-up from the terminal itself, as the
# script's process group does (a background job's ignored INT and QUIT are set back to their
# default: cargo stops on Ctrl-C); a TERM sent to the script is passed on. The script outlives
# them all to give the files back. Usage: run_as_last COMMAND ARGS...
run_as_last() {
  if [ -z "${SUDO_UID:-}" ] || [ "$SUDO_UID" = 0 ]; then
    exec "$@"
  fi
  env --default-signal=INT,QUIT "$@" &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null || true' TERM
  trap : INT QUIT HUP
  local status=0
  while :; do
    wait "$child" && status=0 || status=$?
    kill -0 "$child" 2>/dev/null || break
  done
  return "$status"
}
