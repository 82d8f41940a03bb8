use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = metaboot_server::Cli::parse();
    metaboot_server::cli::init_logging(cli.verbose);
    match metaboot_server::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(metaboot_server::cli::exit_code(&err))
        }
    }
}
