//! passwd / group / shadow / gshadow editing (the tiny image has no useradd): entries are
//! changed in place, lines metaboot does not touch are kept byte for byte, and each file is
//! replaced atomically with its mode and owner.

use std::borrow::Cow;
use std::path::Path;

use crate::apply::login_defs::PasswordAgeing;
use crate::fsutil::{self, PathError, WriteOptions};
use crate::root::Root;
use crate::state::result::unix_now;

/// The account files, under the root.
pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";
pub const SHADOW: &str = "/etc/shadow";
pub const GSHADOW: &str = "/etc/gshadow";

/// First uid/gid of a normal user (Debian's UID_MIN).
pub const UID_MIN: u32 = 1000;
/// Last uid/gid of a normal user (Debian's UID_MAX).
pub const UID_MAX: u32 = 59999;
/// First uid/gid of a system account.
pub const SYS_UID_MIN: u32 = 100;
/// Last uid/gid of a system account.
pub const SYS_UID_MAX: u32 = 999;

/// The longest user or group name, in bytes (a trailing `$` counted): shadow's
/// `USER_NAME_MAX_LENGTH`, the size of utmp's `ut_user`, which useradd checks.
pub const MAX_NAME_LEN: usize = 32;

/// Account database failures.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{0} is missing; cannot manage accounts")]
    NoPasswd(String),
    #[error("No free {0} id left in range {1}-{2}")]
    NoFreeId(&'static str, u32, u32),
    #[error(
        "Invalid account name {0:?} (want letters, digits, . _ -; not starting with -; at most \
         {max} bytes)",
        max = MAX_NAME_LEN
    )]
    BadName(String),
    #[error("Invalid value for {0}: must not contain ':' or a newline")]
    BadField(&'static str),
    #[error("No such user {0:?} in {PASSWD}")]
    NoSuchUser(String),
}

/// A colon-separated account file: entries addressed by their first field, every other line
/// (comments, blank or malformed lines, NIS `+` lines) kept as it was. Lines are bytes: a
/// field in another encoding (a Latin-1 gecos) is kept byte for byte, and read as text only
/// where metaboot looks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColonFile {
    lines: Vec<Vec<u8>>,
    /// Fields of a new entry (7 for passwd, 4 for group, 9 for shadow).
    width: usize,
    changed: bool,
}

impl ColonFile {
    /// Parses `text`.
    pub fn parse(text: &[u8], width: usize) -> Self {
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        let lines = if text.is_empty() {
            Vec::new()
        } else {
            text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
        };
        ColonFile {
            lines,
            width,
            changed: false,
        }
    }

    /// The file's bytes (always newline-terminated).
    pub fn render(&self) -> Vec<u8> {
        let mut out = self.lines.join(&b'\n');
        if !out.is_empty() {
            out.push(b'\n');
        }
        out
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.lines.iter().position(|line| {
            line.contains(&b':') && line.split(|&b| b == b':').next() == Some(name.as_bytes())
        })
    }

    /// The fields of `name`'s entry (bytes that are not UTF-8 read as U+FFFD).
    pub fn get(&self, name: &str) -> Option<Vec<String>> {
        self.index(name).map(|i| {
            fields(&self.lines[i])
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect()
        })
    }

    /// Every entry's fields, in order (bytes that are not UTF-8 read as U+FFFD).
    pub fn entries(&self) -> impl Iterator<Item = Vec<Cow<'_, str>>> {
        self.lines
            .iter()
            .filter(|l| l.contains(&b':') && !l.starts_with(b"#") && !l.starts_with(b"+"))
            .map(|l| fields(l).map(String::from_utf8_lossy).collect())
    }

    /// Sets field `field` of `name`'s entry (padding short entries), the other fields kept byte
    /// for byte; false when absent.
    pub fn set(&mut self, name: &str, field: usize, value: &str) -> bool {
        let Some(i) = self.index(name) else {
            return false;
        };
        let mut fields: Vec<&[u8]> = fields(&self.lines[i]).collect();
        if fields.len() <= field {
            fields.resize(field + 1, b"");
        }
        if fields[field] != value.as_bytes() {
            fields[field] = value.as_bytes();
            self.lines[i] = fields.join(&b':');
            self.changed = true;
        }
        true
    }

    /// Appends an entry (padded to the file's width).
    pub fn push(&mut self, mut fields: Vec<String>) {
        if fields.len() < self.width {
            fields.resize(self.width, String::new());
        }
        self.lines.push(fields.join(":").into_bytes());
        self.changed = true;
    }

    /// True when an edit changed the text.
    pub fn changed(&self) -> bool {
        self.changed
    }
}

