use super::*;

fn words(line: &str) -> Vec<OsString> {
    line.split(' ').map(OsString::from).collect()
}

fn parse(line: &str) -> Result<Cli, Stop> {
    Cli::parse(&words(line))
}

fn run(url: Option<&str>, root: &str, config: Option<&str>, stage: RunStage) -> Command {
    Command::Run(RunArgs {
        url: url.map(str::to_owned),
        root: PathBuf::from(root),
        config: config.map(PathBuf::from),
        stage,
    })
}

#[test]
fn the_command_lines_images_and_users_write_parse() {
    let cases: Vec<(&str, bool, Command)> = vec![
        ("metaboot run", false, run(None, "/", None, RunStage::All)),
        ("metaboot -v run", true, run(None, "/", None, RunStage::All)),
        (
            "metaboot run --verbose",
            true,
            run(None, "/", None, RunStage::All),
        ),
        (
            "metaboot run --root /tmp/r --url http://169.254.169.254",
            false,
            run(
                Some("http://169.254.169.254"),
                "/tmp/r",
                None,
                RunStage::All,
            ),
        ),
        (
            "metaboot run --config /etc/m.yaml -v --root /mnt",
            true,
            run(None, "/mnt", Some("/etc/m.yaml"), RunStage::All),
        ),
        (
            "metaboot --verbose run --url http://[fe80::1%25eth0]:8080",
            true,
            run(
                Some("http://[fe80::1%25eth0]:8080"),
                "/",
                None,
                RunStage::All,
            ),
        ),
        (
            "metaboot run --stage init",
            false,
            run(None, "/", None, RunStage::Init),
        ),
        (
            "metaboot run --stage=final --root=/mnt",
            false,
            run(None, "/mnt", None, RunStage::Final),
        ),
        (
            "metaboot run -v --stage all",
            true,
            run(None, "/", None, RunStage::All),
        ),
        (
            "metaboot run --root=-odd",
            false,
            run(None, "-odd", None, RunStage::All),
        ),
        (
            "metaboot run --root -",
            false,
            run(None, "-", None, RunStage::All),
        ),
        (
            "metaboot status",
            false,
            Command::Status(StatusArgs {
                root: "/".into(),
                json: false,
                wait: false,
            }),
        ),
        (
            "metaboot status --json --wait --root /mnt -v",
            true,
            Command::Status(StatusArgs {
                root: "/mnt".into(),
                json: true,
                wait: true,
            }),
        ),
        (
            "metaboot status --long -w --format json",
            false,
            Command::Status(StatusArgs {
                root: "/".into(),
                json: true,
                wait: true,
            }),
        ),
        (
            "metaboot status --format yaml",
            false,
            Command::Status(StatusArgs {
                root: "/".into(),
                json: true,
                wait: false,
            }),
        ),
        (
            "metaboot status --long --format=tabular",
            false,
            Command::Status(StatusArgs {
                root: "/".into(),
                json: false,
                wait: false,
            }),
        ),
        (
            "metaboot query instance-id",
            false,
            Command::Query(QueryArgs {
                key: "instance-id".into(),
                root: "/".into(),
            }),
        ),
        (
            "metaboot query --root=/x -- user-data",
            false,
            Command::Query(QueryArgs {
                key: "user-data".into(),
                root: "/x".into(),
            }),
        ),
        (
            "metaboot local",
            false,
            Command::Local(LocalArgs { root: "/".into() }),
        ),
        (
            "metaboot clean --logs --seed --reboot --root /x",
            false,
            Command::Clean(CleanArgs {
                root: "/x".into(),
                logs: true,
                seed: true,
                reboot: true,
            }),
        ),
        (
            "metaboot local -v --root=/x",
            true,
            Command::Local(LocalArgs { root: "/x".into() }),
        ),
    ];
    for (line, verbose, command) in cases {
        assert_eq!(parse(line), Ok(Cli { verbose, command }), "{line}");
    }
}

#[test]
fn help_and_version_go_to_standard_output() {
    for (line, start) in [
        ("metaboot --help", "The metaboot guest agent:"),
        ("metaboot -h", "The metaboot guest agent:"),
        ("metaboot help", "The metaboot guest agent:"),
        ("metaboot run --help", "One provisioning pass:"),
        ("metaboot run --root /x -h", "One provisioning pass:"),
        ("metaboot help run", "One provisioning pass:"),
        ("metaboot status --help", "Show the outcome of the last run"),
        ("metaboot help query", "Print one value from the cached"),
        ("metaboot local --help", "Before the network starts:"),
        ("metaboot --version", "metaboot 0.1.0\n"),
        ("metaboot -V", "metaboot 0.1.0\n"),
    ] {
        let stop = parse(line).unwrap_err();
        assert_eq!(stop.code, 0, "{line}");
        assert!(stop.text.starts_with(start), "{line}: {}", stop.text);
    }
    // Every help text names every option its parser takes.
    for (sub, options) in [
        (
            Sub::Run,
            &["--url", "--root", "--config", "--stage", "--verbose"][..],
        ),
        (
            Sub::Status,
            &["--root", "--json", "--wait", "--verbose"][..],
        ),
        (Sub::Query, &["--root", "<KEY>", "--verbose"][..]),
        (Sub::Local, &["--root", "--verbose"][..]),
        (
            Sub::Clean,
            &["--root", "--logs", "--seed", "--reboot", "--verbose"][..],
        ),
    ] {
        for option in options {
            assert!(help::text(Some(sub)).contains(option), "{sub:?} {option}");
        }
        assert!(help::text(Some(sub)).contains(help::usage(Some(sub))));
    }
}

