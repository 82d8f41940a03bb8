//! Passwords (docs/protocol.md §5.3, `cc_set_passwords`): `$6$` hashes with a 16-character salt
//! that glibc's crypt verifies, random passwords, and the plan of which user gets what from
//! `chpasswd`, `password` and the config drive's `admin_pass`.

pub mod ahead;

use sha_crypt::{PasswordHasher, ShaCrypt};

use crate::apply::users::Accounts;
use crate::userdata::cloud_config::{CloudConfig, OneOrMany};

/// Salt bytes drawn per hash: 12 bytes encode to exactly the 16 salt characters glibc uses
/// (sha-crypt's default of 16 bytes gives 22, which glibc truncates, so `crypt(pw, stored)`
/// would not reproduce the stored string).
pub const SALT_BYTES: usize = 12;
/// Length of a generated random password (cloud-init's `rand_user_password`).
pub const RANDOM_PASSWORD_LEN: usize = 20;
/// Longest clear-text password hashed (nova's admin password limit is 1020 bytes; longer input
/// only makes sha-crypt slower).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Password handling failures.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("Password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("Password contains a newline or NUL")]
    BadCharacter,
    #[error("No randomness available")]
    Random(#[source] getrandom::Error),
    #[error("Hashing failed: {0}")]
    Hash(String),
}

/// `$6$rounds=5000$<16 chars>$<86 chars>` for `password`, with a fresh random salt: one made
/// ahead for it (`passwords/ahead.rs`), else made now.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    match ahead::take(password) {
        Some(hash) => Ok(hash),
        None => hash_now(password),
    }
}

/// Starts hashing `passwords` ahead, on a second CPU (`passwords/ahead.rs`); those that cannot
/// be hashed are left to [`hash_password`] and its error. Returns whether it started.
pub fn hash_ahead(passwords: Vec<String>) -> bool {
    ahead::start(passwords, |text| hash_now(text).ok())
}

/// [`hash_password`], made now.
fn hash_now(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(PasswordError::Random)?;
    hash_with_salt(password, &salt)
}

/// The hash of `password` with these salt bytes (base64-encoded by sha-crypt before use).
pub fn hash_with_salt(password: &str, salt: &[u8]) -> Result<String, PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.contains(['\n', '\r', '\0']) {
        return Err(PasswordError::BadCharacter);
    }
    ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), salt)
        .map(|hash| hash.to_string())
        .map_err(|err| PasswordError::Hash(err.to_string()))
}

/// True for a crypt hash cloud-init recognises: `$1$`, `$2a$`, `$2y$`, `$5$`, `$6$`, each followed
/// by at least a salt and a digest.
pub fn is_hash(value: &str) -> bool {
    ["$1$", "$2a$", "$2y$", "$5$", "$6$"].iter().any(|prefix| {
        value
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.split('$').filter(|p| !p.is_empty()).count() >= 2)
    })
}

/// True for a value in crypt(3)'s modular form, `$id$…` with at least two fields after the id
/// (yescrypt's `$y$j9T$salt$hash`, bcrypt's `$2b$12$…`, scrypt's `$7$…$…`, and every form
/// [`is_hash`] knows): what `chpasswd.users` takes as a hash without a `type`, as cloud-init
/// passes such an entry to `chpasswd -e` as it is.
pub fn is_crypt(value: &str) -> bool {
    let Some(rest) = value.strip_prefix('$') else {
        return false;
    };
    let Some((id, fields)) = rest.split_once('$') else {
        return false;
    };
    let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
    id_ok && fields.split('$').filter(|f| !f.is_empty()).count() >= 2
}

