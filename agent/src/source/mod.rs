//! Where instance data comes from: a `config-2` config drive (first, when present) or the
//! metadata service. `Ok(None)` means a document is absent, which is not an error.

pub mod config_drive;
pub mod http;
pub mod metadata_service;

use std::path::PathBuf;

use crate::fsutil::PathError;
use crate::retry::RetryError;
use http::FetchError;

/// A source failure.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("Metadata service")]
    Fetch(#[from] RetryError<FetchError>),
    #[error("meta_data.json is missing (404) at {0}")]
    MissingMetaData(String),
    #[error("Config drive")]
    Io(#[from] PathError),
    #[error("Config drive: {} is larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("Config drive: failed to mount {device} on {}", target.display())]
    Mount {
        device: String,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// The OpenStack documents a source provides.
pub trait Source {
    /// `config-drive` or `metadata-service`.
    fn name(&self) -> &'static str;
    /// `meta_data.json`; required.
    fn meta_data(&mut self) -> Result<Vec<u8>, SourceError>;
    /// `user_data`, raw bytes.
    fn user_data(&mut self) -> Result<Option<Vec<u8>>, SourceError>;
    /// `vendor_data.json`.
    fn vendor_data(&mut self) -> Result<Option<Vec<u8>>, SourceError>;
    /// `vendor_data2.json`.
    fn vendor_data2(&mut self) -> Result<Option<Vec<u8>>, SourceError>;
    /// `network_data.json`.
    fn network_data(&mut self) -> Result<Option<Vec<u8>>, SourceError>;
}
