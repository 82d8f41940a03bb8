//! metaboot-harness: build guest images, run the namespace lab, boot guests and check them.

use clap::Parser;
use metaboot_harness::cli::{self, Cli};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.verbose);
    match cli::run(cli) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("metaboot-harness: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
