//! `power_state`: power off, halt or reboot once the run has finished (cloud-init's
//! `power_state_change`, once per instance, the last step of the final stage). Like cloud-init,
//! the image's `shutdown` does it: `shutdown -P|-H|-r now|+MINUTES [MESSAGE]`.
//!
//! The step reads the request and checks its condition; the run performs the change after its
//! report is committed (`run/finish.rs`), so `metaboot status` says `done` on the next boot
//! whatever the image's `shutdown` does to the running system.

use std::process::{Command, Stdio};

use serde_json::{Map, Value};

/// The program that changes the power state (cloud-init runs the same on every Linux distro).
pub const SHUTDOWN: &str = "shutdown";

/// cloud-init's default `timeout` (seconds it waits for its own process to end).
pub const DEFAULT_TIMEOUT_SECS: f64 = 30.0;

/// What to do to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Poweroff,
    Halt,
    Reboot,
}

impl Mode {
    /// Every mode's name, as `power_state.mode` spells it.
    pub const NAMES: [&'static str; 3] = ["halt", "poweroff", "reboot"];

    fn parse(name: &str) -> Option<Self> {
        match name {
            "poweroff" => Some(Mode::Poweroff),
            "halt" => Some(Mode::Halt),
            "reboot" => Some(Mode::Reboot),
            _ => None,
        }
    }

    /// The `shutdown` option (cloud-init's `shutdown_options_map`).
    pub fn option(self) -> &'static str {
        match self {
            Mode::Poweroff => "-P",
            Mode::Halt => "-H",
            Mode::Reboot => "-r",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Poweroff => "poweroff",
            Mode::Halt => "halt",
            Mode::Reboot => "reboot",
        }
    }
}

/// When the change happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    Now,
    Minutes(u32),
}

/// Whether the change happens at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `condition: true` (the default) or `false`.
    Fixed(bool),
    /// A string: a `/bin/sh -c` command; exit 0 means yes, 1 means no.
    Shell(String),
    /// A list: a program and its arguments, run without a shell.
    Program(Vec<String>),
}

/// A `power_state` request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerChange {
    pub mode: Mode,
    pub delay: Delay,
    pub message: Option<String>,
    /// Accepted for cloud-init's sake: the change is made after metaboot's run has ended, so
    /// there is nothing to wait for.
    pub timeout_secs: f64,
    pub condition: Condition,
}

/// Reads `power_state` the way cloud-init's `load_power_state` does; the error says which entry
/// is wrong and what it must be.
pub fn parse(map: &Map<String, Value>) -> Result<PowerChange, String> {
    let mode = match map.get("mode") {
        Some(Value::String(name)) => Mode::parse(name),
        _ => None,
    };
    let Some(mode) = mode else {
        return Err(format!(
            "power_state.mode is required, one of {} (found: {})",
            Mode::NAMES.join(", "),
            shown(map.get("mode"))
        ));
    };
    let delay = match map.get("delay") {
        None | Some(Value::Null) => Delay::Now,
        Some(value) => parse_delay(value)?,
    };
    let message = match map.get("message") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.is_empty() => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(format!("power_state.message must be text (found: {other})"));
        }
    };
    let timeout_secs = match map.get("timeout") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT_SECS,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(DEFAULT_TIMEOUT_SECS),
        Some(Value::String(text)) => text.trim().parse::<f64>().map_err(|_| {
            format!("power_state.timeout must be a number of seconds (found: '{text}')")
        })?,
        Some(other) => {
            return Err(format!(
                "power_state.timeout must be a number of seconds (found: {other})"
            ));
        }
    };
    let condition = match map.get("condition") {
        None | Some(Value::Null) => Condition::Fixed(true),
        Some(Value::Bool(fixed)) => Condition::Fixed(*fixed),
        Some(Value::String(command)) => Condition::Shell(command.clone()),
        Some(Value::Array(items)) => Condition::Program(
            items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(format!(
                        "power_state.condition: a list holds a program and its arguments \
                         (found: {other})"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(format!(
                "power_state.condition must be true, false, a shell command or a list \
                 (found: {other})"
            ));
        }
    };
    if matches!(&condition, Condition::Program(argv) if argv.is_empty()) {
        return Err("power_state.condition is an empty list: no program to run".to_owned());
    }
    Ok(PowerChange {
        mode,
        delay,
        message,
        timeout_secs,
        condition,
    })
}

/// cloud-init's `delay`: `now`, or minutes (`5`, `"+5"`, `"5"`).
fn parse_delay(value: &Value) -> Result<Delay, String> {
    let wrong = || {
        format!(
            "power_state.delay must be 'now' or '+m' (minutes) (found: {})",
            shown(Some(value))
        )
    };
    let minutes = match value {
        Value::String(text) if text == "now" => return Ok(Delay::Now),
        Value::String(text) => {
            let text = text.trim();
            let digits = text.strip_prefix('+').unwrap_or(text);
            digits.parse::<u32>().map_err(|_| wrong())?
        }
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(wrong)?,
        _ => return Err(wrong()),
    };
    Ok(Delay::Minutes(minutes))
}

fn shown(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "nothing".to_owned(),
        Some(Value::String(text)) => format!("'{text}'"),
        Some(other) => other.to_string(),
    }
}

