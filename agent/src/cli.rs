//! Command-line interface: `metaboot run | status | query | local | clean`, parsed by hand (no argument parser
//! crate: the static binary is size-bound, and under emulation each piece of code costs its
//! translation the first time it runs). The help texts and error messages are the ones clap
//! printed for the same definitions before (`agent/README.md`, "Commands", says what each
//! command does).
//!
//! Accepted: `-v`/`--verbose` anywhere (once); `-h`/`--help` anywhere; `-V`/`--version` before
//! the subcommand; `help [SUBCOMMAND]`; each option as `--name VALUE` or `--name=VALUE`, at most
//! once; `--` ends the options. Anything else is an error on standard error, exit code 2.

mod help;
mod subcommand;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use subcommand::Sub;

/// Exit code of a command line that cannot be used (as clap's).
pub const EXIT_USAGE: u8 = 2;

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub struct Cli {
    /// Log debug detail (every request, every step start).
    pub verbose: bool,
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// One provisioning pass: fetch metadata and user data, apply them.
    Run(RunArgs),
    /// Show the outcome of the last run (done / running / error); non-zero unless done.
    Status(StatusArgs),
    /// Print one value from the cached instance data.
    Query(QueryArgs),
    /// Before the network starts: set aside an ifupdown configuration written for another
    /// instance's NICs.
    Local(LocalArgs),
    /// Empty the state directory (and, when asked, remove the logs and the seeds) for
    /// an image made from this machine.
    Clean(CleanArgs),
}

/// Arguments of `metaboot run`.
#[derive(Debug, PartialEq, Eq)]
pub struct RunArgs {
    /// Metadata service base URL (an IP literal; overrides metaboot.yaml and `metaboot.url=`).
    pub url: Option<String>,
    /// Directory every path read or written is taken under (default `/`).
    pub root: PathBuf,
    /// Configuration file (default: `<root>/etc/metaboot/metaboot.yaml`); taken as given, not
    /// under the root.
    pub config: Option<PathBuf>,
    /// Which part of the pass (default `all`).
    pub stage: RunStage,
}

/// The parts of a provisioning pass (`metaboot run --stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStage {
    /// The whole pass in one process.
    All,
    /// The steps before `ca-certs` (what the logins need), and the user scripts written for
    /// `final`; the run stays `running`.
    Init,
    /// The steps from `ca-certs` on (packages, the user scripts, phone_home, …) of the run
    /// `init` left open; then the run is done.
    Final,
}

impl RunStage {
    /// Every stage, in the order `--help` lists them.
    pub const ALL: [RunStage; 3] = [RunStage::All, RunStage::Init, RunStage::Final];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RunStage::All => "all",
            RunStage::Init => "init",
            RunStage::Final => "final",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|stage| stage.name() == name)
    }
}

/// Arguments of `metaboot status`.
#[derive(Debug, PartialEq, Eq)]
pub struct StatusArgs {
    /// Directory the state is read under (default `/`).
    pub root: PathBuf,
    /// Print the whole status document as JSON.
    pub json: bool,
    /// Wait until the run in progress has finished.
    pub wait: bool,
}

/// Arguments of `metaboot query`.
#[derive(Debug, PartialEq, Eq)]
pub struct QueryArgs {
    /// One of: instance-id, local-hostname, hostname, availability-zone, project-id,
    /// public-keys, user-data, vendor-data.
    pub key: String,
    /// Directory the cached data is read under (default `/`).
    pub root: PathBuf,
}

/// Arguments of `metaboot local`.
#[derive(Debug, PartialEq, Eq)]
pub struct LocalArgs {
    /// Directory every path read or written is taken under (default `/`), `sys/class/net`
    /// included.
    pub root: PathBuf,
}

/// Arguments of `metaboot clean`.
#[derive(Debug, PartialEq, Eq)]
pub struct CleanArgs {
    /// Directory every path removed is taken under (default `/`).
    pub root: PathBuf,
    /// Remove the log files too.
    pub logs: bool,
    /// Remove the seed directory (`/var/lib/cloud/seed`) too, as cloud-init's `clean --seed`.
    pub seed: bool,
    /// Reboot once clean.
    pub reboot: bool,
}

/// A command line that does not run a command: help or version (exit 0, standard output), or
/// an error (exit [`EXIT_USAGE`], standard error).
#[derive(Debug, PartialEq, Eq)]
pub struct Stop {
    pub code: u8,
    pub text: String,
}

impl Stop {
    fn print(text: String) -> Self {
        Stop { code: 0, text }
    }

    /// Prints the text where it belongs and exits with the code.
    fn exit(self) -> ! {
        if self.code == 0 {
            print!("{}", self.text);
        } else {
            eprint!("{}", self.text);
        }
        std::process::exit(i32::from(self.code))
    }
}

