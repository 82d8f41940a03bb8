//! What OpenSSH's client says with `-v` about a login: the method that logged in (its
//! `Authenticated to HOST ([ADDR]:PORT) using "METHOD".` line, at level VERBOSE), and which
//! lines of its standard error are its own log rather than the remote command's. A login is a
//! key (or password) check only when that method did it: ssh tries `none` first, and a guest
//! that lets the user in without any would otherwise pass both.

/// The start of the line ssh prints once it has logged in (OpenSSH 9.2:
/// `Authenticated to 198.18.1.10 ([198.18.1.10]:22) using "publickey".`, or with a proxy
/// `Authenticated to HOST (via proxy) using "publickey".`).
pub const AUTHENTICATED: &str = "Authenticated to ";

/// The starts of the lines ssh prints with `-v` that `LogLevel=ERROR` hid: its debug lines,
/// its version, the login, the byte counts at the end and the host key it would record.
pub const LOG_LINES: [&str; 8] = [
    "debug1: ",
    "debug2: ",
    "debug3: ",
    "OpenSSH_",
    AUTHENTICATED,
    "Transferred: sent ",
    "Bytes per second: ",
    "Warning: Permanently added ",
];

/// The starts of the lines of ssh's log that follow the remote command's output (its exit
/// status, the channel closing, the byte counts): a remote command whose standard error ends
/// without a newline has the next of them glued to its last line.
pub const AFTER_COMMAND_LINES: [&str; 5] = [
    "debug1: ",
    "debug2: ",
    "debug3: ",
    "Transferred: sent ",
    "Bytes per second: ",
];

/// The method ssh logged in with, from its `-v` standard error; `None` when it did not log in.
pub fn authenticated_with(stderr: &str) -> Option<&str> {
    stderr.lines().find_map(|line| {
        let rest = line.trim_end().strip_prefix(AUTHENTICATED)?;
        let (_, method) = rest.rsplit_once(" using \"")?;
        method.strip_suffix("\".")
    })
}

/// The lines of ssh's `-v` standard error that are not its log ([`LOG_LINES`]): its errors
/// and the remote command's standard error, for reports. The last of them, the only one ssh
/// can have glued one of its closing log lines to ([`AFTER_COMMAND_LINES`]: the remote's last
/// line without a newline), is cut where that starts; an earlier remote line that merely
/// holds such text (a journal excerpt's `sshd[412]: debug1: …`) is kept whole.
pub fn without_log(stderr: &str) -> String {
    let kept: Vec<&str> = stderr
        .lines()
        .filter(|line| !LOG_LINES.iter().any(|start| line.starts_with(start)))
        .collect();
    let last = kept.len().saturating_sub(1);
    kept.iter()
        .enumerate()
        .map(|(index, line)| {
            let glued = (index == last)
                .then(|| {
                    AFTER_COMMAND_LINES
                        .iter()
                        .filter_map(|start| line.find(start))
                        .min()
                })
                .flatten();
            format!("{}\n", &line[..glued.unwrap_or(line.len())])
        })
        .collect()
}

