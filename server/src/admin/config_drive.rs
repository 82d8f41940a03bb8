//! `instance config-drive NAME -o FILE`: the instance's config drive, as nova attaches it
//! (docs/protocol.md §9.6).

use std::path::PathBuf;

use clap::Args;

use super::{InputError, output};
use crate::api::{DEFAULT_DHCP_DOMAIN, InstanceView, Rendering, VendorDocs};
use crate::configdrive::image::ImageError;
use crate::configdrive::{self, DriveFormat};
use crate::store::Store;

/// `instance config-drive`'s arguments.
#[derive(Debug, Args)]
pub struct ConfigDriveArgs {
    /// The instance (uuid or unique name).
    pub instance: String,
    /// Where to write the image (made 0600: it holds the admin password).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// iso9660 (Rock Ridge and Joliet, as nova's default) or vfat.
    #[arg(long, value_enum, default_value = "iso9660")]
    pub format: DriveFormat,
    /// Domain appended to host names, as the API's --dhcp-domain (give the same value).
    #[arg(long, default_value = DEFAULT_DHCP_DOMAIN)]
    pub dhcp_domain: String,
    /// The API's --vendor-data file (give the same file).
    #[arg(long)]
    pub vendor_data: Option<PathBuf>,
}

/// Writes the instance's config drive.
pub fn run(store: &dyn Store, args: &ConfigDriveArgs) -> anyhow::Result<()> {
    crate::store::validate::dhcp_domain("--dhcp-domain", &args.dhcp_domain)?;
    let vendor = match &args.vendor_data {
        Some(path) => VendorDocs::load(path)?,
        None => VendorDocs::default(),
    };
    let rendering = Rendering {
        dhcp_domain: args.dhcp_domain.clone(),
        vendor,
    };
    let instance = store.instance(&args.instance)?;
    let ports = store.instance_ports(&instance.uuid)?;
    let (name, uuid) = (instance.name.clone(), instance.uuid.clone());
    let view = InstanceView::new(instance, ports);
    let files = configdrive::contents(&view, &rendering);
    configdrive::build(&files, args.format, &args.output).map_err(|err| match err {
        // The caller's path: refused as bad input, in one line.
        ImageError::NotAFile(_) => anyhow::Error::new(InputError(err.to_string())),
        err => anyhow::Error::new(err).context(format!(
            "failed to write the config drive {}",
            args.output.display()
        )),
    })?;
    output::line(&format!(
        "wrote the config drive of instance {name} ({uuid}) to {}: {} files, {}",
        args.output.display(),
        files.len(),
        match args.format {
            DriveFormat::Iso9660 => "iso9660 labelled config-2",
            DriveFormat::Vfat => "vfat labelled config-2",
        }
    ))
}
