//! Password hashes made ahead: a SHA-512-crypt hash costs 5 000 rounds (about 1.5 ms of a
//! core, most of a run's CPU), and the passwords a first boot sets are known as soon as the
//! cloud-config is merged. On a machine with a second CPU they are hashed there, while the
//! run writes files, the host name and the accounts; [`hash_password`](super::hash_password)
//! then takes a hash made ahead for the same clear text (each one once: two users with the same
//! password still get two salts). With one CPU nothing is started: hashing ahead would only
//! take the run's own time.

use std::sync::Mutex;
use std::thread::JoinHandle;

use crate::cpus::second_cpu;

/// The hashes under way or made, by clear text.
#[derive(Debug, Default)]
enum Ahead {
    #[default]
    None,
    Hashing(JoinHandle<Vec<(String, String)>>),
    Made(Vec<(String, String)>),
}

static AHEAD: Mutex<Ahead> = Mutex::new(Ahead::None);

/// Held by the tests that hash ahead: the hashes made ahead are the process's.
#[cfg(test)]
pub static TESTS: Mutex<()> = Mutex::new(());

/// Starts hashing `passwords` with `hash` (`None`: not hashable, left to the step) on a thread
/// of its own, when there is a second CPU and nothing is hashing already. Returns whether it
/// started.
pub fn start(passwords: Vec<String>, hash: fn(&str) -> Option<String>) -> bool {
    if passwords.is_empty() || !second_cpu() {
        return false;
    }
    let mut ahead = AHEAD.lock().unwrap_or_else(|p| p.into_inner());
    // Hashes an earlier run in this process made and did not take are dropped.
    if matches!(*ahead, Ahead::Hashing(_)) {
        return false;
    }
    let hashing = std::thread::Builder::new()
        .name("hash ahead".to_owned())
        .spawn(move || {
            passwords
                .into_iter()
                .filter_map(|text| hash(&text).map(|made| (text, made)))
                .collect()
        });
    match hashing {
        Ok(handle) => {
            *ahead = Ahead::Hashing(handle);
            true
        }
        Err(_) => false,
    }
}

/// A hash of `password` made ahead, waited for; `None` when none was made for it (or it was
/// taken already).
pub fn take(password: &str) -> Option<String> {
    let mut ahead = AHEAD.lock().unwrap_or_else(|p| p.into_inner());
    if let Ahead::Hashing(_) = *ahead {
        let Ahead::Hashing(handle) = std::mem::take(&mut *ahead) else {
            unreachable!("matched just above");
        };
        *ahead = Ahead::Made(handle.join().unwrap_or_default());
    }
    let Ahead::Made(made) = &mut *ahead else {
        return None;
    };
    let at = made.iter().position(|(text, _)| text == password)?;
    Some(made.swap_remove(at).1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in hasher: a salt of its own per call, `None` for what has a newline.
    fn made(text: &str) -> Option<String> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static SALT: AtomicUsize = AtomicUsize::new(0);
        (!text.contains('\n')).then(|| format!("{text}/{}", SALT.fetch_add(1, Ordering::SeqCst)))
    }

    #[test]
    fn hashes_made_ahead_are_taken_once_each_and_only_with_a_second_cpu() {
        let _one_at_a_time = TESTS.lock().unwrap_or_else(|p| p.into_inner());
        let one_cpu = crate::testutil::on_one_cpu(|| {
            (second_cpu(), start(vec!["on one cpu".to_owned()], made))
        });
        assert_eq!(one_cpu, (false, false), "nothing starts with one CPU");
        if !second_cpu() {
            crate::testutil::missing("a second CPU", "is not there to hash on");
            return;
        }
        let text = "made ahead";
        assert!(start(
            vec![text.to_owned(), text.to_owned(), "a\nb".to_owned()],
            made
        ));
        let first = take(text).expect("a hash made ahead");
        let second = take(text).expect("the second one made ahead");
        assert_ne!(first, second, "each hash has its own salt");
        assert_eq!(take(text), None, "each one is taken once");
        assert_eq!(
            take("a\nb"),
            None,
            "what cannot be hashed is left to the step"
        );
        assert_eq!(take("never asked"), None);
    }
}
