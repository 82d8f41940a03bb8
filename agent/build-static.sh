#!/usr/bin/env bash
# Builds the guest agent as images embed it: static glibc (+crt-static, with an explicit
# --target so build scripts and proc-macros stay dynamic), the size-optimised `guest` profile
# (opt-level z, LTO, strip, panic=abort). Then checks that it is static, runs, and stays
# under the size bound. Prints the binary's path last.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=x86_64-unknown-linux-gnu
# The size this build must stay under: 3 MiB (see agent/README.md for what takes the space).
max_bytes=3145728

# The same flags as harness/src/workspace.rs (static_rustflags), so the two share one build:
# static glibc, not position-independent, identical functions folded by lld (code only), no
# unwind index (.eh_frame_hdr: panic=abort never unwinds),
# curve25519-dalek's portable backend (no AVX2 code for one host key per instance), and panic
# locations in dependencies without the `$CARGO_HOME/registry/src/<index>/` prefix.
rustflags='-C target-feature=+crt-static -C relocation-model=static -C link-arg=-Wl,--icf=all -C link-arg=-Wl,--no-eh-frame-hdr --cfg curve25519_dalek_backend="serial"'
for dir in $(printf '%s\n' "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | LC_ALL=C sort); do
  [ -d "$dir" ] && rustflags+=" --remap-path-prefix=${dir%/}/="
done
RUSTFLAGS="$rustflags" cargo build --profile guest --target "$target" -p metaboot >&2
bin="${CARGO_TARGET_DIR:-target}/$target/guest/metaboot"

file "$bin" | grep -q 'static' || { echo "error: $bin is not statically linked" >&2; exit 1; }
if ldd "$bin" >/dev/null 2>&1 && ! ldd "$bin" 2>&1 | grep -q 'not a dynamic executable\|statically linked'; then
  echo "error: ldd lists shared libraries for $bin" >&2; exit 1
fi
"$bin" --version >&2
size=$(stat -c %s "$bin")
echo "metaboot: $size bytes" >&2
if [ "$size" -gt "$max_bytes" ]; then
  echo "error: $bin is $size bytes, above the $max_bytes bound" >&2; exit 1
fi
echo "$bin"