/// An error as clap printed it: the message, the usage line when it has one, the hint.
fn error(message: &str, usage: Option<&str>) -> Stop {
    let usage = usage.map_or_else(String::new, |usage| format!("\nUsage: {usage}\n"));
    Stop {
        code: EXIT_USAGE,
        text: format!("error: {message}\n{usage}\nFor more information, try '--help'.\n"),
    }
}

/// The options seen so far (each at most once).
#[derive(Default)]
struct Seen {
    verbose: bool,
    url: Option<OsString>,
    root: Option<OsString>,
    config: Option<OsString>,
    stage: Option<OsString>,
    json: bool,
    wait: bool,
    long: bool,
    format: Option<OsString>,
    logs: bool,
    seed: bool,
    reboot: bool,
    key: Option<OsString>,
}

impl Cli {
    /// The process's command line; prints help, the version or an error and exits when it
    /// asks for no command.
    pub fn from_env() -> Self {
        let args: Vec<OsString> = std::env::args_os().collect();
        Self::parse(&args).unwrap_or_else(|stop| stop.exit())
    }

    /// Parses `args` (the program name first).
    pub fn parse(args: &[OsString]) -> Result<Self, Stop> {
        let mut seen = Seen::default();
        let mut sub = None;
        let mut words = args.iter().skip(1);
        let mut options_end = false;
        while let Some(word) = words.next() {
            let bytes = word.as_bytes();
            if options_end || !bytes.starts_with(b"-") || bytes == b"-" {
                positional(word, &mut sub, &mut seen, &mut words)?;
                continue;
            }
            if bytes == b"--" {
                options_end = true;
                continue;
            }
            option(word, sub, &mut seen, &mut words)?;
        }
        let command = match sub {
            None => {
                return Err(Stop {
                    code: EXIT_USAGE,
                    text: help::text(None).to_owned(),
                });
            }
            Some(Sub::Run) => Command::Run(RunArgs {
                url: seen.url.map(utf8).transpose()?,
                root: path_or_root(seen.root),
                config: seen.config.map(PathBuf::from),
                stage: match seen.stage {
                    Some(name) => stage(name)?,
                    None => RunStage::All,
                },
            }),
            Some(Sub::Status) => Command::Status(StatusArgs {
                root: path_or_root(seen.root),
                json: seen.json
                    || match seen.format {
                        Some(format) => status_format(format)?,
                        None => false,
                    },
                wait: seen.wait,
            }),
            Some(Sub::Query) => match seen.key {
                Some(key) => Command::Query(QueryArgs {
                    key: utf8(key)?,
                    root: path_or_root(seen.root),
                }),
                None => {
                    return Err(error(
                        "the following required arguments were not provided:\n  <KEY>",
                        Some("metaboot query <KEY>"),
                    ));
                }
            },
            Some(Sub::Local) => Command::Local(LocalArgs {
                root: path_or_root(seen.root),
            }),
            Some(Sub::Clean) => Command::Clean(CleanArgs {
                root: path_or_root(seen.root),
                logs: seen.logs,
                seed: seen.seed,
                reboot: seen.reboot,
            }),
        };
        Ok(Cli {
            verbose: seen.verbose,
            command,
        })
    }
}

/// `--root`'s value, `/` when it was not given.
fn path_or_root(root: Option<OsString>) -> PathBuf {
    root.map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// `--stage`'s value.
fn stage(name: OsString) -> Result<RunStage, Stop> {
    let name = utf8(name)?;
    RunStage::from_name(&name).ok_or_else(|| {
        error(
            &format!(
                "invalid value '{name}' for '--stage <STAGE>'\n  [possible values: all, init, final]"
            ),
            None,
        )
    })
}

/// `status --format`'s value, as cloud-init's names it: whether it asks for JSON (`json`, the
/// status document as `--json` prints it; `yaml` too, JSON being YAML: cloud-init's `yaml` is
/// the same mapping as its `json`, and a script polling `status --format yaml` must not read a
/// refusal's exit code 2 as "not done" for ever) or for the text form (`tabular`).
fn status_format(name: OsString) -> Result<bool, Stop> {
    match utf8(name)?.as_str() {
        "json" | "yaml" => Ok(true),
        "tabular" => Ok(false),
        other => Err(error(
            &format!(
                "invalid value '{other}' for '--format <FORMAT>'\n  [possible values: json, tabular, yaml]"
            ),
            None,
        )),
    }
}

/// A value that must be text.
fn utf8(value: OsString) -> Result<String, Stop> {
    value
        .into_string()
        .map_err(|_| error("invalid UTF-8 was detected in one or more arguments", None))
}

/// A word that is not an option: the subcommand, `help [SUBCOMMAND]`, or query's key.
fn positional<'a>(
    word: &OsStr,
    sub: &mut Option<Sub>,
    seen: &mut Seen,
    words: &mut impl Iterator<Item = &'a OsString>,
) -> Result<(), Stop> {
    let text = word.to_string_lossy();
    match *sub {
        None if text == "help" => {
            let asked = words.next().map(|w| w.to_string_lossy().into_owned());
            match asked.as_deref().map(|name| (name, Sub::from_name(name))) {
                None => Err(Stop::print(help::text(None).to_owned())),
                Some((_, Some(named))) => Err(Stop::print(help::text(Some(named)).to_owned())),
                Some((name, None)) => Err(error(
                    &format!("unrecognized subcommand '{name}'"),
                    Some(help::usage(None)),
                )),
            }
        }
        None => match Sub::from_name(&text) {
            Some(named) => {
                *sub = Some(named);
                Ok(())
            }
            None => Err(error(
                &format!("unrecognized subcommand '{text}'"),
                Some(help::usage(None)),
            )),
        },
        Some(Sub::Query) if seen.key.is_none() => {
            seen.key = Some(word.to_owned());
            Ok(())
        }
        Some(_) => Err(error(
            &format!("unexpected argument '{text}' found"),
            Some(help::usage(*sub)),
        )),
    }
}

