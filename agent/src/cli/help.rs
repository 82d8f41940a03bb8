//! The help texts and usage lines, as clap printed them for the same definitions.

use super::subcommand::Sub;

/// `metaboot --help` (also printed, on standard error, when no subcommand is given).
const TOP: &str = "\
The metaboot guest agent: fetch instance metadata, decode user data, apply it

Usage: metaboot [OPTIONS] <COMMAND>

Commands:
  run     One provisioning pass: fetch metadata and user data, apply them
  status  Show the outcome of the last run (done / running / error); non-zero unless done
  query   Print one value from the cached instance data
  local   Before the network starts: set aside an ifupdown configuration written for another instance's NICs
  clean   Empty the state directory for an image made from this machine, as cloud-init clean
  help    Print this message or the help of the given subcommand(s)

Options:
  -v, --verbose  Log debug detail (every request, every step start)
  -h, --help     Print help
  -V, --version  Print version
";

/// `metaboot run --help`.
const RUN: &str = "\
One provisioning pass: fetch metadata and user data, apply them

Usage: metaboot run [OPTIONS]

Options:
      --url <URL>
          Metadata service base URL (an IP literal; overrides metaboot.yaml and `metaboot.url=`)

  -v, --verbose
          Log debug detail (every request, every step start)

      --root <ROOT>
          Directory every path read or written is taken under

          [default: /]

      --config <CONFIG>
          Configuration file (default: `<root>/etc/metaboot/metaboot.yaml`); taken as given, not under the root

      --stage <STAGE>
          Which part of the pass: `all`, or `init` (everything up to the logins: metaboot.service) then `final` (packages, the user scripts, ..., after logins open: metaboot-final.service), like cloud-init's stages

          Possible values:
          - all:   The whole pass in one process
          - init:  The steps before `ca-certs` (what the logins need), and the user scripts written for `final`; the run stays `running`
          - final: The steps from `ca-certs` on (packages, the user scripts, phone_home, ...) of the run `init` left open; then the run is done

          [default: all]

  -h, --help
          Print help
";

/// `metaboot status --help`.
const STATUS: &str = "\
Show the outcome of the last run (done / running / error); non-zero unless done

Usage: metaboot status [OPTIONS]

Options:
      --root <ROOT>  Directory the state is read under [default: /]
  -v, --verbose      Log debug detail (every request, every step start)
      --json         Print the whole status document as JSON
      --format <FORMAT>
                     json, yaml: as --json (JSON is YAML); tabular: the text form
                     [possible values: json, tabular, yaml]
  -w, --wait         Wait until the run in progress has finished
      --long         Accepted for cloud-init's `status --long`: the text form is the long one
  -h, --help         Print help
";

/// `metaboot query --help`.
const QUERY: &str = "\
Print one value from the cached instance data

Usage: metaboot query [OPTIONS] <KEY>

Arguments:
  <KEY>  One of: instance-id, local-hostname, hostname, availability-zone, project-id, public-keys, user-data, vendor-data

Options:
      --root <ROOT>  Directory the cached data is read under [default: /]
  -v, --verbose      Log debug detail (every request, every step start)
  -h, --help         Print help
";

/// `metaboot local --help`.
const LOCAL: &str = "\
Before the network starts: set aside an ifupdown configuration written for another instance's NICs

Usage: metaboot local [OPTIONS]

Options:
      --root <ROOT>  Directory every path read or written is taken under, sys/class/net included [default: /]
  -v, --verbose      Log debug detail (every request, every step start)
  -h, --help         Print help
";

/// `metaboot clean --help`.
const CLEAN: &str = "\
Empty the state directory for an image made from this machine, as cloud-init clean

Usage: metaboot clean [OPTIONS]

Options:
      --root <ROOT>  Directory every path removed is taken under [default: /]
      --logs         Remove the log files too
      --seed         Remove the seed directory /var/lib/cloud/seed too
      --reboot       Reboot once clean (`shutdown -r now`)
  -v, --verbose      Log debug detail (every request, every step start)
  -h, --help         Print help
";

/// The help of `sub`, or of the program.
pub(super) fn text(sub: Option<Sub>) -> &'static str {
    match sub {
        None => TOP,
        Some(Sub::Run) => RUN,
        Some(Sub::Status) => STATUS,
        Some(Sub::Query) => QUERY,
        Some(Sub::Local) => LOCAL,
        Some(Sub::Clean) => CLEAN,
    }
}

/// The usage line of `sub`, or of the program.
pub(super) fn usage(sub: Option<Sub>) -> &'static str {
    match sub {
        None => "metaboot [OPTIONS] <COMMAND>",
        Some(Sub::Run) => "metaboot run [OPTIONS]",
        Some(Sub::Status) => "metaboot status [OPTIONS]",
        Some(Sub::Query) => "metaboot query [OPTIONS] <KEY>",
        Some(Sub::Local) => "metaboot local [OPTIONS]",
        Some(Sub::Clean) => "metaboot clean [OPTIONS]",
    }
}
