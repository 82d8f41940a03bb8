//! The command line: `image build`, `lab up|down`, `boot`, `run`, and `bench` (forwarded).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

pub use crate::args::{AgentArgs, LabArgs, Run, ServerArgs, build_debian, build_tiny};
use crate::image::{self, debian};
use crate::lab::{self, Lab, LabOptions, config::LabConfig};
use crate::{bench, boot, progress};

#[derive(Debug, Parser)]
#[command(
    name = "metaboot-harness",
    version,
    about = "Guest images, the namespace lab, QEMU boots and the end-to-end checks of metaboot"
)]
pub struct Cli {
    /// Cache for packages, images and run logs (default: /var/cache/metaboot for root,
    /// ~/.cache/metaboot otherwise).
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
    /// The namespace lab.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Boot one guest in a lab that is up (or write its libvirt domain XML instead).
    Boot(Boot),
    /// Run end-to-end scenarios in a fresh lab: boot, check from outside, report.
    Run(Run),
    /// Measure the chain and the guest agent against real baselines (nginx, haproxy,
    /// cloud-init) in one run; print one table. Runs `metaboot-bench` with these arguments
    /// (`bench --help` shows its flags).
    #[command(disable_help_flag = true)]
    Bench(bench::Forward),
}

/// `--lab-id`/`--id`: a lab id, which names the lab's directory and namespaces.
fn lab_id(id: &str) -> Result<String, String> {
    lab::config::validate_id(id)
        .map(|()| id.to_owned())
        .map_err(|err| err.to_string())
}

/// `boot --name`: an instance name, which names the guest's directory.
fn guest_name(name: &str) -> Result<String, String> {
    lab::config::validate_name(name)
        .map(|()| name.to_owned())
        .map_err(|err| err.to_string())
}

#[derive(Debug, clap::Args)]
pub struct Boot {
    /// The lab (see `lab list`).
    #[arg(long, value_parser = lab_id)]
    pub lab_id: String,
    /// Its network.
    #[arg(long, default_value = "tenant-r")]
    pub network: String,
    /// Instance name: a guest of the lab file, or a new instance registered now (letters,
    /// digits, - and _; it names the guest's directory).
    #[arg(long, default_value = "guest1", value_parser = guest_name)]
    pub name: String,
    /// SSH public key to inject (default: a new key pair in the guest's directory).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// User data file.
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    /// Write a libvirt domain XML for this guest to FILE instead of starting QEMU.
    #[arg(long, value_name = "FILE")]
    pub emit_libvirt_xml: Option<PathBuf>,
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(flatten)]
    pub lab: LabArgs,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Bring a lab up from a lab file (default: one routed and one isolated network).
    Up(LabUp),
    /// Take a lab down (also after a crash of the process that brought it up).
    Down(LabDown),
    /// List the labs that are up.
    List(LabArgs),
}

#[derive(Debug, clap::Args)]
pub struct LabUp {
    /// The lab file (TOML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The lab id (overrides the file's; default for the built-in lab: random).
    #[arg(long, value_parser = lab_id)]
    pub id: Option<String>,
    #[command(flatten)]
    pub lab: LabArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, clap::Args)]
pub struct LabDown {
    /// The lab id.
    #[arg(long, required_unless_present_any = ["config", "all"], value_parser = lab_id)]
    pub id: Option<String>,
    /// Take down the lab of this lab file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Take down every lab that is up.
    #[arg(long, conflicts_with_all = ["id", "config"])]
    pub all: bool,
    #[command(flatten)]
    pub lab: LabArgs,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image (reused when its inputs did not change).
    Build(ImageBuild),
}

/// Image recipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImageKind {
    /// busybox initramfs + Debian cloud kernel + dropbear + the static guest agent.
    Tiny,
    /// Debian 12 cloud images (bootable qcow2 disks): debian-cloud-init (stock cloud-init) and
    /// debian-metaboot (the static guest agent instead), from Debian packages (mmdebstrap).
    Debian,
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

impl Cli {
    /// The cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache.clone().unwrap_or_else(image::cache::default_dir)
    }

    /// Makes the directories the commands write under absolute, once, from the current
    /// directory: `--cache` (`METABOOT_CACHE`), `image build --out`, `run --run-dir` and the
    /// labs' `--state-root` (`METABOOT_LAB_STATE`). The paths reach libvirt's domain XML (read
    /// by libvirtd, whose current directory is not ours), dnsmasq (which changes to `/` before
    /// it writes its pid file) and later commands run from elsewhere, and are compared with the
    /// absolute backing files `losetup` lists.
    pub fn with_absolute_paths(mut self) -> anyhow::Result<Self> {
        self.cache = self.cache.map(absolute).transpose()?;
        match &mut self.command {
            Command::Image(ImageCommand::Build(args)) => {
                args.out = args.out.take().map(absolute).transpose()?;
            }
            Command::Run(args) => {
                args.run_dir = args.run_dir.take().map(absolute).transpose()?;
                args.lab.make_absolute()?;
            }
            Command::Lab(LabCommand::Up(args)) => args.lab.make_absolute()?,
            Command::Lab(LabCommand::Down(args)) => args.lab.make_absolute()?,
            Command::Lab(LabCommand::List(args)) => args.make_absolute()?,
            Command::Boot(args) => args.lab.make_absolute()?,
            Command::Bench(_) => {}
        }
        Ok(self)
    }
}