#[test]
fn a_command_line_that_cannot_be_used_says_why_as_clap_did() {
    let usage_error = |message: &str, usage: &str| {
        format!("error: {message}\n\nUsage: {usage}\n\nFor more information, try '--help'.\n")
    };
    let cases = [
        (
            "metaboot run --stage boot",
            "error: invalid value 'boot' for '--stage <STAGE>'\n  [possible values: all, init, \
             final]\n\nFor more information, try '--help'.\n"
                .to_owned(),
        ),
        (
            "metaboot run --root",
            "error: a value is required for '--root <ROOT>' but none was supplied\n\nFor more \
             information, try '--help'.\n"
                .to_owned(),
        ),
        (
            "metaboot run --url -v",
            "error: a value is required for '--url <URL>' but none was supplied\n\nFor more \
             information, try '--help'.\n"
                .to_owned(),
        ),
        (
            "metaboot run --root /a --root /b",
            usage_error(
                "the argument '--root <ROOT>' cannot be used multiple times",
                "metaboot run [OPTIONS]",
            ),
        ),
        (
            "metaboot bogus",
            usage_error(
                "unrecognized subcommand 'bogus'",
                "metaboot [OPTIONS] <COMMAND>",
            ),
        ),
        (
            "metaboot help bogus",
            usage_error(
                "unrecognized subcommand 'bogus'",
                "metaboot [OPTIONS] <COMMAND>",
            ),
        ),
        (
            "metaboot query",
            usage_error(
                "the following required arguments were not provided:\n  <KEY>",
                "metaboot query <KEY>",
            ),
        ),
        (
            "metaboot query a b",
            usage_error(
                "unexpected argument 'b' found",
                "metaboot query [OPTIONS] <KEY>",
            ),
        ),
        (
            "metaboot status --json --json",
            usage_error(
                "the argument '--json' cannot be used multiple times",
                "metaboot status [OPTIONS]",
            ),
        ),
        (
            "metaboot status --json=yes",
            usage_error(
                "unexpected value 'yes' for '--json' found; no more were expected",
                "metaboot status [OPTIONS]",
            ),
        ),
        (
            "metaboot -v -v run",
            usage_error(
                "the argument '--verbose' cannot be used multiple times",
                "metaboot [OPTIONS] <COMMAND>",
            ),
        ),
        (
            "metaboot run --version",
            usage_error(
                "unexpected argument '--version' found",
                "metaboot run [OPTIONS]",
            ),
        ),
        (
            "metaboot status --format xml",
            "error: invalid value 'xml' for '--format <FORMAT>'\n  [possible values: json, tabular, yaml]\n\nFor more information, try '--help'.\n".to_owned(),
        ),
        (
            "metaboot status --long --long",
            usage_error(
                "the argument '--long' cannot be used multiple times",
                "metaboot status [OPTIONS]",
            ),
        ),
        (
            "metaboot status --wat",
            usage_error(
                "unexpected argument '--wat' found",
                "metaboot status [OPTIONS]",
            ),
        ),
        (
            "metaboot --root /mnt run",
            usage_error(
                "unexpected argument '--root' found",
                "metaboot [OPTIONS] <COMMAND>",
            ),
        ),
        (
            "metaboot run run",
            usage_error("unexpected argument 'run' found", "metaboot run [OPTIONS]"),
        ),
        (
            "metaboot run --json",
            usage_error(
                "unexpected argument '--json' found",
                "metaboot run [OPTIONS]",
            ),
        ),
        (
            "metaboot local --url http://169.254.169.254",
            usage_error(
                "unexpected argument '--url' found",
                "metaboot local [OPTIONS]",
            ),
        ),
    ];
    for (line, text) in cases {
        assert_eq!(
            parse(line),
            Err(Stop {
                code: EXIT_USAGE,
                text
            }),
            "{line}"
        );
    }
    // A bad value is refused where it stands, even before a later --help (as clap did: the
    // units' test relies on it).
    assert_eq!(
        parse("metaboot run --stage boot --help").unwrap_err().code,
        EXIT_USAGE
    );
    assert_eq!(
        parse("metaboot run --stage init --help").unwrap_err().code,
        0
    );
    // No subcommand: the help, on standard error.
    assert_eq!(
        Cli::parse(&words("metaboot")),
        Err(Stop {
            code: EXIT_USAGE,
            text: help::text(None).to_owned()
        })
    );
}

#[test]
fn paths_may_be_any_bytes_and_text_values_must_be_text() {
    use std::os::unix::ffi::OsStringExt;
    let odd = OsString::from_vec(b"/mnt/\xff".to_vec());
    let mut eq = OsString::from("--root=");
    eq.push(&odd);
    for args in [
        vec![
            "metaboot".into(),
            "run".into(),
            "--root".into(),
            odd.clone(),
        ],
        vec!["metaboot".into(), "run".into(), eq],
    ] {
        let Command::Run(parsed) = Cli::parse(&args).unwrap().command else {
            panic!("expected run");
        };
        assert_eq!(parsed.root, PathBuf::from(&odd));
    }
    let args = vec!["metaboot".into(), "run".into(), "--url".into(), odd];
    let stop = Cli::parse(&args).unwrap_err();
    assert_eq!(stop.code, EXIT_USAGE);
    assert!(stop.text.contains("invalid UTF-8"), "{}", stop.text);
}