/// A random password of [`RANDOM_PASSWORD_LEN`] characters with at least one digit, one lower,
/// one upper case letter and one punctuation character.
pub fn random_password() -> Result<String, PasswordError> {
    const CLASSES: [&[u8]; 4] = [
        b"0123456789",
        b"abcdefghijklmnopqrstuvwxyz",
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        b"!#$%&()*+,-./;<=>?@[]^_{|}~",
    ];
    let all: Vec<u8> = CLASSES.concat();
    loop {
        let mut bytes = [0u8; RANDOM_PASSWORD_LEN * 2];
        getrandom::fill(&mut bytes).map_err(PasswordError::Random)?;
        // Rejection sampling keeps the choice uniform.
        let limit = 256 - 256 % all.len();
        let chars: Vec<u8> = bytes
            .iter()
            .filter(|&&b| usize::from(b) < limit)
            .map(|&b| all[usize::from(b) % all.len()])
            .take(RANDOM_PASSWORD_LEN)
            .collect();
        if chars.len() == RANDOM_PASSWORD_LEN
            && CLASSES
                .iter()
                .all(|class| chars.iter().any(|c| class.contains(c)))
        {
            return Ok(String::from_utf8_lossy(&chars).into_owned());
        }
    }
}

/// The console text for generated passwords, byte for byte as cloud-init's `cc_set_passwords`
/// writes it to `/dev/console`: its heading ends in a newline of its own before the blank line
/// its format adds, then one `user:password` line each.
pub fn random_banner(passwords: &[(String, String)]) -> String {
    let lines: Vec<String> = passwords
        .iter()
        .map(|(user, password)| format!("{user}:{password}"))
        .collect();
    format!(
        "Set the following 'random' passwords\n\n{}\n",
        lines.join("\n")
    )
}

/// What a user's password becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewPassword {
    /// Clear text, hashed before it is stored.
    Text(String),
    /// A crypt hash stored as given.
    Hash(String),
    /// Generated, printed on the console, never stored in clear.
    Random,
}

/// The password changes `chpasswd` and `password` ask for, in order, plus warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<(String, NewPassword)>,
    /// Force a change at first login (`chpasswd.expire`, default true).
    pub expire: bool,
    pub warnings: Vec<String>,
}

impl Plan {
    /// True when the plan sets `user`'s password.
    pub fn sets(&self, user: &str) -> bool {
        self.changes.iter().any(|(name, _)| name == user)
    }
}

/// The `chpasswd.users` type that asks for a random password, in capitals: cloud-init's
/// `get_users_by_type` compares types as written (`random` is no type it knows).
pub const TYPE_RANDOM: &str = "RANDOM";

/// The `chpasswd.list` values that ask for a random password (cloud-init's `R` and `RANDOM`).
const RANDOM_WORDS: [&str; 2] = ["R", "RANDOM"];

fn classify(value: &str) -> NewPassword {
    if RANDOM_WORDS.contains(&value) {
        NewPassword::Random
    } else if is_hash(value) {
        NewPassword::Hash(value.to_owned())
    } else {
        NewPassword::Text(value.to_owned())
    }
}

/// The warning for a `chpasswd.users` password used as text that reads as a request for a
/// random one: set as given, as cloud-init 22.4 does, but said.
fn literal_random(user: &str, password: &str) -> Option<String> {
    RANDOM_WORDS.contains(&password).then(|| {
        format!("chpasswd: {user}: password is the literal text {password}; use type: RANDOM")
    })
}

/// What cloud-init's `get_users_by_type` takes a `chpasswd.users` entry without a `password`
/// for: this text, set as the entry's `type` says (a hash when it has none), never a random
/// password (only `type: RANDOM` is one).
pub const MISSING_PASSWORD: &str = "RANDOM";

/// The warning for a `chpasswd.users` entry without a password (never a secret: there is none).
fn missing_password(user: &str, outcome: &str) -> String {
    format!(
        "chpasswd: {user}: no password given; {outcome} the text {MISSING_PASSWORD}, as \
         cloud-init sets it (give a password, or type: RANDOM for a random one)"
    )
}

