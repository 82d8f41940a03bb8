//! Binaries of this workspace the harness needs (the static guest agent, `metaboot-server`),
//! built with cargo on demand unless given explicitly.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The workspace root (the harness crate's parent directory).
pub fn root() -> &'static Path {
    // The harness always lives in `<workspace>/harness`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

/// What to build.
#[derive(Debug, Clone, Copy)]
pub struct CargoBinary<'a> {
    /// The package (`-p`).
    pub package: &'a str,
    /// The binary target (`--bin`).
    pub bin: &'a str,
    /// A profile (`--profile`), or the default dev profile.
    pub profile: Option<&'a str>,
    /// A target triple (`--target`), which also keeps build scripts dynamic when `static_crt`.
    pub target: Option<&'a str>,
    /// Link the C runtime statically (`-C target-feature=+crt-static`).
    pub static_crt: bool,
}

/// The guest agent as the tiny image needs it: static, guest profile.
pub const GUEST_AGENT: CargoBinary<'static> = CargoBinary {
    package: "metaboot",
    bin: "metaboot",
    profile: Some("guest"),
    target: Some("x86_64-unknown-linux-gnu"),
    static_crt: true,
};

/// The most bytes the static guest agent ([`GUEST_AGENT`]) may take: 3 MiB, the bound
/// `agent/build-static.sh` (`max_bytes`) and `agent/README.md` state, checked on the build the
/// tests make (`tests/tests/guest_agent_size.rs`).
pub const GUEST_AGENT_MAX_BYTES: u64 = 3 * 1024 * 1024;

/// The server (registry CLI and `all`).
pub const SERVER: CargoBinary<'static> = CargoBinary {
    package: "metaboot-server",
    bin: "metaboot-server",
    profile: None,
    target: None,
    static_crt: false,
};

/// The harness itself (for tests of its command line).
pub const HARNESS: CargoBinary<'static> = CargoBinary {
    package: "metaboot-harness",
    bin: "metaboot-harness",
    profile: None,
    target: None,
    static_crt: false,
};

/// Builds `binary` with cargo (a no-op when up to date) and returns the executable's path.
///
/// cargo's own progress goes to stderr; the artifact path is read from its JSON messages.
pub fn build(binary: CargoBinary<'_>) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root())
        .args([
            "build",
            "--message-format=json-render-diagnostics",
            "-p",
            binary.package,
        ])
        .args(["--bin", binary.bin]);
    if let Some(profile) = binary.profile {
        cmd.args(["--profile", profile]);
    }
    if let Some(target) = binary.target {
        cmd.args(["--target", target]);
    }
    if binary.static_crt {
        cmd.env("RUSTFLAGS", static_rustflags());
    }
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to run cargo to build {}", binary.bin))?;
    if !out.status.success() {
        bail!(
            "failed to build {} (cargo exited with {})",
            binary.bin,
            out.status
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    executable_from_messages(&stdout, binary.bin)
        .with_context(|| format!("cargo did not report an executable for {}", binary.bin))
}

/// The fixed part of [`static_rustflags`], the `rustflags=` line of `agent/build-static.sh`
/// word for word (a test holds the two together).
const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static -C relocation-model=static \
     -C link-arg=-Wl,--icf=all -C link-arg=-Wl,--no-eh-frame-hdr \
     --cfg curve25519_dalek_backend=\"serial\"";

/// The flags of a static build, as `agent/build-static.sh` sets them (the same flags, so the
/// two share one build): static glibc, not position-independent (a static-pie carries ~130 KB
/// of relocations); identical functions folded by the linker (lld's `--icf=all` folds code
/// only, never data); no unwind index (`.eh_frame_hdr`, ~43 KB: the agent aborts on a panic and
/// never unwinds; a panic still prints its message, and its backtrace of a stripped binary is
/// addresses either way); curve25519-dalek's portable backend (the agent makes one host key per
/// instance: its AVX2 code would be ~27 KB for nothing); panic locations in dependencies named
/// from the crate's directory, not from `$CARGO_HOME/registry/src/<index>/` (~60 bytes less per
/// file).
fn static_rustflags() -> String {
    let mut flags = String::from(STATIC_RUSTFLAGS);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    if let Some(Ok(indexes)) = cargo_home.map(|home| std::fs::read_dir(home.join("registry/src"))) {
        let mut dirs: Vec<String> = indexes
            .filter_map(|entry| entry.ok()?.path().into_os_string().into_string().ok())
            .collect();
        dirs.sort_unstable();
        for dir in dirs {
            flags.push_str(&format!(" --remap-path-prefix={dir}/="));
        }
    }
    flags
}

fn executable_from_messages(messages: &str, bin: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == bin)
        .filter_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"dep"},"executable":null}
not json
{"reason":"compiler-artifact","target":{"name":"metaboot"},"executable":"/t/guest/metaboot"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_from_messages(messages, "metaboot"),
            Some(PathBuf::from("/t/guest/metaboot"))
        );
        assert_eq!(executable_from_messages(messages, "other"), None);
    }

    #[test]
    fn the_guest_agent_bound_is_3_mib_and_the_build_script_checks_the_same() {
        assert_eq!(GUEST_AGENT_MAX_BYTES, 3_145_728);
        let script = std::fs::read_to_string(root().join("agent/build-static.sh")).unwrap();
        let line = script
            .lines()
            .find(|l| l.starts_with("max_bytes="))
            .expect("agent/build-static.sh sets max_bytes");
        assert_eq!(line, format!("max_bytes={GUEST_AGENT_MAX_BYTES}"));
    }

    #[test]
    fn the_build_script_sets_the_same_static_flags() {
        let script = std::fs::read_to_string(root().join("agent/build-static.sh")).unwrap();
        assert!(
            script
                .lines()
                .any(|l| l == format!("rustflags='{STATIC_RUSTFLAGS}'")),
            "agent/build-static.sh's rustflags= line differs from {STATIC_RUSTFLAGS:?}"
        );
        assert!(static_rustflags().starts_with(STATIC_RUSTFLAGS));
    }

    #[test]
    fn the_workspace_root_holds_the_images() {
        assert!(root().join("images/tiny/init").is_file());
    }
}
