//! One file of a config drive: what the layout (`configdrive/mod.rs`) produces and the image
//! writer (`configdrive/image.rs`) takes.

use bytes::Bytes;

/// One file of a config drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveFile {
    /// Its path inside the drive, `/`-separated, without a leading slash
    /// (`openstack/latest/meta_data.json`).
    pub path: String,
    pub data: Bytes,
}
