//! The image's `/etc/login.defs`, read as shadow-utils reads it (its `getdef.c`) for the
//! settings the agent takes from it: the mode useradd gives a new home, `HOME_MODE`, else
//! `0777 & ~UMASK`, and a new user's password ageing, `PASS_MIN_DAYS`, `PASS_MAX_DAYS`,
//! `PASS_WARN_AGE` (docs/protocol.md §5.4). cloud-init runs useradd, so an image's login.defs
//! decides these (Ubuntu's `HOME_MODE 0750`, a hardened image's `UMASK 077` and
//! `PASS_MAX_DAYS 90`).

use crate::root::Root;

/// The file, under the root.
pub const LOGIN_DEFS: &str = "/etc/login.defs";
/// useradd's `UMASK` when login.defs has none (shadow's `GETDEF_DEFAULT_UMASK`).
pub const DEFAULT_UMASK: u32 = 0o022;
/// The bits `chmod` keeps of a mode (`S_IALLUGO`): useradd passes a larger `HOME_MODE` to
/// chmod, which keeps these.
pub const MODE_BITS: u32 = 0o7777;
/// The largest value shadow's `getdef_num` takes (`INT_MAX`); a larger one is its
/// configuration error, and the default is used.
pub const MAX_NUMBER: u32 = 0x7fff_ffff;

/// How login.defs says "none" for a password ageing setting: useradd's `getdef_num(name, -1)`
/// reads it as it reads a missing one, and the shadow field is left empty.
pub const NO_AGEING: &str = "-1";

/// The password ageing useradd writes into a new user's shadow entry (fields 4 to 6), each
/// `None` where login.defs has no value or [`NO_AGEING`] (useradd's `-1`: the field empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PasswordAgeing {
    pub min_days: Option<u32>,
    pub max_days: Option<u32>,
    pub warn_days: Option<u32>,
}

/// The value of setting `name` in a login.defs text, as `def_load` cuts it: a line is a name,
/// blanks, then the value (blanks and double quotes before it skipped, cut at the next double
/// quote, trailing blanks dropped); `#` starts a comment line; the last line naming it wins.
pub fn value<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim_end_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
        let line = line.trim_start_matches([' ', '\t']);
        if line.starts_with('#') {
            continue;
        }
        let Some((key, rest)) = line.split_once([' ', '\t']) else {
            continue;
        };
        if key == name {
            let rest = rest.trim_start_matches([' ', '\t', '"']);
            found = Some(rest.split('"').next().unwrap_or(rest));
        }
    }
    found
}

/// A number as `getdef_num` reads it (`strtol` with base 0, the whole text): `0750` octal,
/// `0x1e8` hexadecimal, `488` decimal; `None` for anything else, a negative number, or one
/// over [`MAX_NUMBER`].
pub fn number(text: &str) -> Option<u32> {
    let text = text.trim_start();
    let text = text.strip_prefix('+').unwrap_or(text);
    let (digits, radix) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (hex, 16)
        } else if let Some(octal) = text.strip_prefix('0') {
            if octal.is_empty() {
                return Some(0);
            }
            (octal, 8)
        } else {
            (text, 10)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix)
        .ok()
        .filter(|n| *n <= MAX_NUMBER)
}

/// The number setting `name` of a login.defs text; a warning when useradd could not read it
/// (then its default stands in), `example` showing a value it reads.
fn setting(text: &str, name: &str, example: &str, warnings: &mut Vec<String>) -> Option<u32> {
    let given = value(text, name)?;
    let parsed = number(given);
    if parsed.is_none() {
        warnings.push(format!(
            "{LOGIN_DEFS}: {name} {given:?} is not a number useradd reads; its default is used \
             (write e.g. {name} {example})"
        ));
    }
    parsed
}

/// The mode useradd gives a new home under this login.defs text (`None`: no file), with a
/// warning for each setting it could not read (then useradd's default stands in).
pub fn home_mode(text: Option<&str>) -> (u32, Vec<String>) {
    let text = text.unwrap_or("");
    let mut warnings = Vec::new();
    let umask = setting(text, "UMASK", "022", &mut warnings).unwrap_or(DEFAULT_UMASK);
    let mode = setting(text, "HOME_MODE", "0750", &mut warnings).unwrap_or(0o777 & !umask);
    (mode & MODE_BITS, warnings)
}

/// The password ageing useradd gives a new user under this login.defs text (`None`: no
/// file), with a warning for each setting it could not read (then the field is empty, as
/// useradd leaves it).
pub fn password_ageing(text: Option<&str>) -> (PasswordAgeing, Vec<String>) {
    let text = text.unwrap_or("");
    let mut warnings = Vec::new();
    let mut days = |name: &str, example: &str| match value(text, name) {
        Some(NO_AGEING) => None,
        _ => setting(text, name, example, &mut warnings),
    };
    let ageing = PasswordAgeing {
        min_days: days("PASS_MIN_DAYS", "0"),
        max_days: days("PASS_MAX_DAYS", "99999"),
        warn_days: days("PASS_WARN_AGE", "7"),
    };
    (ageing, warnings)
}