/// Why a login that ssh made with `method` (`None`: ssh says it made none) is not one with
/// any of `expected`, or `None` when it is.
pub fn wrong_method(method: Option<&str>, expected: &[&str]) -> Option<String> {
    match method {
        Some(method) if expected.contains(&method) => None,
        Some(method) => Some(format!(
            "ssh logged in with \"{method}\", not {}: the guest lets the user in without it, \
             so this login proves nothing; make its SSH server refuse logins without a key or \
             password (no empty passwords)",
            expected.join(" or ")
        )),
        None => Some(format!(
            "ssh ran the command but its -v output names no login method (no \
             `{AUTHENTICATED}… using \"…\".` line), so a {} login is not shown; is this \
             OpenSSH's ssh?",
            expected.join(" or ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard error of `ssh -v` (OpenSSH 9.2p1, Debian 12) logging in with a key and running
    /// a command that writes to its own standard error.
    const KEY_LOGIN: &str = "\
OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19 27 Jan 2026
debug1: Reading configuration data /dev/null
debug1: Connecting to 198.18.1.10 [198.18.1.10] port 22.
debug1: Connection established.
debug1: Authenticating to 198.18.1.10:22 as 'root'
Warning: Permanently added '198.18.1.10' (ED25519) to the list of known hosts.
debug1: Authentications that can continue: publickey,password
debug1: Next authentication method: publickey
debug1: Offering public key: /run/k ED25519 SHA256:abc explicit
debug1: Server accepts key: /run/k ED25519 SHA256:abc explicit
Authenticated to 198.18.1.10 ([198.18.1.10]:22) using \"publickey\".
debug1: channel 0: new session [client-session] (inactive timeout: 0)
debug1: Sending command: ls /nope
ls: /nope: No such file or directory
debug1: client_input_channel_req: channel 0 rtype exit-status reply 0
Transferred: sent 2524, received 2652 bytes, in 0.2 seconds
Bytes per second: sent 12510.8, received 13145.3
debug1: Exit status 1
";

    #[test]
    fn the_login_method_is_read_from_ssh_verbose_output() {
        assert_eq!(authenticated_with(KEY_LOGIN), Some("publickey"));
        for (line, method) in [
            (
                "Authenticated to 198.18.1.10 ([198.18.1.10]:22) using \"password\".",
                "password",
            ),
            (
                "Authenticated to fdc6:1200:0:40::5 ([fdc6:1200:0:40::5]:22) using \"keyboard-interactive\".",
                "keyboard-interactive",
            ),
            (
                "Authenticated to 198.18.1.10 ([198.18.1.10]:22) using \"none\".",
                "none",
            ),
            (
                "Authenticated to guest (via proxy) using \"publickey\".\r",
                "publickey",
            ),
        ] {
            assert_eq!(authenticated_with(line), Some(method), "{line}");
        }
        // Refused, or never connected: no login.
        assert_eq!(
            authenticated_with(
                "debug1: Authentications that can continue: publickey\n\
                 root@198.18.1.10: Permission denied (publickey)."
            ),
            None
        );
        assert_eq!(
            authenticated_with("ssh: connect to host 198.18.1.10 port 22: Connection refused"),
            None
        );
        // The remote command's words are not ssh's line.
        assert_eq!(
            authenticated_with("debug1: Authenticated to x using \"publickey\"."),
            None
        );
    }

    #[test]
    fn reports_keep_only_errors_and_the_commands_own_stderr() {
        assert_eq!(
            without_log(KEY_LOGIN),
            "ls: /nope: No such file or directory\n"
        );
        let refused = "debug1: Next authentication method: publickey\n\
                       root@198.18.1.10: Permission denied (publickey).\n";
        assert_eq!(
            without_log(refused),
            "root@198.18.1.10: Permission denied (publickey).\n"
        );
        assert_eq!(without_log(""), "");
        // The remote command's own lines that start like a word of ssh's log are kept.
        assert_eq!(
            without_log("debugging enabled\ndebug1: x\n"),
            "debugging enabled\n"
        );
    }

    /// The end of `ssh -v`'s standard error (the lines of [`KEY_LOGIN`] after its command) for
    /// `printf 'no newline' >&2; exit 3`: ssh's next log line follows the remote's last words
    /// on the same line.
    const GLUED: &str = "\
debug1: Sending command: printf 'no newline' >&2; exit 3
no newlinedebug1: client_input_channel_req: channel 0 rtype exit-status reply 0
debug1: client_input_channel_req: channel 0 rtype eow@openssh.com reply 0
debug1: channel 0: free: client-session, nchannels 1
Transferred: sent 2524, received 2652 bytes, in 0.2 seconds
Bytes per second: sent 12510.8, received 13145.3
debug1: Exit status 3
";

    /// A report shows the remote's line, not ssh's debug text glued to it.
    #[test]
    fn a_remote_line_without_a_newline_is_reported_without_the_log_glued_to_it() {
        assert_eq!(without_log(GLUED), "no newline\n");
        let output = |stderr: &str| super::super::ssh::SshOutput {
            code: 3,
            stdout: String::new(),
            stderr: without_log(stderr),
            method: Some("publickey".into()),
        };
        assert_eq!(output(GLUED).summary(), "exit 3: no newline");
        // Any of the lines that follow the command, and only the part from it on.
        assert_eq!(
            without_log("a: bTransferred: sent 1, received 2 bytes\n"),
            "a: b\n"
        );
        assert_eq!(without_log("x debug2: y debug1: z\n"), "x \n");
        // Nothing of the remote's is lost when nothing is glued.
        assert_eq!(without_log("a debug: b\n"), "a debug: b\n");
        // Only the remote's last line can have the log glued to it: an earlier one holding
        // such text (a journal excerpt) is the remote's whole.
        assert_eq!(
            without_log("sshd[412]: debug1: session opened\nlast debug1: client_input\n"),
            "sshd[412]: debug1: session opened\nlast \n"
        );
    }

    #[test]
    fn a_login_without_the_expected_method_is_named() {
        assert_eq!(wrong_method(Some("publickey"), &["publickey"]), None);
        assert_eq!(
            wrong_method(
                Some("keyboard-interactive"),
                &["password", "keyboard-interactive"]
            ),
            None
        );
        let none = wrong_method(Some("none"), &["publickey"]).unwrap();
        assert!(none.contains("\"none\", not publickey"), "{none}");
        let password = wrong_method(Some("publickey"), &["password"]).unwrap();
        assert!(password.contains("not password"), "{password}");
        assert!(
            wrong_method(None, &["publickey"])
                .unwrap()
                .contains("no login method")
        );
    }
}