/// Builds the plan from the config; `default_user` receives `password`. Warnings name users
/// and line numbers, never a password.
pub fn plan(config: &CloudConfig, default_user: Option<&str>) -> Plan {
    let mut plan = Plan {
        expire: config
            .chpasswd
            .as_ref()
            .and_then(|c| c.expire)
            .unwrap_or(true),
        ..Plan::default()
    };
    let chpasswd = config.chpasswd.clone().unwrap_or_default();
    if let Some(users) = &chpasswd.users {
        for user in users {
            // The types as cloud-init compares them, exactly: `type: random` is none of them,
            // and the entry is skipped.
            let change = match (&user.password, user.kind.as_deref()) {
                (_, Some(TYPE_RANDOM)) => NewPassword::Random,
                // cloud-init reads a missing password as the text `RANDOM`, then as its type
                // says: as text, the password is the word; as a hash (no type), the field is
                // the word, which no password matches. Nothing is made, nothing printed.
                (None, Some("text")) => {
                    plan.warnings
                        .push(missing_password(&user.name, "its password is"));
                    NewPassword::Text(MISSING_PASSWORD.to_owned())
                }
                (None, None | Some("hash")) => {
                    plan.warnings.push(missing_password(
                        &user.name,
                        "no password opens it: the field is",
                    ));
                    NewPassword::Hash(MISSING_PASSWORD.to_owned())
                }
                (Some(pw), Some("text")) => {
                    plan.warnings.extend(literal_random(&user.name, pw));
                    NewPassword::Text(pw.0.clone())
                }
                (Some(pw), Some("hash")) => NewPassword::Hash(pw.0.clone()),
                (Some(pw), None) if is_crypt(pw) => NewPassword::Hash(pw.0.clone()),
                (Some(pw), None) => {
                    plan.warnings
                        .push(literal_random(&user.name, pw).unwrap_or_else(|| {
                        format!(
                            "chpasswd: password of {} has no type and is not a hash; used as text",
                            user.name
                        )
                    }));
                    NewPassword::Text(pw.0.clone())
                }
                (_, Some(other)) => {
                    plan.warnings.push(format!(
                        "chpasswd: unknown type {other:?} for {}; skipped, as cloud-init skips it \
                         (write type: {TYPE_RANDOM}, text or hash, in that case)",
                        user.name
                    ));
                    continue;
                }
            };
            plan.changes.push((user.name.clone(), change));
        }
    }
    if let Some(list) = &chpasswd.list {
        let lines: Vec<String> = match list {
            OneOrMany::One(text) => text.lines().map(str::to_owned).collect(),
            OneOrMany::Many(items) => items.clone(),
        };
        for (number, line) in lines.iter().map(|l| l.trim()).enumerate() {
            if line.is_empty() {
                continue;
            }
            match line.split_once(':') {
                Some((user, value)) => plan.changes.push((user.to_owned(), classify(value))),
                // The line may be a password whose colon was forgotten: say where, not what.
                None => plan.warnings.push(format!(
                    "chpasswd.list: line {} is not user:password; skipped",
                    number + 1
                )),
            }
        }
    }
    // An empty `password` sets nothing, as in cloud-init. `chpasswd` takes its place only when
    // it names someone: `users: []` or `list: ""` is no list to cloud-init (`if not (users_list
    // or plist) and password`), so `password` still goes to the default user.
    let names_anyone = chpasswd
        .users
        .as_ref()
        .is_some_and(|users| !users.is_empty())
        || chpasswd.list.as_ref().is_some_and(|list| match list {
            OneOrMany::One(text) => !text.is_empty(),
            OneOrMany::Many(items) => !items.is_empty(),
        });
    if let Some(password) = config.password.as_ref().filter(|p| !p.is_empty())
        && !names_anyone
    {
        match default_user {
            Some(user) => plan.changes.push((user.to_owned(), classify(password))),
            None => plan.warnings.push(
                "password: no default user (none in metaboot.yaml, or `users` leaves \
                     `default` out); ignored"
                    .to_owned(),
            ),
        }
    }
    plan
}

