//! Display names (network, router, instance, availability zone): the rule of nova's API schema
//! for a server name (`parameter_types.name`): 1 to 255 characters, printable, no whitespace at
//! either end.

use crate::store::error::{StoreError, StoreResult};

/// Longest display name, in characters (nova's and neutron's limit counts characters, not
/// bytes).
pub const MAX_NAME_CHARS: usize = 255;

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}

/// A display name: not empty, at most [`MAX_NAME_CHARS`] characters, no control character,
/// no whitespace at either end (nova refuses ` web` and `web `; a name copied with a stray
/// space would otherwise be one `instance show web` never finds).
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
    if name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{kind} name {name:?} contains control characters: use printable characters only"
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
