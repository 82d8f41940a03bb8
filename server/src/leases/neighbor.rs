//! Which MAC the host's neighbor table has for a guest address on a bridge (`/proc/net/arp`):
//! the MAC this host sent the connection's replies to. A guest's TCP handshake completes only
//! when those replies reach it, so a request on a connection comes from the machine with that
//! MAC. A guest that took another's address (and answered ARP for it) is caught here even on a
//! bridge without `clean-traffic`.

use std::io;
use std::net::Ipv4Addr;

use super::parse::parse_mac;

/// The kernel's IPv4 neighbor table.
pub const ARP_TABLE: &str = "/proc/net/arp";
/// `ATF_COM`: the entry's MAC is known (not an incomplete entry).
const ATF_COM: u32 = 0x2;

/// The MAC of `ip` on `device` in an `ARP_TABLE` text, when the entry is complete.
pub fn parse_neighbor(table: &str, ip: Ipv4Addr, device: &str) -> Option<[u8; 6]> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [address, _, flags, mac, _, dev] = fields.as_slice() else {
            return None;
        };
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
        let matches = address.parse::<Ipv4Addr>().ok()? == ip && *dev == device;
        (matches && flags & ATF_COM != 0)
            .then(|| parse_mac(mac))
            .flatten()
    })
}

/// The MAC of `ip` on `device` in this namespace's neighbor table (`None`: no complete entry).
pub fn neighbor_mac(ip: Ipv4Addr, device: &str) -> io::Result<Option<[u8; 6]>> {
    let table = std::fs::read_to_string(ARP_TABLE)?;
    Ok(parse_neighbor(&table, ip, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
198.18.20.60     0x1         0x2         52:54:00:20:00:02     *        br-mb
198.18.20.61     0x1         0x0         00:00:00:00:00:00     *        br-mb
198.18.20.62     0x1         0x2         52:54:00:20:00:03     *        br-other
";

    #[test]
    fn only_a_complete_entry_on_the_device_counts() {
        let ip = |text: &str| text.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            parse_neighbor(TABLE, ip("198.18.20.60"), "br-mb"),
            Some([0x52, 0x54, 0, 0x20, 0, 2])
        );
        assert_eq!(parse_neighbor(TABLE, ip("198.18.20.61"), "br-mb"), None);
        assert_eq!(parse_neighbor(TABLE, ip("198.18.20.62"), "br-mb"), None);
        assert_eq!(parse_neighbor(TABLE, ip("198.18.20.99"), "br-mb"), None);
    }
}