/// The outcome of applying a plan.
#[derive(Debug, Default)]
pub struct Applied {
    /// Users whose password was set.
    pub users: Vec<String>,
    /// `(user, password)` for generated passwords: for the console only, never for a file.
    pub random: Vec<(String, String)>,
    /// One line per user that could not be changed.
    pub errors: Vec<String>,
}

/// Sets the passwords of `changes` in `accounts` (saved by the caller).
pub fn apply(accounts: &mut Accounts, changes: &[(String, NewPassword)], expire: bool) -> Applied {
    let mut applied = Applied::default();
    for (user, change) in changes {
        let hash = match change {
            NewPassword::Hash(hash) => Ok(hash.clone()),
            NewPassword::Text(text) => hash_password(text),
            NewPassword::Random => random_password().and_then(|pw| {
                let hash = hash_password(&pw)?;
                applied.random.push((user.clone(), pw));
                Ok(hash)
            }),
        };
        let result = hash.map_err(|e| e.to_string()).and_then(|hash| {
            accounts
                .set_password_hash(user, &hash, expire)
                .map_err(|e| e.to_string())
        });
        match result {
            Ok(()) => applied.users.push(user.clone()),
            Err(err) => {
                applied.random.retain(|(u, _)| u != user);
                applied.errors.push(format!("{user}: {err}"));
            }
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::userdata::yaml::parse_map;

    fn cfg(text: &str) -> CloudConfig {
        let (config, errors) = CloudConfig::from_map(&parse_map(text).unwrap());
        assert!(errors.is_empty(), "{errors:?}");
        config
    }

    #[test]
    fn hashes_have_a_sixteen_character_salt() {
        let hash = hash_password("passw0rd").unwrap();
        let parts: Vec<&str> = hash.split('$').collect();
        assert_eq!(parts[1], "6");
        assert_eq!(parts[2], "rounds=5000");
        assert_eq!(parts[3].len(), 16, "{hash}");
        assert_eq!(parts[4].len(), 86, "{hash}");
        assert_ne!(hash, hash_password("passw0rd").unwrap(), "salts differ");
    }

    /// `openssl passwd -6 -salt` gives the same digest for the same salt.
    #[test]
    fn openssl_agrees_for_the_same_salt() {
        let hash = hash_with_salt("s3cret!", b"twelve bytes").unwrap();
        let salt = hash.split('$').nth(3).unwrap().to_owned();
        let out = Command::new("openssl")
            .args(["passwd", "-6", "-salt", &salt, "s3cret!"])
            .output()
            .expect("openssl is needed to check hashes");
        assert!(out.status.success());
        let theirs = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(theirs, hash.replace("$rounds=5000", ""));
    }

    /// A hash made ahead is a hash of the same password: `openssl` gives the same digest.
    #[test]
    fn a_hash_made_ahead_is_the_passwords() {
        let _one_at_a_time = ahead::TESTS.lock().unwrap_or_else(|p| p.into_inner());
        let password = "made ahead, checked";
        if !hash_ahead(vec![password.to_owned()]) {
            assert!(
                !crate::cpus::second_cpu(),
                "only one CPU keeps it from starting"
            );
            crate::testutil::missing("a second CPU", "is not there to hash on");
            return;
        }
        let hash = hash_password(password).unwrap();
        let salt = hash.split('$').nth(3).unwrap().to_owned();
        let out = Command::new("openssl")
            .args(["passwd", "-6", "-salt", &salt, password])
            .output()
            .expect("openssl is needed to check hashes");
        let theirs = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(theirs, hash.replace("$rounds=5000", ""));
    }

    #[test]
    fn limits_and_bad_characters() {
        assert!(hash_with_salt(&"x".repeat(MAX_PASSWORD_BYTES), b"123456789012").is_ok());
        assert!(matches!(
            hash_with_salt(&"x".repeat(MAX_PASSWORD_BYTES + 1), b"123456789012"),
            Err(PasswordError::TooLong)
        ));
        assert!(matches!(
            hash_with_salt("a\nb", b"123456789012"),
            Err(PasswordError::BadCharacter)
        ));
    }

    #[test]
    fn recognises_hashes() {
        assert!(is_hash("$6$salt$digest"));
        assert!(is_hash("$6$rounds=5000$salt$digest"));
        assert!(is_hash("$1$abc$def"));
        assert!(is_hash("$2y$10$abcdefghijklmnopqrstuv"));
        assert!(!is_hash("$6$onlysalt"));
        assert!(!is_hash("password"));
        assert!(!is_hash("$7$a$b"));
    }

    /// `chpasswd.users` without a `type` takes what `mkpasswd` makes on Debian 12 and Ubuntu
    /// (yescrypt) as a hash, as cloud-init does, not as the text of the password.
    #[test]
    fn chpasswd_users_take_any_crypt_hash_without_a_type() {
        let yescrypt = "$y$j9T$PDh5Ch1vNuwwrFEnMmT6n/$yTa1UVfvpw3MUwuOlGhsmoLJMgGCkIWjnWCsTdIQW1A";
        for hash in [
            yescrypt,
            "$2b$12$abcdefghijklmnopqrstuv",
            "$7$CU..../....salt$hash",
            "$6$s$h",
        ] {
            assert!(is_crypt(hash), "{hash}");
            let text = format!("chpasswd:\n  users:\n  - {{name: debian, password: '{hash}'}}\n");
            let plan = plan(&cfg(&text), None);
            assert_eq!(
                plan.changes,
                [("debian".to_owned(), NewPassword::Hash(hash.into()))]
            );
            assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        }
        for text in ["password", "$y$only", "$$a$b", "$y-x$a$b", "pass$word$x"] {
            assert!(!is_crypt(text), "{text}");
        }
    }

    #[test]
    fn random_passwords_have_every_class() {
        for _ in 0..50 {
            let pw = random_password().unwrap();
            assert_eq!(pw.len(), RANDOM_PASSWORD_LEN);
            assert!(pw.chars().any(|c| c.is_ascii_digit()));
            assert!(pw.chars().any(|c| c.is_ascii_lowercase()));
            assert!(pw.chars().any(|c| c.is_ascii_uppercase()));
            assert!(pw.chars().any(|c| c.is_ascii_punctuation()));
            assert!(!pw.contains(':'));
        }
    }

    #[test]
    fn chpasswd_users_form() {
        let plan = plan(
            &cfg(
                "chpasswd:\n  expire: false\n  users:\n  - {name: root, password: pw, type: text}\n  \
                  - {name: bob, password: $6$s$h}\n  - {name: carol, type: RANDOM}\n  - {name: dave}\n",
            ),
            None,
        );
        assert!(!plan.expire);
        assert_eq!(
            plan.changes,
            [
                ("root".to_owned(), NewPassword::Text("pw".into())),
                ("bob".to_owned(), NewPassword::Hash("$6$s$h".into())),
                ("carol".to_owned(), NewPassword::Random),
                (
                    "dave".to_owned(),
                    NewPassword::Hash(MISSING_PASSWORD.into())
                ),
            ]
        );
    }

    /// Types are compared as written, as cloud-init compares them: `random`, `Text` and `HASH`
    /// are no types, and their entries are skipped with a warning.
    #[test]
    fn types_are_case_sensitive() {
        let p = plan_of(
            "chpasswd:\n  users:\n  - {name: a, type: random}\n  \
             - {name: b, password: pw, type: Text}\n  - {name: c, password: $6$s$h, type: HASH}\n",
        );
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
        assert_eq!(
            p.warnings[0],
            "chpasswd: unknown type \"random\" for a; skipped, as cloud-init skips it (write \
             type: RANDOM, text or hash, in that case)"
        );
    }

    /// An entry without a password is cloud-init's `RANDOM` text, read as its type says; only
    /// `type: RANDOM` makes a random password.
    #[test]
    fn a_missing_password_is_the_text_random_as_its_type_says() {
        let p = plan_of(
            "chpasswd:\n  users:\n  - {name: dave}\n  - {name: erin, type: hash}\n  \
             - {name: fred, type: text}\n  - {name: gina, type: RANDOM}\n",
        );
        assert_eq!(
            p.changes,
            [
                ("dave".to_owned(), NewPassword::Hash("RANDOM".into())),
                ("erin".to_owned(), NewPassword::Hash("RANDOM".into())),
                ("fred".to_owned(), NewPassword::Text("RANDOM".into())),
                ("gina".to_owned(), NewPassword::Random),
            ]
        );
        assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
        assert_eq!(
            p.warnings[0],
            "chpasswd: dave: no password given; no password opens it: the field is the text \
             RANDOM, as cloud-init sets it (give a password, or type: RANDOM for a random one)"
        );
    }

    #[test]
    fn chpasswd_list_form_and_default_expire() {
        let plan = plan(
            &cfg("chpasswd:\n  list: |\n    root:pw\n    bob:R\n    carol:$6$a$b\n"),
            None,
        );
        assert!(plan.expire);
        assert_eq!(plan.changes[1], ("bob".to_owned(), NewPassword::Random));
        assert_eq!(
            plan.changes[2],
            ("carol".to_owned(), NewPassword::Hash("$6$a$b".into()))
        );
        let plan2 = plan_of("chpasswd:\n  list:\n  - root:pw\n  - broken-secret\n");
        assert_eq!(plan2.changes.len(), 1);
        assert_eq!(
            plan2.warnings,
            ["chpasswd.list: line 2 is not user:password; skipped"]
        );
    }

    fn plan_of(text: &str) -> Plan {
        plan(&cfg(text), Some("debian"))
    }

    #[test]
    fn a_literal_random_is_text_with_a_warning() {
        let p = plan_of(
            "chpasswd:\n  users:\n  - {name: alice, password: RANDOM, type: text}\n  \
             - {name: bob, password: R, type: text}\n  - {name: carol, password: RANDOM}\n  \
             - {name: dave, password: random, type: text}\n",
        );
        assert_eq!(
            p.changes,
            [
                ("alice".to_owned(), NewPassword::Text("RANDOM".into())),
                ("bob".to_owned(), NewPassword::Text("R".into())),
                ("carol".to_owned(), NewPassword::Text("RANDOM".into())),
                ("dave".to_owned(), NewPassword::Text("random".into())),
            ]
        );
        assert_eq!(
            p.warnings,
            [
                "chpasswd: alice: password is the literal text RANDOM; use type: RANDOM",
                "chpasswd: bob: password is the literal text R; use type: RANDOM",
                "chpasswd: carol: password is the literal text RANDOM; use type: RANDOM",
            ]
        );
    }

    #[test]
    fn password_goes_to_the_default_user_unless_chpasswd_lists_users() {
        let p = plan_of("password: pw\n");
        assert_eq!(
            p.changes,
            [("debian".to_owned(), NewPassword::Text("pw".into()))]
        );
        let p = plan_of("password: pw\nchpasswd: {users: [{name: root, type: RANDOM}]}\n");
        assert_eq!(p.changes, [("root".to_owned(), NewPassword::Random)]);
        let p = plan(&cfg("password: pw\n"), None);
        assert!(p.changes.is_empty());
        assert_eq!(p.warnings.len(), 1);
        // An empty `chpasswd` list names no one: `password` still applies.
        for chpasswd in [
            "{users: []}",
            "{list: []}",
            "{list: ''}",
            "{users: [], list: []}",
        ] {
            let p = plan_of(&format!("password: pw\nchpasswd: {chpasswd}\n"));
            assert_eq!(
                p.changes,
                [("debian".to_owned(), NewPassword::Text("pw".into()))],
                "{chpasswd}"
            );
        }
        // An empty one sets nothing (cloud-init's `if password`), and says nothing either.
        let p = plan_of("password: ''\n");
        assert!(p.changes.is_empty() && p.warnings.is_empty(), "{p:?}");
    }
}
