//! `#include` / `#include-once`: one URL per line, each fetched (bounded, retried) and decoded
//! like user data in turn. A URL is `http://` to an IP address; its `user:password@` is sent as
//! basic authentication, as cloud-init's requests sends it, and masked in every message
//! (`source/url.rs`).

/// Most URLs followed in one user-data document, includes of includes counted.
pub const MAX_INCLUDE_URLS: usize = 16;
/// Deepest chain of includes.
pub const MAX_INCLUDE_DEPTH: usize = 4;
/// Largest included document (before gzip decompression).
pub const MAX_INCLUDE_BYTES: u64 = 1024 * 1024;
/// Longest one include is retried, a budget of its own whatever is left of the run's deadline:
/// a URL that never answers does not take the time of the ones after it (cloud-init: 10 tries
/// of 5 s).
pub const MAX_INCLUDE_FETCH_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Most redirects an include URL's GET follows (as cloud-init's `read_file_or_url`, through
/// requests and its limit of 30); the metadata service's documents follow none. Each target is
/// checked as the URL is (an `https://` one or a host name is an error naming it), and the
/// URL's basic authentication goes to its own host and port only (`source/http.rs`).
pub const MAX_INCLUDE_REDIRECTS: u32 = 30;

/// Something that can GET a URL: the guest agent's HTTP client, or a test double.
pub trait Fetch {
    /// The body at `url`; `Ok(None)` when absent (404). The error is one line for the report.
    fn fetch(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, String>;
}

/// The URLs of an include part: every non-empty line that is not a comment. A line may start
/// with the marker (`#include URL`, `#include-once URL`, any case), as cloud-init's
/// `_do_include` reads it: the marker is taken off and the rest is a URL.
pub fn urls(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .map(|line| without_marker(line.trim()).trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// `line` without a leading `#include-once` or `#include` (matched in any case).
fn without_marker(line: &str) -> &str {
    for marker in ["#include-once", "#include"] {
        if line
            .get(..marker.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(marker))
        {
            return &line[marker.len()..];
        }
    }
    line
}

/// An include fetcher that refuses everything (no network available).
#[derive(Debug, Clone, Copy)]
pub struct NoFetch;

impl Fetch for NoFetch {
    fn fetch(&self, url: &str, _limit: u64) -> Result<Option<Vec<u8>>, String> {
        Err(format!("cannot fetch {url}: no HTTP client"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_per_line_comments_and_blanks_skipped() {
        let body = b"#include\nhttp://10.0.0.1/a\n\n  # comment\n  http://10.0.0.1/b  \n";
        assert_eq!(urls(body), ["http://10.0.0.1/a", "http://10.0.0.1/b"]);
    }

    #[test]
    fn a_url_on_the_marker_line_is_read() {
        assert_eq!(urls(b"#include http://10.0.0.1/a"), ["http://10.0.0.1/a"]);
        let body = b"#include-once  http://10.0.0.1/a\n#INCLUDE http://10.0.0.1/b\n#include\n";
        assert_eq!(urls(body), ["http://10.0.0.1/a", "http://10.0.0.1/b"]);
    }
}
