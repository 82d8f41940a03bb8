//! gzip user data: detected by magic, every member read and the zero bytes padding a member
//! skipped (as Python's `gzip` module, which cloud-init uses), the output bounded so a small
//! bomb cannot fill memory.

use std::io::Read;

use flate2::bufread::GzDecoder;

/// The two bytes every gzip member starts with.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Largest decompressed user data (and `gz` write_files content): the gzip-bomb bound. Nova
/// stores at most ~48 KiB of user data; 16 MiB leaves room for any honest compression ratio.
pub const MAX_DECOMPRESSED_BYTES: usize = 16 * 1024 * 1024;

/// gzip data that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GzipError {
    /// Not valid gzip (bad header, bad CRC, truncated).
    #[error("Corrupt gzip data")]
    Corrupt(#[source] std::io::Error),
    /// Decompresses to more than the bound.
    #[error("gzip data decompresses to more than {max} bytes")]
    TooLarge { max: usize },
}

/// True when `data` starts with the gzip magic.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&GZIP_MAGIC)
}

/// Decompresses every member of `data`, refusing output over `max` bytes (all members
/// together). Zero bytes after a member are padding, not a member (a block device or a
/// fixed-size field pads so), as Python's `gzip` takes them; anything else there must be a
/// member.
pub fn gunzip(data: &[u8], max: usize) -> Result<Vec<u8>, GzipError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut rest = data;
    loop {
        let mut member = GzDecoder::new(rest);
        let room = limit.saturating_sub(out.len() as u64);
        (&mut member)
            .take(room)
            .read_to_end(&mut out)
            .map_err(GzipError::Corrupt)?;
        if out.len() > max {
            return Err(GzipError::TooLarge { max });
        }
        rest = member.into_inner();
        let padding = rest.iter().take_while(|&&b| b == 0).count();
        rest = &rest[padding..];
        if rest.is_empty() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    /// gzip of `data` (one member).
    pub(crate) fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let data = gz(b"#cloud-config\nhostname: x\n");
        assert!(is_gzip(&data));
        assert_eq!(
            gunzip(&data, 1024).unwrap(),
            b"#cloud-config\nhostname: x\n"
        );
    }

    #[test]
    fn every_member_is_read() {
        let mut data = gz(b"#!/bin/sh\n");
        data.extend(gz(b"echo two members\n"));
        assert_eq!(
            gunzip(&data, 1024).unwrap(),
            b"#!/bin/sh\necho two members\n"
        );
    }

    #[test]
    fn zero_padding_after_a_member_is_skipped() {
        let mut data = gz(b"#cloud-config\n");
        data.extend([0u8; 100]);
        assert_eq!(gunzip(&data, 1024).unwrap(), b"#cloud-config\n");
        // Padding between members too; the bound counts every member.
        data.extend(gz(b"runcmd: []\n"));
        data.extend([0u8; 3]);
        assert_eq!(gunzip(&data, 1024).unwrap(), b"#cloud-config\nruncmd: []\n");
        assert!(matches!(
            gunzip(&data, 20),
            Err(GzipError::TooLarge { max: 20 })
        ));
        // What follows the padding must be a member.
        data.extend(b"not gzip");
        assert!(matches!(gunzip(&data, 1024), Err(GzipError::Corrupt(_))));
    }

    #[test]
    fn a_bomb_is_refused_at_the_bound() {
        let bomb = gz(&vec![0u8; 4 * 1024 * 1024]);
        assert!(bomb.len() < 16 * 1024, "compresses well: {}", bomb.len());
        assert!(matches!(
            gunzip(&bomb, 1024 * 1024),
            Err(GzipError::TooLarge { max }) if max == 1024 * 1024
        ));
        // Exactly at the bound is fine.
        assert_eq!(gunzip(&gz(&[7u8; 1000]), 1000).unwrap().len(), 1000);
        assert!(gunzip(&gz(&[7u8; 1001]), 1000).is_err());
    }

    #[test]
    fn the_default_bound_stops_a_real_bomb() {
        let bomb = gz(&vec![0u8; MAX_DECOMPRESSED_BYTES + 1]);
        assert!(matches!(
            gunzip(&bomb, MAX_DECOMPRESSED_BYTES),
            Err(GzipError::TooLarge { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn output_is_the_input_up_to_the_bound_and_refused_past_it(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
            max in 0usize..6000,
        ) {
            match gunzip(&gz(&data), max) {
                Ok(out) => {
                    proptest::prop_assert!(data.len() <= max);
                    proptest::prop_assert_eq!(out, data);
                }
                Err(GzipError::TooLarge { max: said }) => {
                    proptest::prop_assert!(data.len() > max);
                    proptest::prop_assert_eq!(said, max);
                }
                Err(other) => proptest::prop_assert!(false, "{other}"),
            }
        }

        #[test]
        fn any_bytes_give_at_most_the_bound_or_an_error(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            max in 0usize..1024,
        ) {
            // Starting with the magic, so the decoder gets past the first check.
            let mut input = GZIP_MAGIC.to_vec();
            input.extend(&data);
            if let Ok(out) = gunzip(&input, max) {
                proptest::prop_assert!(out.len() <= max);
            }
        }
    }

    #[test]
    fn corrupt_and_truncated_data_are_errors() {
        let good = gz(b"hello world, hello world");
        let mut corrupt = good.clone();
        let mid = corrupt.len() / 2;
        corrupt[mid] ^= 0xff;
        assert!(matches!(gunzip(&corrupt, 1024), Err(GzipError::Corrupt(_))));
        assert!(matches!(
            gunzip(&good[..good.len() - 4], 1024),
            Err(GzipError::Corrupt(_))
        ));
        assert!(matches!(
            gunzip(&[0x1f, 0x8b, 0, 0], 1024),
            Err(GzipError::Corrupt(_))
        ));
    }
}
