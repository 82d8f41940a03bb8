//! One instance as the read model keeps it: compact (a few hundred bytes, so a million fit in
//! the memory budget), with what its documents and its guest's lookup need. Ids are 16-byte
//! uuids, projects, zones and key-pair lists are shared between instances, and rare fields
//! (meta, passwords) live behind one pointer.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use uuid::Uuid;

use super::user_data::Packer;
use crate::store::{Instance, KeyPair, Port};

/// One port of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRecord {
    pub id: Uuid,
    pub network: Uuid,
    pub mac: [u8; 6],
    pub ip: IpAddr,
    /// Its address on the network's second subnet (dual stack).
    pub second_ip: Option<IpAddr>,
}

impl PortRecord {
    /// Its addresses, the first subnet's first.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        std::iter::once(self.ip).chain(self.second_ip)
    }
}

/// Fields most instances leave empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    pub meta: BTreeMap<String, String>,
    pub admin_pass: Option<String>,
    pub password: Option<String>,
}

/// An instance and its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    pub uuid: Uuid,
    pub ec2_id: i64,
    pub project: Arc<str>,
    pub name: Box<str>,
    /// `None` when the host name is the name.
    pub hostname: Option<Box<str>>,
    pub availability_zone: Option<Arc<str>>,
    pub launch_index: u32,
    pub key_pairs: Arc<[KeyPair]>,
    /// Packed by `user_data::Packer`.
    pub user_data: Option<Box<[u8]>>,
    pub extra: Option<Box<Extra>>,
    /// Oldest first.
    pub ports: Box<[PortRecord]>,
}

impl InstanceRecord {
    pub fn hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.name)
    }

    pub fn password(&self) -> Option<&str> {
        self.extra
            .as_ref()
            .and_then(|extra| extra.password.as_deref())
    }

    /// The same instance with `password` stored.
    pub fn with_password(&self, password: &str) -> Self {
        let mut extra = self.extra.as_deref().cloned().unwrap_or_default();
        extra.password = Some(password.to_owned());
        Self {
            extra: Some(Box::new(extra)),
            ..self.clone()
        }
    }
}

/// Why a registry record could not be kept (only a registry written by something else than
/// metaboot's store gets here).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{what} {text:?} is not a uuid")]
    NotAUuid { what: &'static str, text: String },
    #[error("MAC {0:?} is not six hex bytes")]
    BadMac(String),
}

/// A registry id (always a hyphenated uuid when metaboot's store wrote it).
pub fn parse_id(what: &'static str, text: &str) -> Result<Uuid, RecordError> {
    Uuid::parse_str(text).map_err(|_| RecordError::NotAUuid {
        what,
        text: text.to_owned(),
    })
}

/// The registry's text form of an id (encoded into a buffer: `to_string` would go through
/// the formatting machinery, which costs several times more).
pub fn id_text(id: &Uuid) -> String {
    id.hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_owned()
}

fn parse_mac(text: &str) -> Result<[u8; 6], RecordError> {
    metaboot_proto::eui64::parse_mac(text).ok_or_else(|| RecordError::BadMac(text.to_owned()))
}

/// Length of a MAC address as text (`fa:16:3e:00:00:01`).
const MAC_TEXT_LEN: usize = 17;