/// The root's login.defs text (`None`: no file); one that cannot be read is a warning, and
/// useradd's defaults are used.
pub fn read(root: &Root) -> (Option<String>, Vec<String>) {
    match root.read_optional_string(LOGIN_DEFS) {
        Ok(text) => (text, Vec::new()),
        Err(err) => {
            let (mode, _) = home_mode(None);
            let warning = format!(
                "{LOGIN_DEFS} not read ({err}); useradd's defaults are used (new homes get mode \
                 {mode:04o})"
            );
            (None, vec![warning])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_as_getdef_cuts_them() {
        let text =
            "# HOME_MODE 0700\nUMASK\t\t022\n  HOME_MODE \"0750\" \r\nNAME\nHOME_MODE\t0711\t\n";
        assert_eq!(value(text, "UMASK"), Some("022"));
        assert_eq!(value(text, "HOME_MODE"), Some("0711"), "the last one wins");
        assert_eq!(value("HOME_MODE \"0750\"x\n", "HOME_MODE"), Some("0750"));
        assert_eq!(value("NAME\n", "NAME"), None, "a name without a value");
        assert_eq!(
            value("home_mode 0700\n", "HOME_MODE"),
            None,
            "names are exact"
        );
    }

    #[test]
    fn numbers_are_read_as_strtol_with_base_0() {
        assert_eq!(number("0750"), Some(0o750));
        assert_eq!(number("0x1e8"), Some(0x1e8));
        assert_eq!(number("488"), Some(488));
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("2147483647"), Some(MAX_NUMBER));
        for bad in ["", "08", "0x", "-1", "0750 # strict", "2147483648", "rwx"] {
            assert_eq!(number(bad), None, "{bad}");
        }
    }

    #[test]
    fn home_mode_is_home_mode_else_the_umask_s_complement() {
        assert_eq!(home_mode(None), (0o755, Vec::new()));
        assert_eq!(home_mode(Some("UMASK 027\n")).0, 0o750);
        assert_eq!(home_mode(Some("UMASK 077\nHOME_MODE 0751\n")).0, 0o751);
        assert_eq!(home_mode(Some("#HOME_MODE 0700\nUMASK 022\n")).0, 0o755);
        // As chmod takes it: bits over 07777 dropped; 755 written without its 0 is decimal.
        assert_eq!(home_mode(Some("HOME_MODE 010750\n")).0, 0o750);
        assert_eq!(home_mode(Some("HOME_MODE 755\n")).0, 755 & MODE_BITS);
        let (mode, warnings) = home_mode(Some("UMASK 027\nHOME_MODE 0750 # comment\n"));
        assert_eq!(mode, 0o750, "the UMASK's mode stands in");
        assert_eq!(
            warnings,
            [
                "/etc/login.defs: HOME_MODE \"0750 # comment\" is not a number useradd reads; \
                 its default is used (write e.g. HOME_MODE 0750)"
            ]
        );
    }

    /// A setting login.defs lacks, or gives as `-1`, is an empty shadow field, as useradd's
    /// `getdef_num(name, -1)` and `putspent` leave it.
    #[test]
    fn password_ageing_is_login_defs_else_none() {
        let none = PasswordAgeing {
            min_days: None,
            max_days: None,
            warn_days: None,
        };
        assert_eq!(password_ageing(None), (none, Vec::new()));
        assert_eq!(PasswordAgeing::default(), none);
        let text = "PASS_MAX_DAYS\t90\nPASS_MIN_DAYS 1\nPASS_WARN_AGE 14\n";
        let hardened = PasswordAgeing {
            min_days: Some(1),
            max_days: Some(90),
            warn_days: Some(14),
        };
        assert_eq!(password_ageing(Some(text)), (hardened, Vec::new()));
        let text = "PASS_MAX_DAYS -1\nPASS_MIN_DAYS 0\n";
        let never = PasswordAgeing {
            min_days: Some(0),
            ..none
        };
        assert_eq!(password_ageing(Some(text)), (never, Vec::new()));
        let (ageing, warnings) = password_ageing(Some("PASS_MAX_DAYS ninety\n"));
        assert_eq!(ageing, none);
        assert_eq!(
            warnings,
            [
                "/etc/login.defs: PASS_MAX_DAYS \"ninety\" is not a number useradd reads; its \
                 default is used (write e.g. PASS_MAX_DAYS 99999)"
            ]
        );
    }
}
