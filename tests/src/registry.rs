//! Registering what a test needs in a chain's registry through the real CLI: a network behind
//! a router, and instances at fixed addresses on it.

use crate::chain::Chain;

/// Runs a `--json` registry command that must succeed and returns `field` of what it printed.
#[track_caller]
pub fn created(chain: &Chain, args: &[&str], field: &str) -> String {
    let printed = chain
        .registry(args)
        .unwrap_or_else(|err| panic!("{args:?}: {err:#}"));
    printed[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {printed}"))
        .to_owned()
}

/// A network named `net` on `cidr` and a router `r` in front of it: (network id, router id).
#[track_caller]
pub fn routed_network(chain: &Chain, cidr: &str) -> (String, String) {
    let network = created(chain, &["network", "create", "net", "--cidr", cidr], "id");
    let router = created(
        chain,
        &["router", "create", "r", "--network", &network],
        "id",
    );
    (network, router)
}

/// An instance `name` on `network` (id or name) at `ip`: its uuid.
#[track_caller]
pub fn instance(chain: &Chain, name: &str, network: &str, ip: &str) -> String {
    let args = ["instance", "create", name, "--network", network, "--ip", ip];
    created(chain, &args, "uuid")
}
