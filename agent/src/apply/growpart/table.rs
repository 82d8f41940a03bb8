//! What the partition table code shares: a partition's growth, the error of a table that
//! cannot be grown, and little-endian fields.

use std::io;

/// A partition's size before and after, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grown {
    pub from: u64,
    pub to: u64,
}

/// A partition table that cannot be grown, or a disk that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot {what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl TableError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        TableError::Invalid(message.into())
    }

    pub(crate) fn io(what: &'static str, source: io::Error) -> Self {
        Self::io_owned(what.to_owned(), source)
    }

    pub(crate) fn io_owned(what: String, source: io::Error) -> Self {
        TableError::Io { what, source }
    }
}

pub(crate) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

pub(crate) fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}
