//! What a qcow2's own header names, read by the harness before qemu-img opens the file. A
//! qemu-img without the fix for CVE-2024-4467 (QEMU before 9.0.2, unless the distribution
//! backported it) opens a qcow2's external data file even for `qemu-img info`, a `json:{…}`
//! spec included, and it runs as root: so a file whose header has the external-data-file bit
//! set is refused before qemu-img sees it, and so is one whose header names a backing file that
//! is a protocol or a `json:` spec. The offsets are those of QEMU's qcow2 specification.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::layer::{self, Refusal};

/// The first bytes of a qcow2 (and of the old qcow, version 1): `QFI\xfb`.
pub const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// Where the big-endian u32 version is (2 or 3 for qcow2).
pub const VERSION_OFFSET: usize = 4;

/// Where the big-endian u64 offset of the backing file's name is (0: none).
pub const BACKING_FILE_OFFSET_OFFSET: usize = 8;

/// Where the big-endian u32 length of the backing file's name is.
pub const BACKING_FILE_SIZE_OFFSET: usize = 16;

/// Most bytes of a backing file's name QEMU reads (`qcow2_do_open` refuses a longer one itself,
/// opening nothing).
pub const MAX_BACKING_NAME_BYTES: u32 = 1023;

/// The first version whose header has feature fields (and can have a data file).
pub const FEATURES_VERSION: u32 = 3;

/// Where a version 3 header has its big-endian u64 incompatible features.
pub const INCOMPATIBLE_FEATURES_OFFSET: usize = 72;

/// Incompatible feature bit 2: the data is in an external data file.
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;

/// Where a version 3 header has its big-endian u32 length (its extensions follow it).
pub const HEADER_LENGTH_OFFSET: usize = 100;

/// Header extension type of the external data file's name (`DATA`).
pub const DATA_FILE_EXTENSION: u32 = 0x4441_5441;

/// Bytes of the file read for the header and its extensions. The external-data-file bit is
/// always within them; a data file's name past them (qemu-img puts it at byte 112) is only not
/// quoted in the refusal.
pub const HEADER_READ_BYTES: usize = 64 * 1024;

/// What a data file is called in a refusal when the header names none (QEMU then needs it
/// given on its command line, and refuses to open the image without it).
pub const UNNAMED_DATA_FILE: &str = "(which its header does not name)";

/// What the first [`HEADER_READ_BYTES`] of a file say, when it is a qcow2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Header {
    /// Its version.
    pub version: u32,
    /// Whether the external-data-file bit is set.
    pub data_file: bool,
    /// The data file's name, from its header extension, when within the bytes read.
    pub data_file_name: Option<String>,
    /// Where the backing file's name is and its length, when it names one.
    pub backing: Option<(u64, u32)>,
}

/// Big-endian u32 at `at`, if the bytes are there.
fn be_u32(head: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(head.get(at..at + 4)?.try_into().ok()?))
}

/// Big-endian u64 at `at`, if the bytes are there.
fn be_u64(head: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(head.get(at..at + 8)?.try_into().ok()?))
}

/// The qcow2 header at the start of `head` (the file's first bytes), or `None` when it is not
/// one (no magic, or too short to be one: qemu-img does not take it for a qcow2 either).
pub fn parse(head: &[u8]) -> Option<Qcow2Header> {
    if head.get(..QCOW2_MAGIC.len())? != QCOW2_MAGIC {
        return None;
    }
    let version = be_u32(head, VERSION_OFFSET)?;
    let backing_offset = be_u64(head, BACKING_FILE_OFFSET_OFFSET)?;
    let backing_size = be_u32(head, BACKING_FILE_SIZE_OFFSET)?;
    let backing =
        (backing_offset != 0 && backing_size != 0).then_some((backing_offset, backing_size));
    let mut header = Qcow2Header {
        version,
        data_file: false,
        data_file_name: None,
        backing,
    };
    if version < FEATURES_VERSION {
        return Some(header);
    }
    // A file cut short of its features: QEMU refuses its header as too short.
    header.data_file = be_u64(head, INCOMPATIBLE_FEATURES_OFFSET)
        .is_some_and(|features| features & INCOMPAT_DATA_FILE != 0);
    if header.data_file {
        header.data_file_name = be_u32(head, HEADER_LENGTH_OFFSET)
            .and_then(|length| data_file_name(head, usize::try_from(length).ok()?));
    }
    Some(header)
}