/// The colon-separated fields of one line.
fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b':')
}

/// A user as passwd knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

impl User {
    /// The owner for this user's files.
    pub fn owner(&self) -> fsutil::Owner {
        fsutil::Owner {
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// Checks a user or group name as useradd would (`[A-Za-z0-9._-]`, optional trailing `$`, not
/// starting with `-`, not `.` or `..`, at most [`MAX_NAME_LEN`] bytes).
pub fn check_name(name: &str) -> Result<(), UsersError> {
    let body = name.strip_suffix('$').unwrap_or(name);
    let ok = !body.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !body.starts_with('-')
        // `/home/.` and `/home/..` are /home and /: never a new user's home.
        && body != "."
        && body != ".."
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(UsersError::BadName(name.to_owned()))
    }
}

/// Checks a value written into a colon-separated field.
pub fn check_field(what: &'static str, value: &str) -> Result<(), UsersError> {
    if value.contains([':', '\n', '\r']) {
        Err(UsersError::BadField(what))
    } else {
        Ok(())
    }
}

/// Days since the epoch: shadow's "last change" field.
pub fn today() -> u64 {
    unix_now() / 86_400
}

/// passwd, group, shadow and gshadow of one root, edited together (a clone is a snapshot to
/// roll back to).
#[derive(Debug, Clone)]
pub struct Accounts {
    root: Root,
    pub passwd: ColonFile,
    pub group: ColonFile,
    /// `None` when the image has no shadow file (created on the first password set).
    pub shadow: Option<ColonFile>,
    pub gshadow: Option<ColonFile>,
}

impl Accounts {
    /// Loads the account files of `root`; passwd must exist.
    pub fn load(root: &Root) -> Result<Self, UsersError> {
        let read = |path: &str| {
            root.read_optional(path)
                .map_err(PathError::fail("read", root.host_path(path)))
        };
        let passwd = read(PASSWD)?.ok_or_else(|| UsersError::NoPasswd(PASSWD.to_owned()))?;
        Ok(Accounts {
            root: root.clone(),
            passwd: ColonFile::parse(&passwd, 7),
            group: ColonFile::parse(&read(GROUP)?.unwrap_or_default(), 4),
            shadow: read(SHADOW)?.map(|t| ColonFile::parse(&t, 9)),
            gshadow: read(GSHADOW)?.map(|t| ColonFile::parse(&t, 4)),
        })
    }

    /// Writes every changed file atomically (shadow files new: 0640 as on Debian), together:
    /// when one cannot be written none is (on a run's staged root). passwd goes last: a user
    /// exists once passwd names it, so a crash between two renames leaves at most an unused
    /// shadow or group entry, which the next run completes, never a user without its shadow
    /// entry (the next run would take it as an existing user and never add one).
    pub fn save(&self) -> Result<(), UsersError> {
        let files = [
            (SHADOW, self.shadow.as_ref(), 0o640),
            (GSHADOW, self.gshadow.as_ref(), 0o640),
            (GROUP, Some(&self.group), 0o644),
            (PASSWD, Some(&self.passwd), 0o644),
        ];
        let texts: Vec<(&Path, Vec<u8>, WriteOptions)> = files
            .into_iter()
            .filter_map(|(path, file, mode)| {
                let file = file.filter(|f| f.changed())?;
                Some((Path::new(path), file.render(), WriteOptions::keep_or(mode)))
            })
            .collect();
        let writes: Vec<(&Path, &[u8], WriteOptions)> = texts
            .iter()
            .map(|(path, text, options)| (*path, text.as_slice(), *options))
            .collect();
        self.root.write_all_or_none(&writes)?;
        Ok(())
    }

    /// The user `name`, if passwd has it.
    pub fn user(&self, name: &str) -> Option<User> {
        let f = self.passwd.get(name)?;
        Some(User {
            name: name.to_owned(),
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            home: f.get(5).cloned().unwrap_or_else(|| "/".to_owned()),
            shell: f.get(6).cloned().unwrap_or_default(),
        })
    }

    /// The gid of group `name`.
    pub fn gid(&self, name: &str) -> Option<u32> {
        self.group.get(name)?.get(2)?.parse().ok()
    }

    /// Whether `name` has a shadow entry but no passwd entry: what a run cut short between
    /// writing shadow and passwd leaves of a user it created ([`Accounts::save`] writes shadow
    /// and group before passwd), its group among it.
    pub fn left_by_a_cut_run(&self, name: &str) -> bool {
        self.passwd.get(name).is_none()
            && self.shadow.as_ref().is_some_and(|s| s.get(name).is_some())
    }

    /// Whether a group has the id `gid` (`useradd -g 100` takes a number as well as a name).
    pub fn has_gid(&self, gid: u32) -> bool {
        Self::used_ids(&self.group).contains(&gid)
    }

    fn used_ids(file: &ColonFile) -> Vec<u32> {
        file.entries()
            .filter_map(|f| f.get(2).and_then(|id| id.parse().ok()))
            .collect()
    }

    /// A free id: normal ids count up from the highest used, system ids down from the top.
    fn free_id(used: &[u32], system: bool, prefer: Option<u32>) -> Result<u32, UsersError> {
        if let Some(id) = prefer.filter(|id| !used.contains(id)) {
            return Ok(id);
        }
        let (lo, hi, kind) = if system {
            (SYS_UID_MIN, SYS_UID_MAX, "system")
        } else {
            (UID_MIN, UID_MAX, "user")
        };
        let found = if system {
            (lo..=hi).rev().find(|id| !used.contains(id))
        } else {
            let next = used
                .iter()
                .filter(|id| (lo..=hi).contains(*id))
                .max()
                .map_or(lo, |m| m + 1);
            (next..=hi).chain(lo..next).find(|id| !used.contains(id))
        };
        found.ok_or(UsersError::NoFreeId(kind, lo, hi))
    }

    /// Creates group `name` if missing; returns its gid. `prefer` is used when free.
    pub fn ensure_group(
        &mut self,
        name: &str,
        system: bool,
        prefer: Option<u32>,
    ) -> Result<u32, UsersError> {
        check_name(name)?;
        if let Some(gid) = self.gid(name) {
            return Ok(gid);
        }
        let gid = Self::free_id(&Self::used_ids(&self.group), system, prefer)?;
        self.group.push(vec![
            name.into(),
            "x".into(),
            gid.to_string(),
            String::new(),
        ]);
        if let Some(gshadow) = &mut self.gshadow {
            gshadow.push(vec![name.into(), "!".into(), String::new(), String::new()]);
        }
        Ok(gid)
    }

    /// Whether `user` belongs to `group`: named in its member list, or its primary group.
    pub fn in_group(&self, group: &str, user: &str) -> bool {
        let Some(fields) = self.group.get(group) else {
            return false;
        };
        let primary = self.user(user).map(|u| u.gid.to_string());
        fields
            .get(3)
            .is_some_and(|m| m.split(',').any(|m| m == user))
            || (primary.is_some() && fields.get(2) == primary.as_ref())
    }

    /// Adds `user` to the member list of `group` (which must exist).
    pub fn add_member(&mut self, group: &str, user: &str) {
        let add = |file: &mut ColonFile, field: usize| {
            if let Some(fields) = file.get(group) {
                let current = fields.get(field).cloned().unwrap_or_default();
                let mut members: Vec<&str> = current.split(',').filter(|m| !m.is_empty()).collect();
                if !members.contains(&user) {
                    members.push(user);
                    file.set(group, field, &members.join(","));
                }
            }
        };
        add(&mut self.group, 3);
        if let Some(gshadow) = &mut self.gshadow {
            add(gshadow, 3);
        }
    }

    /// Creates a user entry (passwd + locked shadow entry). The caller creates the home.
    pub fn create_user(&mut self, new: &NewUser) -> Result<User, UsersError> {
        check_name(&new.name)?;
        for (what, value) in [
            ("gecos", &new.gecos),
            ("home", &new.home),
            ("shell", &new.shell),
        ] {
            check_field(what, value)?;
        }
        let uid = Self::free_id(&Self::used_ids(&self.passwd), new.system, new.uid)?;
        self.passwd.push(vec![
            new.name.clone(),
            "x".into(),
            uid.to_string(),
            new.gid.to_string(),
            new.gecos.clone(),
            new.home.clone(),
            new.shell.clone(),
        ]);
        self.shadow_entry(&new.name, new.ageing);
        self.user(&new.name)
            .ok_or_else(|| UsersError::NoSuchUser(new.name.clone()))
    }

    /// The user that has `uid`, if any.
    pub fn uid_owner(&self, uid: u32) -> Option<String> {
        self.passwd
            .entries()
            .find(|fields| fields.get(2).and_then(|id| id.parse::<u32>().ok()) == Some(uid))
            .and_then(|fields| fields.first().map(|name| name.to_string()))
    }

    /// A uid for a new user: `prefer` if free, else the next free one.
    pub fn next_uid(&self, system: bool, prefer: Option<u32>) -> Result<u32, UsersError> {
        Self::free_id(&Self::used_ids(&self.passwd), system, prefer)
    }

    /// Makes sure `name` has a shadow entry (creating the shadow file if needed) and that its
    /// passwd password field points there (`x`). A new entry gets `ageing` (`None`: the fields
    /// empty, no ageing, as `useradd --system` leaves them).
    fn shadow_entry(&mut self, name: &str, ageing: Option<PasswordAgeing>) -> &mut ColonFile {
        // A hash that passwd held inline, if any, moves to shadow.
        let inline = self
            .passwd
            .get(name)
            .and_then(|f| f.get(1).cloned())
            .filter(|p| p != "x")
            .unwrap_or_else(|| "!".to_owned());
        self.passwd.set(name, 1, "x");
        let shadow = self.shadow.get_or_insert_with(|| ColonFile {
            lines: Vec::new(),
            width: 9,
            changed: true,
        });
        if shadow.get(name).is_none() {
            let mut fields = vec![name.into(), inline, today().to_string()];
            fields.extend(
                ageing
                    .map(|a| {
                        [a.min_days, a.max_days, a.warn_days]
                            .map(|d| d.map(|d| d.to_string()).unwrap_or_default())
                    })
                    .unwrap_or_default(),
            );
            shadow.push(fields);
        }
        shadow
    }

    /// The password field of `name` in shadow (or passwd without shadow).
    pub fn password_field(&self, name: &str) -> Option<String> {
        self.shadow
            .as_ref()
            .and_then(|s| s.get(name))
            .or_else(|| self.passwd.get(name))
            .and_then(|f| f.get(1).cloned())
    }

    /// Sets `name`'s password hash; `expire` forces a change at next login (last change 0).
    pub fn set_password_hash(
        &mut self,
        name: &str,
        hash: &str,
        expire: bool,
    ) -> Result<(), UsersError> {
        check_field("password hash", hash)?;
        if self.passwd.get(name).is_none() {
            return Err(UsersError::NoSuchUser(name.to_owned()));
        }
        let last_change = if expire {
            "0".to_owned()
        } else {
            today().to_string()
        };
        let shadow = self.shadow_entry(name, Some(PasswordAgeing::default()));
        shadow.set(name, 1, hash);
        shadow.set(name, 2, &last_change);
        Ok(())
    }

    /// Locks `name`'s password (`!` prefix), as `passwd -l`.
    pub fn lock(&mut self, name: &str) -> Result<(), UsersError> {
        let current = self
            .password_field(name)
            .ok_or_else(|| UsersError::NoSuchUser(name.to_owned()))?;
        if !current.starts_with('!') {
            self.shadow_entry(name, Some(PasswordAgeing::default()))
                .set(name, 1, &format!("!{current}"));
        }
        Ok(())
    }

    /// Unlocks `name`'s password, as `passwd -u`: only when a password remains afterwards.
    pub fn unlock(&mut self, name: &str) -> Result<bool, UsersError> {
        let current = self
            .password_field(name)
            .ok_or_else(|| UsersError::NoSuchUser(name.to_owned()))?;
        let rest = current.trim_start_matches('!');
        if current.starts_with('!') && !rest.is_empty() && rest != "*" {
            self.shadow_entry(name, Some(PasswordAgeing::default()))
                .set(name, 1, rest);
            return Ok(true);
        }
        Ok(false)
    }
}

/// What `create_user` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub uid: Option<u32>,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
    pub system: bool,
    /// Its shadow entry's password ageing; `None` for none (a system user).
    pub ageing: Option<PasswordAgeing>,
}

#[cfg(test)]
mod tests;
