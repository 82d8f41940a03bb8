//! Input rules both backends check before they write: CIDRs, addresses, MACs, sizes, names.
//!
//! Every refusal is a `StoreError::Invalid` whose message says what was wrong and what to do.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use metaboot_proto::ssh_key;

use super::allocate::{host_range, ip_from_u128, ip_to_u128};
use super::error::{StoreError, StoreResult};
use super::model::{KeyPair, NewInstance, NewNetwork};

mod display_name;
mod hostname;
pub use display_name::{LAST_NAME_CHAR, MAX_NAME_CHARS, name};
pub use hostname::{
    MAX_DHCP_DOMAIN_BYTES, MAX_HOSTNAME_BYTES, MAX_HOSTNAME_LABEL_BYTES, NOVA_FALLBACK_PREFIX,
    NOVA_HOSTNAME_CHARS, default_hostname, dhcp_domain, hostname, sanitize_hostname,
};

/// Longest user data nova's compute API takes, in base64 characters (the `maxLength` of
/// `user_data` in nova's server schema, docs/protocol.md §1.8).
pub const MAX_USER_DATA_BASE64_CHARS: usize = 65_535;
/// Largest user data the registry stores, in raw bytes: the most whose base64 text
/// ([`base64_len`]) fits [`MAX_USER_DATA_BASE64_CHARS`], so that user data registered here
/// is also what `openstack server create --user-data` takes (49 149 bytes).
pub const MAX_USER_DATA_BYTES: usize = MAX_USER_DATA_BASE64_CHARS / 4 * 3;

/// How many characters `bytes` bytes take in base64 (4 per 3 bytes, the last group padded).
pub const fn base64_len(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}
/// Largest password the password endpoint stores, in bytes (nova: 4 × 255).
pub const MAX_PASSWORD_BYTES: usize = 1_020;
/// Longest project id, in bytes (keystone ids are 32 hex digits; names fit too).
pub const MAX_PROJECT_BYTES: usize = 255;
/// Most `meta` entries per instance (nova's default `metadata_items` quota).
pub const MAX_META_ITEMS: usize = 128;
/// Longest `meta` key, in characters (nova's API schema; its characters are ASCII).
pub const MAX_META_KEY_CHARS: usize = 255;
/// Longest `meta` value, in characters (nova's API schema counts characters, not bytes).
pub const MAX_META_VALUE_CHARS: usize = 255;
/// Most key pairs per instance; real instances have one.
pub const MAX_KEY_PAIRS: usize = 16;
/// Longest key pair name, in characters (nova's API schema).
pub const MAX_KEY_NAME_CHARS: usize = 255;
/// Largest key pair data, in bytes as `meta_data.json` serves it (JSON escaped: a '"', '\\' or
/// line break counts two bytes), so that the largest instance's `meta_data.json` still fits an
/// agent's relay (`server/src/api/meta_data_budget.rs`). A 16384-bit RSA public key is about
/// 2.8 KiB and has nothing to escape.
pub const MAX_KEY_DATA_BYTES: usize = 16_384;
/// Smallest MTU a network may have (the IPv4 minimum, RFC 791).
pub const MIN_MTU: u32 = 68;
/// Largest MTU a network may have (jumbo frames).
pub const MAX_MTU: u32 = 9_216;
/// Smallest MTU of a network with an IPv6 subnet (the IPv6 minimum link MTU, RFC 8200 §5):
/// Linux turns IPv6 off on an interface with a smaller one, and its guest loses its
/// link-local address and so `fe80::a9fe:a9fe`.
pub const IPV6_MIN_MTU: u32 = 1_280;
/// Longest IPv4 prefix of a network: a /29 leaves room for the gateway, the DHCP port and
/// four instances; anything smaller cannot hold an instance next to those two.
pub const MAX_IPV4_PREFIX: u8 = 29;
/// Longest IPv6 prefix of a network (same room as an IPv4 /29).
pub const MAX_IPV6_PREFIX: u8 = 125;

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}

/// A project id: non-empty, no spaces or control characters, at most [`MAX_PROJECT_BYTES`].
pub fn project(project: &str) -> StoreResult<()> {
    if project.is_empty() {
        return Err(invalid(
            "project is empty: give a project id (default: admin)".to_owned(),
        ));
    }
    if project.len() > MAX_PROJECT_BYTES {
        return Err(invalid(format!(
            "project is {} bytes long: use at most {MAX_PROJECT_BYTES}",
            project.len()
        )));
    }
    if project.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(format!(
            "project {project:?} contains spaces or control characters: use an id like 'admin'"
        )));
    }
    Ok(())
}

