//! A `disk_setup` entry's partition table: its `table_type` and `layout` read as cloud-init
//! reads them, the sfdisk script that makes it, and whether a disk's table already matches.

use serde_json::Value;

use super::probe::Table;

/// Most partitions of an MBR table (primary ones: cloud-init makes no extended partition).
pub const MAX_MBR_PARTITIONS: usize = 4;
/// Most partitions of a GPT (the usual entry array's 128).
pub const MAX_GPT_PARTITIONS: usize = 128;

/// sgdisk's codes cloud-init users write for GPT partitions (`82` is `8200`), with their type
/// GUIDs (the ones sfdisk writes).
pub const GPT_TYPES: &[(&str, &str)] = &[
    ("0700", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
    ("8200", "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"),
    ("8300", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
    ("8301", "8DA63339-0007-60C0-C436-083AC8230908"),
    ("8302", "933AC7E1-2EB4-4F13-B844-0E14E2AEF915"),
    ("8304", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
    ("8e00", "E6D6D379-F507-44C2-A23C-238F2A3DF928"),
    ("ef00", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
    ("ef02", "21686148-6449-6E6F-744E-656564454649"),
    ("fd00", "A19D880F-05FC-4D3B-A006-743F0F84911E"),
];

/// The kind of partition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableType {
    /// `mbr` (cloud-init's default): a DOS table.
    Mbr,
    Gpt,
}

impl TableType {
    /// `table_type` as given (`mbr` when absent).
    pub fn parse(value: Option<&Value>) -> Result<TableType, String> {
        match value {
            None | Some(Value::Null) => Ok(TableType::Mbr),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("mbr") => Ok(TableType::Mbr),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("gpt") => Ok(TableType::Gpt),
            Some(other) => Err(format!("table_type {other} is neither mbr nor gpt")),
        }
    }

    /// sfdisk's name of it (and `sfdisk --json`'s `label`).
    pub fn label(self) -> &'static str {
        match self {
            TableType::Mbr => "dos",
            TableType::Gpt => "gpt",
        }
    }

    fn max(self) -> usize {
        match self {
            TableType::Mbr => MAX_MBR_PARTITIONS,
            TableType::Gpt => MAX_GPT_PARTITIONS,
        }
    }

    /// A partition type as this table writes it (and sfdisk reads it back): a hex id on MBR
    /// (`83`, `8e`), a type GUID on GPT, from sgdisk's code (`8300`, or `83` as cloud-init pads
    /// it) or the GUID itself.
    pub fn partition_type(self, given: &str) -> Result<String, String> {
        let given = given.trim();
        match self {
            TableType::Mbr => {
                let hex = given.trim_start_matches("0x").to_ascii_lowercase();
                if hex.is_empty() || hex.len() > 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "partition type {given:?} is no MBR type id (a hex number such as 83 or 82)"
                    ));
                }
                Ok(hex)
            }
            TableType::Gpt => {
                if is_guid(given) {
                    return Ok(given.to_ascii_uppercase());
                }
                let mut code = given.to_ascii_lowercase();
                while code.len() < 4 {
                    code.push('0');
                }
                GPT_TYPES
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map(|(_, guid)| (*guid).to_owned())
                    .ok_or_else(|| {
                        let known: Vec<&str> = GPT_TYPES.iter().map(|(c, _)| *c).collect();
                        format!(
                            "GPT partition type {given:?} is not known: give a type GUID or one of \
                             sgdisk's codes {}",
                            known.join(", ")
                        )
                    })
            }
        }
    }
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// One partition of a layout: its share of the disk and its type, if given.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub percent: f64,
    pub kind: Option<String>,
}

/// What `layout` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// `false`, absent or empty: the disk is not partitioned.
    Keep,
    /// `true`: one partition over the whole disk.
    Whole,
    /// `remove`: the file systems and the partition table wiped.
    Remove,
    /// A list of percentages, or `[percentage, type]` pairs; the last takes what is left.
    Parts(Vec<Part>),
}

