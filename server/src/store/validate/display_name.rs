//! Display names (network, router, instance, availability zone): the rule of nova's API schema
//! for a server name (`parameter_types.name`): 1 to 255 characters, printable, no whitespace at
//! either end.
//!
//! Printable is nova's `_is_printable`: no character of a general category C (control, format,
//! private use, unassigned; a `char` is never a surrogate) and no separator but a space (Zs; not
//! U+2028 or U+2029), among the characters of the Basic Multilingual Plane, the only ones its
//! check knows. The
//! categories are those of `unicode-properties` (in the tree already through postgres); a
//! character assigned by a Unicode version newer than nova's Python knows is taken here.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::store::error::{StoreError, StoreResult};

/// Longest display name, in characters (nova's and neutron's limit counts characters, not
/// bytes).
pub const MAX_NAME_CHARS: usize = 255;

/// The last character nova's name check knows: it builds its character class from the Basic
/// Multilingual Plane only (`range(0xFFFF)`, nova's `parameter_types.py`), so it refuses every
/// character past it (emoji among them).
pub const LAST_NAME_CHAR: char = '\u{FFFE}';

/// What keeps `c` out of a name nova's API takes, if anything.
fn unprintable(c: char) -> Option<&'static str> {
    if c > LAST_NAME_CHAR {
        return Some("outside the Basic Multilingual Plane");
    }
    match c.general_category() {
        GeneralCategory::Control => Some("a control character"),
        GeneralCategory::Format => Some("an invisible formatting character"),
        GeneralCategory::PrivateUse => Some("a private-use character"),
        GeneralCategory::Unassigned => Some("not an assigned character"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("a line break")
        }
        // Letters, marks, numbers, punctuation, symbols and spaces (Zs).
        _ => None,
    }
}

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}

/// A display name: not empty, at most [`MAX_NAME_CHARS`] characters, printable as nova has it
/// (see the module), no whitespace at either end (nova refuses ` web` and `web `; a name copied
/// with a stray space would otherwise be one `instance show web` never finds).
pub fn name(kind: &str, name: &str) -> StoreResult<()> {
    if name.trim().is_empty() {
        return Err(invalid(format!(
            "{kind} name is empty: give the {kind} a name"
        )));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "{kind} name is {chars} characters long: use at most {MAX_NAME_CHARS}"
        )));
    }
    if let Some((c, what)) = name.chars().find_map(|c| Some((c, unprintable(c)?))) {
        return Err(invalid(format!(
            "{kind} name {name:?} contains U+{:04X}, {what}, which nova's API does not take in \
             a name: use printable characters only",
            u32::from(c)
        )));
    }
    if name.trim() != name {
        return Err(invalid(format!(
            "{kind} name {name:?} starts or ends with whitespace, which nova does not allow in \
             a name: remove it ({:?})",
            name.trim()
        )));
    }
    Ok(())
}