/// Parses a CIDR written by a user (`198.18.0.0/24`) and checks it with [`cidr`].
pub fn parse_cidr(text: &str) -> StoreResult<IpNet> {
    let net: IpNet = text.trim().parse().map_err(|_| {
        invalid(format!(
            "bad CIDR {text:?}: write it as ADDRESS/PREFIX, e.g. 198.18.0.0/24"
        ))
    })?;
    cidr(net)?;
    Ok(net)
}

/// A network's subnet: no host bits set, and large enough for a gateway, a DHCP port and an
/// instance.
pub fn cidr(net: IpNet) -> StoreResult<()> {
    if net.trunc() != net {
        return Err(invalid(format!(
            "CIDR {net} has host bits set: did you mean {}?",
            net.trunc()
        )));
    }
    let (max, family) = match net {
        IpNet::V4(_) => (MAX_IPV4_PREFIX, "IPv4"),
        IpNet::V6(_) => (MAX_IPV6_PREFIX, "IPv6"),
    };
    if net.prefix_len() > max {
        return Err(invalid(format!(
            "CIDR {net} is too small: an {family} network needs a prefix of /{max} or shorter \
             (room for a gateway, a DHCP port and instances)"
        )));
    }
    if let Some((reserved, what)) = RESERVED_SUBNETS
        .iter()
        .find(|(reserved, _)| reserved.contains(&net) || net.contains(reserved))
    {
        return Err(invalid(format!(
            "CIDR {net} overlaps {reserved}, {what}, which no guest network can use: pick \
             another range (e.g. 198.18.0.0/24)"
        )));
    }
    Ok(())
}

/// Ranges a network's subnet may not overlap, as neutron refuses them: no guest can have
/// such an address (and 0.0.0.0/8 holds the placeholders of learned addresses). Loopback
/// (127.0.0.0/8) stays allowed, unlike in neutron: a chain run in one network namespace
/// stands its guests on loopback addresses (the repository's chain tests and bench do).
pub const RESERVED_SUBNETS: [(IpNet, &str); 4] = [
    (v4(0, 8), "\"this network\""),
    (v4(224, 3), "multicast and reserved"),
    (
        v6(0, 8),
        "IPv6's unspecified, loopback and mapped addresses",
    ),
    (v6(0xff00, 8), "IPv6 multicast"),
];

/// `FIRST.0.0.0/PREFIX`.
const fn v4(first: u8, prefix: u8) -> IpNet {
    match Ipv4Net::new(Ipv4Addr::new(first, 0, 0, 0), prefix) {
        Ok(net) => IpNet::V4(net),
        Err(_) => panic!("a valid IPv4 prefix"),
    }
}

/// `FIRST::/PREFIX`.
const fn v6(first: u16, prefix: u8) -> IpNet {
    match Ipv6Net::new(Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, 0), prefix) {
        Ok(net) => IpNet::V6(net),
        Err(_) => panic!("a valid IPv6 prefix"),
    }
}
/// Parses an IP address; `what` names the flag or field for the message (`--ip`, `gateway`).
pub fn parse_ip(what: &str, text: &str) -> StoreResult<IpAddr> {
    text.trim().parse().map_err(|_| {
        invalid(format!(
            "bad {what} {text:?}: write an IP address such as 198.18.0.10"
        ))
    })
}

/// `ip` is a host address of `net` (inside it, not its network address nor an IPv4
/// broadcast address).
/// `what` names the address ("IP", "gateway", "DHCP address") and `network` the network (its
/// name, or "the new network").
pub fn host_ip(what: &str, ip: IpAddr, network: &str, net: IpNet) -> StoreResult<()> {
    let (first, last) = host_range(net);
    let range = format!(
        "{} to {}",
        ip_from_u128(net, first),
        ip_from_u128(net, last)
    );
    if !net.contains(&ip) {
        return Err(invalid(format!(
            "{what} {ip} is outside network {network} ({net}): pick an address in that CIDR \
             ({range}){}",
            omit_hint(what)
        )));
    }
    let value = ip_to_u128(ip);
    if value < first || value > last {
        let role = if ip == net.network() {
            "network"
        } else {
            "broadcast"
        };
        return Err(invalid(format!(
            "{what} {ip} is the {role} address of network {network} ({net}): pick a host \
             address ({range}){}",
            omit_hint(what)
        )));
    }
    Ok(())
}

