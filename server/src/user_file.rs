//! Files a user names on the command line or in the configuration (the configuration file, the
//! vendor data, the shared secret): read whole up to a limit, and the faults opening or reading
//! one that are the user's to fix (the CLI exits 2 for them, and the units do not restart).

use std::io::{self, ErrorKind, Read};

/// Whether `kind`, met opening or reading a file the user named, is theirs to fix: a missing
/// file, one the process may not read, a directory. Anything else is the machine's.
pub fn is_users_fault(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::IsADirectory
    )
}

/// `file`'s bytes when it holds at most `limit`; `None` when it holds more. One byte past the
/// limit is read, never more: a larger file (or `/dev/zero`) is refused for its size without
/// being read.
pub fn read_at_most(file: impl Read, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() <= limit).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_up_to_its_limit_and_refused_past_it() {
        assert_eq!(read_at_most(&b"abc"[..], 3).unwrap(), Some(b"abc".to_vec()));
        assert_eq!(read_at_most(&b"abcd"[..], 3).unwrap(), None);
        let endless = std::fs::File::open("/dev/zero").unwrap();
        assert_eq!(read_at_most(endless, 1024).unwrap(), None);
    }

    #[test]
    fn missing_unreadable_and_directories_are_the_users_fault() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::PermissionDenied,
            ErrorKind::IsADirectory,
        ] {
            assert!(is_users_fault(kind), "{kind:?}");
        }
        assert!(!is_users_fault(ErrorKind::Interrupted));
    }
}