/// `path` made absolute from the current directory (symbolic links left as they are).
fn absolute(path: impl AsRef<std::path::Path>) -> anyhow::Result<PathBuf> {
    let path = path.as_ref();
    std::path::absolute(path)
        .with_context(|| format!("failed to make {} an absolute path", path.display()))
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let cli = cli.with_absolute_paths()?;
    let cache = absolute(cli.cache_dir())?;
    match cli.command {
        Command::Image(ImageCommand::Build(args)) if args.kind == ImageKind::Debian => {
            // Ctrl-C stops the build step by step: loop devices and scratch directories go.
            crate::step::interrupt_on_signal()?;
            let built = build_debian(
                &cache,
                args.out,
                &args.agent,
                &debian::Flavour::ALL,
                &progress::Lines::new(),
            );
            let images = match built {
                Err(err) if crate::step::interrupted() => {
                    eprintln!("metaboot-harness: {err:#}; nothing of it is left in the cache");
                    return Ok(130);
                }
                other => other?,
            };
            for image in &images {
                let m = &image.manifest;
                println!(
                    "{} image {} {} ({:.0} MB qcow2 of a {} GiB disk, {} packages, kernel {}, built in {:.0} s)",
                    m.kind,
                    image.disk.display(),
                    if image.cached { "reused" } else { "built" },
                    m.disk_bytes as f64 / 1e6,
                    m.virtual_bytes >> 30,
                    m.packages.len(),
                    m.kernel,
                    m.build_seconds
                );
            }
            Ok(0)
        }
        Command::Image(ImageCommand::Build(args)) => {
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
        Command::Lab(LabCommand::Up(args)) => {
            let mut config = match &args.config {
                Some(path) => LabConfig::load(path)?,
                None => LabConfig::default_with_id(&lab::config::random_id()),
            };
            if let Some(id) = args.id {
                config.id = id;
            }
            let opts = LabOptions {
                state_root: args.lab.state_root,
                server_bin: args.server.resolve()?,
            };
            // Ctrl-C while it comes up takes down what was made.
            crate::scenario::tear_down_on_signal(&opts.state_root, &config.id)?;
            let lab = Lab::up(&config, &opts);
            crate::scenario::yield_to_a_signal();
            let mut lab = lab.with_context(|| format!("failed to bring lab {} up", config.id))?;
            // The lab is up as asked. A stop signal from here on finds it so and leaves it: its
            // teardown waits for this lock, held to the exit, where it would otherwise be cut
            // short by this process ending (exit 0, the lab half down). One that came first has
            // the lock and exits 130 when the lab is down.
            std::mem::forget(lab::changes());
            // The user's now: no `run` takes it down once this process has exited.
            lab.keep().with_context(|| {
                format!(
                    "lab {} is up, but the next `run` may take it down: take it down with \
                     `metaboot-harness lab down --id {}` and bring it up again",
                    config.id, config.id
                )
            })?;
            println!("{}", lab.describe());
            println!(
                "take it down with: metaboot-harness lab down --id {}",
                config.id
            );
            Ok(0)
        }
        Command::Lab(LabCommand::Down(args)) => {
            let ids = if args.all {
                let ids = lab::state::LabState::list(&args.lab.state_root);
                // Taken down all the same, as `--all` says; but named, as the runs they belong
                // to will fail.
                for (id, owner) in lab::abandoned::still_owned(&args.lab.state_root, &ids) {
                    eprintln!("{}", lab::abandoned::still_owned_warning(&id, &owner));
                }
                ids
            } else if let Some(path) = &args.config {
                vec![LabConfig::load(path)?.id]
            } else {
                args.id.into_iter().collect()
            };
            // Every lab is taken down even when one cannot be: the failures are told at the end.
            let mut failed = Vec::new();
            for id in ids {
                match lab::down(&args.lab.state_root, &id) {
                    Ok(true) => println!("lab {id} is down"),
                    Ok(false) => println!("lab {id} was not up"),
                    Err(err) => {
                        eprintln!("lab {id}: {err:#}");
                        failed.push(id);
                    }
                }
            }
            if !failed.is_empty() {
                anyhow::bail!(
                    "could not take down lab {}: see above, then run `metaboot-harness lab down \
                     --id ID` again",
                    failed.join(", ")
                );
            }
            Ok(0)
        }
        Command::Run(args) => crate::run::run(&cache, args),
        Command::Bench(args) => bench::forward(cli.cache.as_deref(), cli.verbose, &args),
        Command::Boot(args) => {
            let image = build_tiny(&cache, None, &args.agent)?;
            let spec = boot::BootSpec {
                lab_id: args.lab_id,
                network: args.network,
                name: args.name,
                key_file: args.key_file,
                user_data: args.user_data,
                emit_libvirt_xml: args.emit_libvirt_xml,
            };
            boot::boot(&args.lab.state_root, &image, &spec)
        }
        Command::Lab(LabCommand::List(args)) => list_labs(
            &args.state_root,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        ),
    }
}

/// `lab list`: describes every lab under `state_root` on `out`. A lab whose state is refused
/// (the trust checks of `lab/trust.rs`) or broken gets its error, with what to do, on
/// `errors`, and the others are still listed; then the command fails (exit 1) naming those
/// labs, as `ls` does for what it could not read.
pub fn list_labs(
    state_root: &std::path::Path,
    out: &mut dyn std::io::Write,
    errors: &mut dyn std::io::Write,
) -> anyhow::Result<i32> {
    let mut unread = Vec::new();
    for id in lab::state::LabState::list(state_root) {
        match Lab::open(state_root, &id) {
            Ok(lab) => writeln!(out, "{}", lab.describe()),
            Err(err) => {
                unread.push(id.clone());
                writeln!(errors, "lab {id}: {err:#}")
            }
        }
        .context("failed to write the list of labs")?;
    }
    if !unread.is_empty() {
        anyhow::bail!(
            "could not read the state of lab {}: see above (the other labs are listed)",
            unread.join(", ")
        );
    }
    Ok(0)
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

#[cfg(test)]
mod tests;