fn omit_hint(what: &str) -> &'static str {
    if what == "IP" {
        " or omit the IP to get a free one"
    } else {
        ""
    }
}

/// Normalises a MAC address to lower-case colon form; refuses multicast and all-zero
/// addresses.
pub fn mac(text: &str) -> StoreResult<String> {
    let bad = || {
        invalid(format!(
            "bad MAC {text:?}: write six hex pairs such as fa:16:3e:12:34:56, or omit the MAC \
             to get one"
        ))
    };
    let parts: Vec<&str> = text.trim().split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut octets = [0u8; 6];
    for (octet, part) in octets.iter_mut().zip(&parts) {
        // Hex digits only: `from_str_radix` would also take a sign (`+a`).
        if part.len() != 2 || !part.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *octet = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    let normal = octets
        .iter()
        .map(|octet| format!("{octet:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    if octets[0] & 1 == 1 {
        return Err(invalid(format!(
            "MAC {normal} is a multicast address: use a unicast MAC (even first octet) such as \
             fa:16:3e:12:34:56, or omit the MAC"
        )));
    }
    if octets == [0; 6] {
        return Err(invalid(
            "MAC 00:00:00:00:00:00 is not a usable address: pick another or omit the MAC"
                .to_owned(),
        ));
    }
    Ok(normal)
}

/// User data fits [`MAX_USER_DATA_BYTES`].
pub fn user_data(data: Option<&[u8]>) -> StoreResult<()> {
    match data {
        Some(bytes) if bytes.len() > MAX_USER_DATA_BYTES => Err(invalid(user_data_too_large(
            "user data",
            &bytes.len().to_string(),
        ))),
        _ => Ok(()),
    }
}

/// The refusal of user data (`what`: "user data", or the file it came from) of `size` bytes
/// over [`MAX_USER_DATA_BYTES`], naming both limits.
pub fn user_data_too_large(what: &str, size: &str) -> String {
    format!(
        "{what} is {size} bytes: the limit is {MAX_USER_DATA_BYTES} bytes, whose base64 text \
         is the {MAX_USER_DATA_BASE64_CHARS} characters nova's API takes (compress it with gzip \
         or fetch the rest from a URL)"
    )
}

/// A password (posted by the guest, or the admin password) fits [`MAX_PASSWORD_BYTES`] and has
/// no NUL byte (PostgreSQL's `text` refuses one, SQLite would keep it: refused on both).
pub fn password(what: &str, password: &str) -> StoreResult<()> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid(format!(
            "{what} is {} bytes: the limit is {MAX_PASSWORD_BYTES} bytes",
            password.len()
        )));
    }
    if password.contains('\0') {
        return Err(invalid(format!(
            "{what} contains a NUL byte: use text without NUL (e.g. base64)"
        )));
    }
    Ok(())
}

/// Normalises an instance uuid to the lower-case hyphenated form.
pub fn uuid(text: &str) -> StoreResult<String> {
    uuid::Uuid::parse_str(text.trim())
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            invalid(format!(
                "bad instance uuid {text:?}: write it as 8-4-4-4-12 hex digits, or omit it to \
                 get a new one"
            ))
        })
}

/// A character nova's API schema allows in a metadata key (`^[a-zA-Z0-9-_:. ]{1,255}$`).
fn is_meta_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | ' ')
}

/// Server metadata (`meta`): at most [`MAX_META_ITEMS`] entries, keys and values as nova's API
/// schema takes them (a key of letters, digits, `-`, `_`, `:`, `.` and spaces; up to 255
/// characters each).
pub fn meta(meta: &BTreeMap<String, String>) -> StoreResult<()> {
    if meta.len() > MAX_META_ITEMS {
        return Err(invalid(format!(
            "{} meta entries: the limit is {MAX_META_ITEMS}",
            meta.len()
        )));
    }
    for (key, value) in meta {
        if key.is_empty() {
            return Err(invalid(
                "meta key is empty: write KEY=VALUE with a non-empty KEY".to_owned(),
            ));
        }
        if !key.chars().all(is_meta_key_char) {
            return Err(invalid(format!(
                "meta key {key:?} has a character nova does not allow in one: use letters, \
                 digits, '-', '_', ':', '.' and spaces"
            )));
        }
        if key.len() > MAX_META_KEY_CHARS {
            return Err(invalid(format!(
                "meta key {key:?} is {} characters long: the limit is {MAX_META_KEY_CHARS}",
                key.len()
            )));
        }
        let chars = value.chars().count();
        if chars > MAX_META_VALUE_CHARS {
            return Err(invalid(format!(
                "meta value of {key:?} is {chars} characters long: the limit is \
                 {MAX_META_VALUE_CHARS}"
            )));
        }
    }
    Ok(())
}

