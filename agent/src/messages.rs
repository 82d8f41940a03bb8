//! glibc's message catalogue, answered by the agent: glibc's own messages (`strerror`'s, an
//! assertion's) are looked up in the locale's catalogue through `__dcgettext`, and that lookup
//! links gettext, iconv's converters and their transliteration tables and the dynamic loader
//! into the static binary (25,088 bytes, agent/README.md "Build"). The agent never sets a locale
//! (no `setlocale`: it runs in the C locale, where glibc returns every message as written), so
//! `main.rs` defines `__dcgettext` as [`untranslated`], and the static link takes it instead of
//! glibc's: the same messages, without the code that never finds another.

use std::ffi::{c_char, c_int};

/// glibc's `__dcgettext(domain, msgid, category)` in the C locale: `msgid` itself.
pub extern "C" fn untranslated(
    _domain: *const c_char,
    msgid: *const c_char,
    _category: c_int,
) -> *mut c_char {
    msgid.cast_mut()
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    unsafe extern "C" {
        fn dcgettext(domain: *const c_char, msgid: *const c_char, category: c_int) -> *mut c_char;
    }

    #[test]
    fn glibc_answers_as_untranslated_does_in_the_locale_the_agent_runs_in() {
        for msgid in [
            c"No such file or directory",
            c"Permission denied",
            c"%s%s%s:%u: %s%sAssertion `%s' failed.\n%n",
        ] {
            // SAFETY: NUL-terminated strings; the answer is a NUL-terminated string glibc
            // keeps (or `msgid` itself).
            let glibc = unsafe {
                CStr::from_ptr(dcgettext(
                    c"libc".as_ptr(),
                    msgid.as_ptr(),
                    libc::LC_MESSAGES,
                ))
            };
            let ours = untranslated(c"libc".as_ptr(), msgid.as_ptr(), libc::LC_MESSAGES);
            assert_eq!(ours.cast_const(), msgid.as_ptr());
            assert_eq!(glibc, msgid);
        }
    }
}