impl PowerChange {
    /// The arguments of `shutdown` (cloud-init's `shutdown_command`).
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            self.mode.option().to_owned(),
            match self.delay {
                Delay::Now => "now".to_owned(),
                Delay::Minutes(m) => format!("+{m}"),
            },
        ];
        if let Some(message) = &self.message {
            // cloud-init passes the message as it is; one starting with `-` would be read as
            // an option of shutdown (`-k`: no power-off at all), so it comes after `--` then.
            if message.starts_with('-') {
                args.push("--".to_owned());
            }
            args.push(message.clone());
        }
        args
    }

    /// `shutdown` and its arguments, what the run runs once its report is committed.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(SHUTDOWN.to_owned())
            .chain(self.args())
            .collect()
    }

    /// The whole command line, for messages.
    pub fn command_line(&self) -> String {
        super::scripts::shell_line(&self.argv())
    }
}

/// The answer of a `condition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Met,
    /// `false`, or the command exited 1.
    NotMet(String),
}

/// Evaluates `condition` (a command runs now, with no input, its output logged): exit 0 is
/// yes, 1 is no, anything else an error, as cloud-init's `check_condition` (which only warns).
pub fn check(condition: &Condition) -> Result<Verdict, String> {
    let (mut command, shown) = match condition {
        Condition::Fixed(true) => return Ok(Verdict::Met),
        Condition::Fixed(false) => return Ok(Verdict::NotMet("condition is false".to_owned())),
        Condition::Shell(line) => {
            let mut command = Command::new(super::scripts::SHELL);
            command.arg("-c").arg(line);
            (command, line.clone())
        }
        Condition::Program(argv) => {
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]);
            (command, argv.join(" "))
        }
    };
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("condition `{shown}` could not run: {e}"))?;
    for line in String::from_utf8_lossy(&output.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&output.stderr).lines())
    {
        tracing::info!(condition = %shown, "{line}");
    }
    match output.status.code() {
        Some(0) => Ok(Verdict::Met),
        Some(1) => Ok(Verdict::NotMet(format!("condition `{shown}` exited 1"))),
        _ => Err(format!(
            "condition `{shown}` ended with {} (0 means yes, 1 means no): no power change",
            output.status
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(value: &Value) -> Result<PowerChange, String> {
        parse(value.as_object().unwrap())
    }

    #[test]
    fn cloud_inits_examples_make_its_commands() {
        // cloud-init's documentation examples for power_state.
        let change = parsed(&json!({
            "delay": "now", "mode": "poweroff", "message": "Powering off",
            "timeout": 2, "condition": true
        }))
        .unwrap();
        assert_eq!(change.args(), ["-P", "now", "Powering off"]);
        assert_eq!(change.command_line(), "shutdown -P now 'Powering off'");
        assert_eq!(change.timeout_secs, 2.0);
        let change = parsed(&json!({
            "delay": 30, "mode": "reboot", "message": "Rebooting machine",
            "condition": "test -f /var/tmp/reboot_me"
        }))
        .unwrap();
        assert_eq!(change.args(), ["-r", "+30", "Rebooting machine"]);
        assert_eq!(
            change.condition,
            Condition::Shell("test -f /var/tmp/reboot_me".to_owned())
        );
        let change = parsed(&json!({"mode": "halt"})).unwrap();
        assert_eq!(change.args(), ["-H", "now"]);
        // A message shutdown would take for an option is only ever its message.
        let change = parsed(&json!({"mode": "poweroff", "message": "-k"})).unwrap();
        assert_eq!(change.args(), ["-P", "now", "--", "-k"]);
        assert_eq!(change.condition, Condition::Fixed(true));
        assert_eq!(change.timeout_secs, DEFAULT_TIMEOUT_SECS);
    }

    #[test]
    fn delays_are_now_or_minutes_as_cloud_init_takes_them() {
        for (delay, arg) in [
            (json!("now"), "now"),
            (json!(5), "+5"),
            (json!("+5"), "+5"),
            (json!(" 7 "), "+7"),
            (json!(0), "+0"),
        ] {
            let change = parsed(&json!({"mode": "reboot", "delay": delay})).unwrap();
            assert_eq!(change.args()[1], arg, "{delay}");
        }
        for delay in [
            json!("soon"),
            json!(-1),
            json!(1.5),
            json!(true),
            json!("+"),
        ] {
            let err = parsed(&json!({"mode": "reboot", "delay": delay})).unwrap_err();
            assert!(err.starts_with("power_state.delay must be 'now'"), "{err}");
        }
    }

    #[test]
    fn a_wrong_entry_is_named_with_what_it_must_be() {
        let err = parsed(&json!({"delay": "now"})).unwrap_err();
        assert_eq!(
            err,
            "power_state.mode is required, one of halt, poweroff, reboot (found: nothing)"
        );
        let err = parsed(&json!({"mode": "suspend"})).unwrap_err();
        assert!(err.ends_with("(found: 'suspend')"), "{err}");
        let err = parsed(&json!({"mode": "halt", "timeout": "long"})).unwrap_err();
        assert!(
            err.starts_with("power_state.timeout must be a number"),
            "{err}"
        );
        let err = parsed(&json!({"mode": "halt", "condition": {"a": 1}})).unwrap_err();
        assert!(err.starts_with("power_state.condition must be"), "{err}");
        let err = parsed(&json!({"mode": "halt", "condition": []})).unwrap_err();
        assert!(err.contains("empty list"), "{err}");
        let err = parsed(&json!({"mode": "halt", "message": ["a"]})).unwrap_err();
        assert!(err.starts_with("power_state.message must be text"), "{err}");
    }

    #[test]
    fn conditions_answer_by_exit_code() {
        assert_eq!(check(&Condition::Fixed(true)), Ok(Verdict::Met));
        assert!(matches!(
            check(&Condition::Fixed(false)),
            Ok(Verdict::NotMet(_))
        ));
        assert_eq!(check(&Condition::Shell("exit 0".into())), Ok(Verdict::Met));
        assert_eq!(
            check(&Condition::Shell("echo no; exit 1".into())),
            Ok(Verdict::NotMet(
                "condition `echo no; exit 1` exited 1".into()
            ))
        );
        let err = check(&Condition::Shell("exit 2".into())).unwrap_err();
        assert!(err.contains("exit status: 2"), "{err}");
        assert_eq!(
            check(&Condition::Program(vec![
                "test".into(),
                "-d".into(),
                "/".into()
            ])),
            Ok(Verdict::Met)
        );
        let err = check(&Condition::Program(vec!["metaboot-no-such-program".into()])).unwrap_err();
        assert!(err.contains("could not run"), "{err}");
    }
}
