//! Reading a DHCP server's leases: libvirt's status file (what `libvirt_leaseshelper`, the
//! `dhcp-script` of libvirt's dnsmasq, keeps in `/var/lib/libvirt/dnsmasq/<bridge>.status`: a
//! JSON array of `{"ip-address", "mac-address", "hostname", "expiry-time"}`, one entry per
//! lease, an old address of a MAC kept beside its new one until it expires) and dnsmasq's own
//! lease file (`--dhcp-leasefile`: `EXPIRY MAC IP HOSTNAME CLIENT-ID` a line).

use std::net::IpAddr;

/// A lease's MAC: six pairs of hex digits (no sign), read as the registry reads one.
pub use metaboot_proto::eui64::parse_mac;
use serde::Deserialize;

/// One IPv4 or IPv6 lease of an Ethernet MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub ip: IpAddr,
    pub mac: [u8; 6],
    /// Seconds since the epoch when it ends; `None`: never (an infinite lease, written 0).
    pub expiry: Option<u64>,
}

impl Lease {
    /// Whether it still holds at `now` (seconds since the epoch).
    pub fn holds_at(&self, now: u64) -> bool {
        self.expiry.is_none_or(|end| end > now)
    }
}

/// A lease file that cannot be read as one.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("Not a JSON array of leases")]
    Json(#[source] serde_json::Error),
}

/// One entry of libvirt's status file; entries without a MAC (DHCPv6) are skipped.
#[derive(Deserialize)]
struct StatusEntry {
    #[serde(rename = "ip-address")]
    ip: Option<String>,
    #[serde(rename = "mac-address")]
    mac: Option<String>,
    #[serde(rename = "expiry-time")]
    expiry: Option<u64>,
}

fn expiry(value: u64) -> Option<u64> {
    (value != 0).then_some(value)
}

/// The leases of a status file or a dnsmasq lease file (told apart by the `[` a JSON array
/// starts with). Lines or entries that are not an Ethernet lease (DHCPv6 DUIDs, other hardware
/// types) are skipped; a status file that is not JSON is an error, so a torn file never reads
/// as "no leases"; a lease file's line counts only whole (its five fields, then a line break),
/// so a torn one never names a cut address.
pub fn parse(text: &str) -> Result<Vec<Lease>, LeaseError> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    if trimmed.starts_with('[') {
        let entries: Vec<StatusEntry> = serde_json::from_str(trimmed).map_err(LeaseError::Json)?;
        return Ok(entries
            .into_iter()
            .filter_map(|entry| {
                Some(Lease {
                    ip: entry.ip?.parse().ok()?,
                    mac: parse_mac(&entry.mac?)?,
                    expiry: expiry(entry.expiry.unwrap_or(0)),
                })
            })
            .collect());
    }
    // dnsmasq rewrites its file in place: a read while it writes may end inside a line, whose
    // address may be cut short (`198.18.0.2` of `.25`). Only whole lines count: ended by a
    // line break, with all of dnsmasq's fields.
    let whole = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    Ok(whole
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [end, mac, ip, _hostname, _client_id] = fields.as_slice() else {
                return None;
            };
            let end: u64 = end.parse().ok()?;
            Some(Lease {
                ip: ip.parse().ok()?,
                mac: parse_mac(mac)?,
                expiry: expiry(end),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by libvirt 9.0's `libvirt_leaseshelper add`/`old` (VIR_BRIDGE_NAME=tb0): the
    /// MAC ending 01 moved from .7 to .9, its old lease still listed.
    const STATUS: &str = r#"[
  {
    "ip-address": "198.18.5.7",
    "mac-address": "52:54:00:00:00:01",
    "hostname": "host1",
    "expiry-time": 1800000000
  },
  {
    "ip-address": "198.18.5.8",
    "mac-address": "52:54:00:00:00:02",
    "expiry-time": 1800000000
  },
  {
    "ip-address": "198.18.5.9",
    "mac-address": "52:54:00:00:00:01",
    "hostname": "host1",
    "expiry-time": 1800000000
  },
  {
    "ip-address": "fdc6:1200::9",
    "iaid": "12345",
    "client-id": "00:04:aa",
    "expiry-time": 1800000000
  }
]
"#;

    #[test]
    fn libvirt_status_files_read_as_leases() {
        let leases = parse(STATUS).unwrap();
        assert_eq!(leases.len(), 3);
        assert_eq!(leases[2].ip, "198.18.5.9".parse::<IpAddr>().unwrap());
        assert_eq!(leases[2].mac, [0x52, 0x54, 0, 0, 0, 1]);
        assert_eq!(leases[2].expiry, Some(1_800_000_000));
        assert!(leases[2].holds_at(1_799_999_999));
        assert!(!leases[2].holds_at(1_800_000_000));
    }

    #[test]
    fn dnsmasq_lease_files_read_as_leases() {
        let text = "1800000000 52:54:00:00:00:01 198.18.5.7 host1 01:52:54:00:00:00:01\n\
                    0 52:54:00:00:00:02 198.18.5.8 * *\n\
                    duid 00:01:00:01:2c:aa\n\
                    1800000000 1234 fdc6:1200::9 * 00:04:aa\n";
        let leases = parse(text).unwrap();
        assert_eq!(leases.len(), 2);
        assert_eq!(leases[1].expiry, None);
        assert!(leases[1].holds_at(u64::MAX));
    }

    #[test]
    fn a_mac_is_six_pairs_of_hex_digits() {
        assert_eq!(
            parse_mac("52:54:00:00:00:0A"),
            Some([0x52, 0x54, 0, 0, 0, 0x0a])
        );
        for bad in [
            "52:54:00:00:00",
            "52:54:00:00:00:+a",
            "+2:54:00:00:00:01",
            "5:54:00:00:00:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    /// A lease file read while dnsmasq rewrites it in place: its last line cut short (here
    /// inside the address, which would name `.2` instead of `.25`, or before its last fields)
    /// is no lease; the whole lines before it still are.
    #[test]
    fn a_torn_lease_line_is_no_lease() {
        let whole = "1800000000 52:54:00:00:00:01 198.18.5.7 host1 *\n";
        for torn in [
            "1800000000 52:54:00:00:00:0a 198.18.5.2",
            "1800000000 52:54:00:00:00:0a 198.18.5.25 vm",
            "1800000000 52:54:00:00:00:0a 198.18.5.25 vm *",
        ] {
            let leases = parse(&format!("{whole}{torn}")).unwrap();
            assert_eq!(leases.len(), 1, "{torn}");
            assert_eq!(
                leases[0].ip,
                "198.18.5.7".parse::<std::net::IpAddr>().unwrap()
            );
        }
        // A whole line missing fields (not dnsmasq's) is no lease either.
        assert!(
            parse("1800000000 52:54:00:00:00:0a 198.18.5.2\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_torn_status_file_is_an_error_not_an_empty_one() {
        let torn = &STATUS[..STATUS.len() / 2];
        assert!(parse(torn).is_err());
        assert!(parse("").unwrap().is_empty());
        assert!(parse("[]").unwrap().is_empty());
    }
}