/// A word starting with `-`: a flag, or an option taking the next word (or its `=VALUE`).
fn option<'a>(
    word: &OsStr,
    sub: Option<Sub>,
    seen: &mut Seen,
    words: &mut impl Iterator<Item = &'a OsString>,
) -> Result<(), Stop> {
    let text = word.to_string_lossy();
    // `--name=VALUE`: the value as given (it may be any bytes, a path).
    let (name, inline) = match word.as_bytes().iter().position(|&b| b == b'=') {
        Some(at) if word.as_bytes().starts_with(b"--") => (
            &text[..text.find('=').unwrap_or(text.len())],
            Some(OsStr::from_bytes(&word.as_bytes()[at + 1..]).to_owned()),
        ),
        _ => (&text[..], None),
    };
    let unexpected = || {
        error(
            &format!("unexpected argument '{name}' found"),
            Some(help::usage(sub)),
        )
    };
    let flag = |set: &mut bool, long: &str| -> Result<(), Stop> {
        if let Some(value) = &inline {
            return Err(error(
                &format!(
                    "unexpected value '{}' for '{long}' found; no more were expected",
                    value.to_string_lossy()
                ),
                Some(help::usage(sub)),
            ));
        }
        if std::mem::replace(set, true) {
            return Err(error(
                &format!("the argument '{long}' cannot be used multiple times"),
                Some(help::usage(sub)),
            ));
        }
        Ok(())
    };
    let slot = match (sub, name) {
        (_, "-h" | "--help") => return Err(Stop::print(help::text(sub).to_owned())),
        (None, "-V" | "--version") => {
            return Err(Stop::print(format!(
                "metaboot {}\n",
                env!("CARGO_PKG_VERSION")
            )));
        }
        (_, "-v" | "--verbose") => return flag(&mut seen.verbose, "--verbose"),
        (Some(Sub::Status), "--json") => return flag(&mut seen.json, "--json"),
        (Some(Sub::Status), "-w" | "--wait") => return flag(&mut seen.wait, "--wait"),
        // cloud-init's `status --long`: `status` always prints the long form.
        (Some(Sub::Status), "--long") => return flag(&mut seen.long, "--long"),
        (Some(Sub::Clean), "--logs") => return flag(&mut seen.logs, "--logs"),
        (Some(Sub::Clean), "--seed") => return flag(&mut seen.seed, "--seed"),
        (Some(Sub::Clean), "--reboot") => return flag(&mut seen.reboot, "--reboot"),
        (Some(Sub::Status), "--format") => (&mut seen.format, "--format <FORMAT>"),
        (Some(_), "--root") => (&mut seen.root, "--root <ROOT>"),
        (Some(Sub::Run), "--url") => (&mut seen.url, "--url <URL>"),
        (Some(Sub::Run), "--config") => (&mut seen.config, "--config <CONFIG>"),
        (Some(Sub::Run), "--stage") => (&mut seen.stage, "--stage <STAGE>"),
        _ => return Err(unexpected()),
    };
    let (slot, shown) = slot;
    let value = match inline {
        Some(value) => value,
        None => match words.next() {
            Some(next) if !next.as_bytes().starts_with(b"-") || next == "-" => next.to_owned(),
            _ => {
                return Err(error(
                    &format!("a value is required for '{shown}' but none was supplied"),
                    None,
                ));
            }
        },
    };
    // Checked as it comes, as clap did: a bad value is refused even before a later `--help`.
    match name {
        "--stage" => {
            stage(value.clone())?;
        }
        "--url" => {
            utf8(value.clone())?;
        }
        "--format" => {
            status_format(value.clone())?;
        }
        _ => {}
    }
    if slot.replace(value).is_some() {
        return Err(error(
            &format!("the argument '{shown}' cannot be used multiple times"),
            Some(help::usage(sub)),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