impl Layout {
    /// `layout` as given, for a table of `table`.
    pub fn parse(value: Option<&Value>, table: TableType) -> Result<Layout, String> {
        let list = match value {
            None | Some(Value::Null | Value::Bool(false)) => return Ok(Layout::Keep),
            Some(Value::Bool(true)) => return Ok(Layout::Whole),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("remove") => {
                return Ok(Layout::Remove);
            }
            Some(Value::String(s)) if s.is_empty() => return Ok(Layout::Keep),
            Some(Value::Array(list)) if list.is_empty() => return Ok(Layout::Keep),
            Some(Value::Array(list)) => list,
            Some(other) => {
                return Err(format!(
                    "layout {other} is not true, false, remove or a list of percentages"
                ));
            }
        };
        if list.len() > table.max() {
            return Err(format!(
                "layout has {} partitions; a {} table takes at most {}",
                list.len(),
                table.label(),
                table.max()
            ));
        }
        let mut parts = Vec::with_capacity(list.len());
        for item in list {
            let (size, kind) = match item {
                Value::Array(pair) if pair.len() == 2 => (&pair[0], Some(&pair[1])),
                Value::Array(_) => {
                    return Err(format!(
                        "partition {item} is not [percentage, type] (two values)"
                    ));
                }
                size => (size, None),
            };
            let percent = size
                .as_f64()
                .filter(|p| *p > 0.0 && *p <= 100.0)
                .ok_or_else(|| format!("partition size {size} is not a percentage (1 to 100)"))?;
            let kind = match kind {
                None => None,
                Some(Value::String(s)) => Some(table.partition_type(s)?),
                Some(Value::Number(n)) => Some(table.partition_type(&n.to_string())?),
                Some(other) => return Err(format!("partition type {other} is not a type")),
            };
            parts.push(Part { percent, kind });
        }
        let before_last: f64 = parts[..parts.len() - 1].iter().map(|p| p.percent).sum();
        if before_last >= 100.0 {
            return Err(format!(
                "the partitions before the last take {before_last}% of the disk, nothing is left \
                 for the last"
            ));
        }
        Ok(Layout::Parts(parts))
    }

    /// Whether `found` already is this layout, as cloud-init judges it: for `true`, any table
    /// with a partition; for a list, the same number of partitions, and the same types where
    /// the layout names them.
    pub fn matches(&self, table: TableType, found: Option<&Table>) -> bool {
        let Some(found) = found else { return false };
        match self {
            Layout::Keep | Layout::Remove => false,
            Layout::Whole => !found.types.is_empty(),
            Layout::Parts(parts) => {
                found.label == table.label()
                    && found.types.len() == parts.len()
                    && parts.iter().zip(&found.types).all(|(part, kind)| {
                        part.kind
                            .as_ref()
                            .is_none_or(|want| want.eq_ignore_ascii_case(kind))
                    })
            }
        }
    }

    /// The sfdisk script that makes this layout on a disk of `sectors` logical sectors: each
    /// partition's size is its share of the disk (sfdisk aligns the starts), the last takes
    /// what is left; no type is the table's Linux file system type.
    pub fn script(&self, table: TableType, sectors: u64) -> String {
        let mut script = format!("label: {}\n", table.label());
        let whole = [Part {
            percent: 100.0,
            kind: None,
        }];
        let parts: &[Part] = match self {
            Layout::Parts(parts) => parts,
            _ => &whole,
        };
        for (i, part) in parts.iter().enumerate() {
            let mut fields = Vec::new();
            if i + 1 < parts.len() {
                // cloud-init's `int(size * percent / 100)`.
                let size = (sectors as f64 * part.percent / 100.0) as u64;
                fields.push(format!("size={size}"));
            }
            if let Some(kind) = &part.kind {
                fields.push(format!("type={kind}"));
            }
            if fields.is_empty() {
                // Every default: the rest of the disk, Linux.
                fields.push("type=L".to_owned());
            }
            script.push_str(&fields.join(", "));
            script.push('\n');
        }
        script
    }
}
