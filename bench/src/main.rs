//! metaboot-bench: metaboot against nginx, haproxy and cloud-init in one run, one table.

use clap::Parser;
use metaboot_bench::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    metaboot_harness::cli::init_logging(cli.verbose);
    match metaboot_bench::run(&cli.cache_dir(), &cli.bench) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("metaboot-bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