/// A key pair name as nova's API allows it (microversion 2.92): letters, digits, '_', '-',
/// '@', '.' and spaces, not starting or ending with a space, 1 to [`MAX_KEY_NAME_CHARS`]. A
/// name is served as `public-keys/0=NAME` in the EC2 tree: an '=' or a line break there would
/// make afterburn drop the key, or add a key entry of the name's choosing.
pub fn key_name(name: &str) -> StoreResult<()> {
    let allowed = "use letters, digits, '_', '-', '@', '.' and spaces";
    if name.is_empty() {
        return Err(invalid(format!("key pair name is empty: {allowed}")));
    }
    if name.chars().count() > MAX_KEY_NAME_CHARS {
        return Err(invalid(format!(
            "key pair name is {} characters long: the limit is {MAX_KEY_NAME_CHARS}",
            name.chars().count()
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@' | '.' | ' ')))
    {
        return Err(invalid(format!(
            "key pair name {name:?} contains {bad:?}: {allowed}"
        )));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(invalid(format!(
            "key pair name {name:?} starts or ends with a space: remove it"
        )));
    }
    Ok(())
}

/// Key pairs: at most [`MAX_KEY_PAIRS`], unique names as [`key_name`] allows, non-empty data
/// of at most [`MAX_KEY_DATA_BYTES`].
pub fn key_pairs(pairs: &[KeyPair]) -> StoreResult<()> {
    if pairs.len() > MAX_KEY_PAIRS {
        return Err(invalid(format!(
            "{} key pairs: the limit is {MAX_KEY_PAIRS}",
            pairs.len()
        )));
    }
    for (index, pair) in pairs.iter().enumerate() {
        key_name(&pair.name)?;
        if pairs[..index].iter().any(|other| other.name == pair.name) {
            return Err(invalid(format!(
                "key pair name {:?} is given twice: rename one of the key files",
                pair.name
            )));
        }
        if pair.data.trim().is_empty() {
            return Err(invalid(format!(
                "key pair {:?} has no key data: give a public key",
                pair.name
            )));
        }
        let served = served_json_bytes(&pair.data);
        if served > MAX_KEY_DATA_BYTES {
            return Err(invalid(format!(
                "key pair {:?} is {served} bytes as meta_data.json serves it (a '\"', '\\' or \
                 line break counts two): the limit is {MAX_KEY_DATA_BYTES}; give a shorter key",
                pair.name
            )));
        }
        if pair.kind != "ssh" && pair.kind != "x509" {
            return Err(invalid(format!(
                "key pair {:?} has type {:?}: use ssh or x509",
                pair.name, pair.kind
            )));
        }
        // A guest writes an SSH key as one line of authorized_keys; a certificate (PEM) has
        // several lines. No other control character belongs in either.
        let allowed = |c: char| {
            !c.is_control() || c == '\t' || (pair.kind == "x509" && matches!(c, '\n' | '\r'))
        };
        if !pair.data.trim_end().chars().all(allowed) {
            return Err(invalid(format!(
                "key pair {:?} has a line break or a control character in its data: an ssh key \
                 is one line of text",
                pair.name
            )));
        }
        if pair.kind == "ssh" {
            ssh_public_key(&pair.name, pair.data.trim_end())?;
        }
    }
    Ok(())
}

/// The one check of an ssh key pair's data, for the store and for `--key-file`
/// (`server/src/admin/keys.rs`) alike: one OpenSSH public key line as sshd reads it from
/// authorized_keys (`[options] type base64 [comment]`, the blob naming the same type).
pub fn ssh_public_key(name: &str, line: &str) -> StoreResult<()> {
    ssh_key::check_public_key_line(line)
        .map(drop)
        .map_err(|fault| {
            invalid(format!(
                "key pair {name:?} is not an OpenSSH public key: {fault}; give the line of the \
             key's .pub file ('ssh-ed25519 AAAA… you@host')"
            ))
        })
}

/// How many bytes `text` takes as a JSON string, without its quotes.
fn served_json_bytes(text: &str) -> usize {
    // Serialising a string cannot fail.
    serde_json::to_string(text).map_or(usize::MAX, |json| json.len() - 2)
}

/// A network's MTU, when given, lies in [`MIN_MTU`]..=[`MAX_MTU`].
pub fn mtu(mtu: Option<u32>) -> StoreResult<()> {
    match mtu {
        Some(value) if !(MIN_MTU..=MAX_MTU).contains(&value) => Err(invalid(format!(
            "MTU {value} is out of range: use {MIN_MTU} to {MAX_MTU}, or omit it"
        ))),
        _ => Ok(()),
    }
}

/// A network with an IPv6 subnet, when given an MTU, has at least [`IPV6_MIN_MTU`].
pub fn ipv6_mtu(new: &NewNetwork) -> StoreResult<()> {
    let ipv6 = std::iter::once(new.cidr)
        .chain(new.second_subnet.map(|subnet| subnet.cidr))
        .find(|cidr| cidr.addr().is_ipv6());
    match (new.mtu, ipv6) {
        (Some(value), Some(cidr)) if value < IPV6_MIN_MTU => Err(invalid(format!(
            "MTU {value} is below {IPV6_MIN_MTU}, the smallest IPv6 allows, and the network \
             has the IPv6 subnet {cidr}: Linux turns IPv6 off on such an interface (guests \
             lose fe80::a9fe:a9fe); use {IPV6_MIN_MTU} or more, or omit it"
        ))),
        _ => Ok(()),
    }
}

/// Refuses a network without DHCP that names a DHCP address, or that is isolated: an isolated
/// network's metadata is served from its DHCP port (as Neutron's `enable_isolated_metadata`
/// needs a DHCP subnet).
pub fn dhcp_choice(new: &NewNetwork) -> StoreResult<()> {
    if !new.no_dhcp {
        return Ok(());
    }
    if let Some(dhcp_ip) = new.dhcp_ip {
        return Err(invalid(format!(
            "--dhcp-ip {dhcp_ip} and --no-dhcp contradict each other: a network without DHCP \
             has no DHCP port; drop one of them"
        )));
    }
    if new.isolated {
        return Err(invalid(
            "an isolated network serves metadata from its DHCP port, so it needs DHCP: drop \
             --no-dhcp, or put the network behind a router instead of --isolated"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Everything about a new network that does not need the database; the gateway and DHCP
/// address must already be filled in (see `allocate::network_addresses`).
pub fn new_network(new: &NewNetwork) -> StoreResult<()> {
    name("network", &new.name)?;
    project(&new.project)?;
    cidr(new.cidr)?;
    mtu(new.mtu)?;
    ipv6_mtu(new)?;
    let label = format!("{:?}", new.name);
    if let Some(gateway) = new.gateway {
        host_ip("gateway", gateway, &label, new.cidr)?;
    }
    if let Some(dhcp_ip) = new.dhcp_ip {
        host_ip("DHCP address", dhcp_ip, &label, new.cidr)?;
    }
    if let (Some(gateway), Some(dhcp_ip)) = (new.gateway, new.dhcp_ip)
        && gateway == dhcp_ip
    {
        return Err(invalid(format!(
            "gateway and DHCP address are both {gateway}: give them different addresses"
        )));
    }
    Ok(())
}

/// Everything about a new instance that does not need the database. Returns the normalised
/// uuid.
pub fn new_instance(new: &NewInstance) -> StoreResult<String> {
    let uuid = uuid(&new.uuid)?;
    name("instance", &new.name)?;
    project(&new.project)?;
    hostname(&new.hostname)?;
    if let Some(zone) = &new.availability_zone {
        name("availability zone", zone)?;
    }
    key_pairs(&new.key_pairs)?;
    user_data(new.user_data.as_deref())?;
    meta(&new.meta)?;
    if let Some(admin_pass) = &new.admin_pass {
        password("admin password", admin_pass)?;
    }
    Ok(uuid)
}

#[cfg(test)]
mod tests;