/// Lower case, colon separated, as the store writes it; digit by digit (`format!` costs
/// several times more).
pub fn mac_text(mac: &[u8; 6]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(MAC_TEXT_LEN);
    for (index, byte) in mac.iter().enumerate() {
        if index > 0 {
            text.push(':');
        }
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

/// How much the interner may grow past what it held after it was last pruned before the next
/// batch prunes it (and at least [`PRUNE_SLACK`] values more): the values of deleted instances
/// go without a reload, at one pass over the interner per that much growth.
const PRUNE_GROWTH: usize = 2;
/// Values the interner may gain before a batch prunes it, however small it is.
const PRUNE_SLACK: usize = 1024;

/// Shares the values many instances repeat: projects, zones and key-pair lists, each list
/// compared whole (never by a text made of its parts, which two different lists could share).
#[derive(Debug, Default)]
pub struct Interner {
    texts: HashSet<Arc<str>>,
    key_pairs: HashSet<Arc<[KeyPair]>>,
    /// The key-pair list handed out last: a fleet's instances mostly share one, and comparing
    /// with it is cheaper than hashing the list (5% of a start-up).
    last_key_pairs: Option<Arc<[KeyPair]>>,
    /// Values held after the last prune.
    kept: usize,
}

impl Interner {
    pub fn text(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.texts.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.texts.insert(shared.clone());
        shared
    }

    pub fn key_pairs(&mut self, pairs: &[KeyPair]) -> Arc<[KeyPair]> {
        if let Some(last) = &self.last_key_pairs
            && **last == *pairs
        {
            return last.clone();
        }
        let shared = match self.key_pairs.get(pairs) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<[KeyPair]> = Arc::from(pairs);
                self.key_pairs.insert(shared.clone());
                shared
            }
        };
        self.last_key_pairs = Some(shared.clone());
        shared
    }

    /// Forgets values no record uses any more.
    pub fn prune(&mut self) {
        // The last list is held here too: let go of it, or it would never look unused.
        self.last_key_pairs = None;
        self.texts.retain(|text| Arc::strong_count(text) > 1);
        self.key_pairs.retain(|pairs| Arc::strong_count(pairs) > 1);
        self.kept = self.len();
    }

    /// [`Interner::prune`] once it has grown [`PRUNE_GROWTH`] times what it kept at the last
    /// one: between reloads, deleted instances' values are forgotten too.
    pub fn prune_if_grown(&mut self) {
        if self.len() > PRUNE_GROWTH * self.kept + PRUNE_SLACK {
            self.prune();
        }
    }

    pub fn len(&self) -> usize {
        self.texts.len() + self.key_pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builds the record of a store instance and its ports.
pub fn record(
    instance: &Instance,
    ports: &[Port],
    interner: &mut Interner,
    packer: &mut Packer,
) -> Result<InstanceRecord, RecordError> {
    let ports = ports
        .iter()
        .map(|port| {
            Ok(PortRecord {
                id: parse_id("port id", &port.id)?,
                network: parse_id("network id", &port.network_id)?,
                mac: parse_mac(&port.mac)?,
                ip: port.ip,
                second_ip: port.second_ip,
            })
        })
        .collect::<Result<Vec<_>, RecordError>>()?;
    let extra = (!instance.meta.is_empty()
        || instance.admin_pass.is_some()
        || instance.password.as_deref().is_some_and(|p| !p.is_empty()))
    .then(|| {
        Box::new(Extra {
            meta: instance.meta.clone(),
            admin_pass: instance.admin_pass.clone(),
            password: instance.password.clone().filter(|p| !p.is_empty()),
        })
    });
    Ok(InstanceRecord {
        uuid: parse_id("instance uuid", &instance.uuid)?,
        ec2_id: instance.ec2_id,
        project: interner.text(&instance.project),
        name: instance.name.as_str().into(),
        hostname: (instance.hostname != instance.name).then(|| instance.hostname.as_str().into()),
        availability_zone: instance
            .availability_zone
            .as_deref()
            .map(|zone| interner.text(zone)),
        launch_index: instance.launch_index,
        key_pairs: interner.key_pairs(&instance.key_pairs),
        user_data: instance.user_data.as_deref().map(|data| packer.pack(data)),
        extra,
        ports: ports.into_boxed_slice(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_ids_round_trip_and_bad_ones_are_refused() {
        let mac = parse_mac("fa:16:3e:00:0a:ff").unwrap();
        assert_eq!(mac_text(&mac), "fa:16:3e:00:0a:ff");
        for bad in [
            "fa:16:3e:00:0a",
            "fa:16:3e:00:0a:ff:00",
            "zz:16:3e:00:0a:ff",
            // Pairs of hex digits only, as the store writes them.
            "+a:16:3e:00:0a:ff",
            "a:16:3e:00:0a:ff",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
        let id = "d8e02d56-2648-49a3-bf97-6be8f1204f38";
        assert_eq!(id_text(&parse_id("x", id).unwrap()), id);
        assert!(parse_id("x", "web").is_err());
    }

    #[test]
    fn text_forms_are_what_the_formatters_write() {
        for mac in [[0u8; 6], [0xff; 6], [0x0a, 0x10, 0x3e, 0x00, 0x9f, 0xf0]] {
            let [a, b, c, d, e, f] = mac;
            let text = mac_text(&mac);
            assert_eq!(text.len(), MAC_TEXT_LEN);
            assert_eq!(
                text,
                format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
            );
        }
        for id in [
            Uuid::nil(),
            Uuid::max(),
            Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
        ] {
            assert_eq!(id_text(&id), id.hyphenated().to_string());
        }
    }

    #[test]
    fn shared_values_are_kept_once_and_forgotten_when_unused() {
        let mut interner = Interner::default();
        let a = interner.text("project");
        let b = interner.text("project");
        assert!(Arc::ptr_eq(&a, &b));
        let pairs = [KeyPair {
            name: "k".into(),
            kind: "ssh".into(),
            data: "ssh-ed25519 AAAA".into(),
        }];
        assert!(Arc::ptr_eq(
            &interner.key_pairs(&pairs),
            &interner.key_pairs(&pairs)
        ));
        // Lists taken in turn are each kept once (the last one is not the only one shared).
        let other = [KeyPair {
            name: "other".into(),
            ..pairs[0].clone()
        }];
        let first = interner.key_pairs(&pairs);
        let second = interner.key_pairs(&other);
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(&interner.key_pairs(&pairs), &first));
        assert!(Arc::ptr_eq(&interner.key_pairs(&other), &second));
        drop((a, b, first, second));
        interner.prune();
        assert_eq!(interner.len(), 0);
    }

    /// Two lists whose parts joined with a separator read the same (a key's data may hold
    /// any byte, the separator included) are two lists: each instance keeps its own keys.
    #[test]
    fn key_pair_lists_are_told_apart_whole() {
        let pair = |name: &str, data: &str| KeyPair {
            name: name.into(),
            kind: "ssh".into(),
            data: data.into(),
        };
        let two = [
            pair("k1", "ssh-ed25519 AAAA x"),
            pair("k2", "ssh-ed25519 BBBB y"),
        ];
        let crafted = [pair(
            "k1",
            "ssh-ed25519 AAAA x\0k2\0ssh\0ssh-ed25519 BBBB y",
        )];
        let mut interner = Interner::default();
        let first = interner.key_pairs(&crafted);
        // Not the last one handed out, so the lookup goes through the table.
        let _other = interner.key_pairs(&[pair("k3", "ssh-ed25519 CCCC z")]);
        assert_eq!(*interner.key_pairs(&two), two);
        assert_eq!(*interner.key_pairs(&crafted), *first);
    }

    #[test]
    fn the_interner_is_pruned_once_it_has_grown() {
        let mut interner = Interner::default();
        let mut grew = 0;
        for n in 0..PRUNE_SLACK * 3 {
            drop(interner.text(&format!("project-{n}")));
            let before = interner.len();
            interner.prune_if_grown();
            if interner.len() < before {
                grew += 1;
            }
            assert!(interner.len() <= PRUNE_SLACK + 1);
        }
        assert!(grew >= 2, "pruned {grew} times");
        // What records still use is kept.
        let kept = interner.text("kept");
        for n in 0..PRUNE_SLACK * 2 {
            drop(interner.text(&format!("other-{n}")));
            interner.prune_if_grown();
        }
        assert!(Arc::ptr_eq(&kept, &interner.text("kept")));
    }
}
