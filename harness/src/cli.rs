//! The command line: `image build`, `lab up|down`, `boot`, `run`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::image::{self, tiny};
use crate::workspace;

#[derive(Debug, Parser)]
#[command(
    name = "metaboot-harness",
    version,
    about = "Guest images, the namespace lab, QEMU boots and the end-to-end checks of metaboot"
)]
pub struct Cli {
    /// Cache for packages and images (default: `.cache` in the workspace).
    #[arg(long, global = true, env = "METABOOT_CACHE")]
    pub cache: Option<PathBuf>,

    /// Log more (repeat for even more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Guest images.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image (reused when its inputs did not change).
    Build(ImageBuild),
}

/// Image recipes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImageKind {
    /// busybox initramfs + Debian cloud kernel + dropbear + the static guest agent.
    Tiny,
}

#[derive(Debug, clap::Args)]
pub struct ImageBuild {
    /// Which image.
    pub kind: ImageKind,
    /// Directory for images (default: `<cache>/images`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// Where the guest agent comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// A static `metaboot` binary to put into the image (default: build it with cargo).
    #[arg(long, env = "METABOOT_AGENT_BIN")]
    pub agent: Option<PathBuf>,
}

impl Cli {
    /// The cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache
            .clone()
            .unwrap_or_else(|| workspace::root().join(".cache"))
    }
}

/// Builds (or reuses) the tiny image.
pub fn build_tiny(
    cache: &std::path::Path,
    out: Option<PathBuf>,
    agent: &AgentArgs,
) -> anyhow::Result<image::Image> {
    let agent = match &agent.agent {
        Some(path) => path.clone(),
        None => workspace::build(workspace::GUEST_AGENT)
            .context("failed to build the static guest agent")?,
    };
    let spec = tiny::TinyBuild {
        out: out.unwrap_or_else(|| cache.join("images")),
        package_cache: cache.join("packages"),
        agent,
    };
    std::fs::create_dir_all(&spec.out)
        .with_context(|| format!("failed to create {}", spec.out.display()))?;
    tiny::build(&spec).context("failed to build the tiny image")
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let cache = cli.cache_dir();
    match cli.command {
        Command::Image(ImageCommand::Build(args)) => {
            let ImageKind::Tiny = args.kind;
            let image = build_tiny(&cache, args.out, &args.agent)?;
            let m = &image.manifest;
            println!(
                "tiny image {} {} ({:.1} MB initramfs, {} packages, {} modules, built in {:.2} s)",
                image.dir.display(),
                if image.cached { "reused" } else { "built" },
                m.initrd_bytes as f64 / 1e6,
                m.packages.len(),
                m.modules.len(),
                m.build_seconds
            );
            Ok(0)
        }
    }
}

/// Logs to stderr; levels from `-v`.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
}