/// The data file's name in the header extensions that start at `at`, if within `head`.
fn data_file_name(head: &[u8], mut at: usize) -> Option<String> {
    // Each extension is a u32 type, a u32 length and its data padded to 8 bytes; type 0 ends
    // them. Every step moves at least 8 bytes, so the loop ends within `head`.
    loop {
        let kind = be_u32(head, at)?;
        let length = usize::try_from(be_u32(head, at + 4)?).ok()?;
        if kind == 0 {
            return None;
        }
        let data = at.checked_add(8)?;
        if kind == DATA_FILE_EXTENSION {
            let name = head.get(data..data.checked_add(length)?)?;
            return Some(String::from_utf8_lossy(name).into_owned());
        }
        at = data.checked_add(length.checked_next_multiple_of(8)?)?;
    }
}

/// Refuses `file` (a regular file, absolute) when its header, read here, shows a qcow2 with an
/// external data file or a backing file named by a protocol or a `json:` spec: called before
/// qemu-img opens it. Anything else (not a qcow2, a header QEMU would refuse) is qemu-img's
/// to judge. An error when the file cannot be read.
pub fn check(file: &Path) -> std::io::Result<Result<(), Refusal>> {
    let mut f = File::open(file)?;
    let mut head = Vec::with_capacity(HEADER_READ_BYTES);
    (&mut f)
        .take(HEADER_READ_BYTES as u64)
        .read_to_end(&mut head)?;
    let Some(header) = parse(&head) else {
        return Ok(Ok(()));
    };
    if header.data_file {
        return Ok(Err(Refusal::DataFile {
            file: file.display().to_string(),
            data_file: header
                .data_file_name
                .unwrap_or_else(|| UNNAMED_DATA_FILE.to_owned()),
        }));
    }
    let Some((offset, size)) = header.backing else {
        return Ok(Ok(()));
    };
    if size > MAX_BACKING_NAME_BYTES {
        return Ok(Ok(()));
    }
    // As QEMU reads it: what the file has there (past its end, QEMU reads zeros), as a C
    // string.
    let mut name = Vec::with_capacity(size as usize);
    f.seek(SeekFrom::Start(offset))?;
    f.take(u64::from(size)).read_to_end(&mut name)?;
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
    let name = String::from_utf8_lossy(name);
    if layer::has_protocol(&name) {
        return Ok(Err(Refusal::NotAPlainFile {
            backing: name.into_owned(),
            what: "a protocol or a json: spec, not a path",
        }));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 3 qcow2 header of `HEADER_LENGTH` bytes, then `extensions`.
    fn header(features: u64, extensions: &[(u32, &[u8])]) -> Vec<u8> {
        const HEADER_LENGTH: u32 = 112;
        let mut head = vec![0u8; HEADER_LENGTH as usize];
        head[..4].copy_from_slice(&QCOW2_MAGIC);
        head[VERSION_OFFSET..VERSION_OFFSET + 4].copy_from_slice(&3u32.to_be_bytes());
        head[INCOMPATIBLE_FEATURES_OFFSET..INCOMPATIBLE_FEATURES_OFFSET + 8]
            .copy_from_slice(&features.to_be_bytes());
        head[HEADER_LENGTH_OFFSET..HEADER_LENGTH_OFFSET + 4]
            .copy_from_slice(&HEADER_LENGTH.to_be_bytes());
        for (kind, data) in extensions {
            head.extend_from_slice(&kind.to_be_bytes());
            head.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
            head.extend_from_slice(data);
            head.resize(head.len().next_multiple_of(8), 0);
        }
        head.extend_from_slice(&[0; 8]);
        head
    }

    #[test]
    fn the_data_file_bit_and_name_are_read_from_the_header() {
        let plain = parse(&header(0, &[])).unwrap();
        assert!(!plain.data_file && plain.backing.is_none(), "{plain:?}");
        // Bit 0 (dirty) and 1 (corrupt) are not the data file's.
        assert!(!parse(&header(0b11, &[])).unwrap().data_file);
        let named = parse(&header(
            INCOMPAT_DATA_FILE,
            &[(0x6803_f857, &[0; 24]), (DATA_FILE_EXTENSION, b"/dev/sda")],
        ))
        .unwrap();
        assert!(named.data_file);
        assert_eq!(named.data_file_name.as_deref(), Some("/dev/sda"));
        let unnamed = parse(&header(INCOMPAT_DATA_FILE, &[])).unwrap();
        assert!(unnamed.data_file && unnamed.data_file_name.is_none());
        // Cut short of its features: none, as QEMU reads it.
        let short = header(INCOMPAT_DATA_FILE, &[]);
        assert!(
            !parse(&short[..INCOMPATIBLE_FEATURES_OFFSET])
                .unwrap()
                .data_file
        );
        // An extension that runs past the bytes read names nothing.
        let mut cut = header(INCOMPAT_DATA_FILE, &[(DATA_FILE_EXTENSION, b"/dev/sda")]);
        cut.truncate(124);
        assert_eq!(parse(&cut).unwrap().data_file_name, None);
        // A version 2 header has no features.
        let mut v2 = header(INCOMPAT_DATA_FILE, &[]);
        v2[VERSION_OFFSET..VERSION_OFFSET + 4].copy_from_slice(&2u32.to_be_bytes());
        assert!(!parse(&v2).unwrap().data_file);
        // Not a qcow2.
        assert_eq!(parse(b"KDMV"), None);
        assert_eq!(parse(b"QFI"), None);
        assert_eq!(parse(&[0; 512]), None);
    }

    #[test]
    fn the_limits_are_qemus() {
        assert_eq!(&QCOW2_MAGIC, b"QFI\xfb");
        assert_eq!(INCOMPAT_DATA_FILE, 4);
        assert_eq!(&DATA_FILE_EXTENSION.to_be_bytes(), b"DATA");
        // QEMU's own bound on a backing file's name.
        assert_eq!(MAX_BACKING_NAME_BYTES, 1023);
        // The extensions qemu-img writes start at byte 112, well within.
        const { assert!(HEADER_READ_BYTES >= 4096) };
    }

    #[test]
    fn a_data_file_is_refused_even_when_its_name_is_past_the_bytes_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("far.qcow2");
        let padding = vec![0u8; HEADER_READ_BYTES];
        let head = header(
            INCOMPAT_DATA_FILE,
            &[(0x6803_f857, &padding), (DATA_FILE_EXTENSION, b"/dev/sda")],
        );
        std::fs::write(&file, &head).unwrap();
        assert_eq!(
            check(&file).unwrap(),
            Err(Refusal::DataFile {
                file: file.display().to_string(),
                data_file: UNNAMED_DATA_FILE.into(),
            })
        );
        // Within them, it is named.
        let head = header(
            INCOMPAT_DATA_FILE,
            &[
                (0x6803_f857, &padding[..64]),
                (DATA_FILE_EXTENSION, b"/dev/sda"),
            ],
        );
        std::fs::write(&file, &head).unwrap();
        assert!(matches!(
            check(&file).unwrap(),
            Err(Refusal::DataFile { data_file, .. }) if data_file == "/dev/sda"
        ));
        // A file with no qcow2 header passes to qemu-img.
        std::fs::write(&file, b"# Disk DescriptorFile\n").unwrap();
        assert_eq!(check(&file).unwrap(), Ok(()));
    }

    #[test]
    fn a_long_backing_name_is_left_to_qemu_img() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("long.qcow2");
        let mut head = header(0, &[]);
        let at = head.len();
        let name = format!("json:{}", "x".repeat(MAX_BACKING_NAME_BYTES as usize));
        head.extend_from_slice(name.as_bytes());
        head[BACKING_FILE_OFFSET_OFFSET..BACKING_FILE_OFFSET_OFFSET + 8]
            .copy_from_slice(&(at as u64).to_be_bytes());
        let size = |n: usize| u32::try_from(n).unwrap().to_be_bytes();
        head[BACKING_FILE_SIZE_OFFSET..BACKING_FILE_SIZE_OFFSET + 4]
            .copy_from_slice(&size(name.len()));
        std::fs::write(&file, &head).unwrap();
        // Longer than QEMU reads: qemu-img refuses it, opening nothing.
        assert_eq!(check(&file).unwrap(), Ok(()));
        head[BACKING_FILE_SIZE_OFFSET..BACKING_FILE_SIZE_OFFSET + 4]
            .copy_from_slice(&size(MAX_BACKING_NAME_BYTES as usize));
        std::fs::write(&file, &head).unwrap();
        assert!(matches!(
            check(&file).unwrap(),
            Err(Refusal::NotAPlainFile { .. })
        ));
        // Cut short by the end of the file, as QEMU reads it: the part that is there.
        head.truncate(at + "json:x".len());
        std::fs::write(&file, &head).unwrap();
        assert!(matches!(
            check(&file).unwrap(),
            Err(Refusal::NotAPlainFile { backing, .. }) if backing == "json:x"
        ));
        // A plain name passes.
        head.truncate(at);
        head.extend_from_slice(b"base.qcow2\0");
        head[BACKING_FILE_SIZE_OFFSET..BACKING_FILE_SIZE_OFFSET + 4].copy_from_slice(&size(11));
        std::fs::write(&file, &head).unwrap();
        assert_eq!(check(&file).unwrap(), Ok(()));
    }
}
