//! Tests that need root (namespaces, iptables) or other prerequisites: in CI (`CI=true`) a
//! missing prerequisite fails the test; elsewhere the test is skipped with the reason printed.

/// True when running in CI, where every test must run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns false (skip) when `missing` is Some outside CI; panics with the reason in CI.
pub fn require(what: &str, missing: Option<String>) -> bool {
    let Some(reason) = missing else {
        return true;
    };
    if in_ci() {
        panic!("{what} is required in CI but {reason}");
    }
    eprintln!("skipping: {what} is not available here ({reason}); CI runs this test");
    false
}

/// Root, needed for namespaces and iptables.
pub fn require_root() -> bool {
    let missing = (!nix::unistd::Uid::effective().is_root())
        .then(|| "the test is not running as root".to_owned());
    require("root", missing)
}

/// A command on the PATH.
pub fn require_command(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()));
    require(name, (!found).then(|| format!("{name} is not installed")))
}
