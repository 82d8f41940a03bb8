//! A guest's root file system as the guest agent finds it on a first boot (root only, no
//! password, hostname `localhost`), for `metaboot run --root DIR`.

use std::path::Path;

/// The files every first-boot root starts with.
pub const FIRST_BOOT_FILES: &[(&str, &str)] = &[
    ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
    ("etc/group", "root:x:0:\nusers:x:100:\n"),
    ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
    ("etc/hostname", "localhost\n"),
    ("etc/hosts", "127.0.0.1 localhost\n"),
];

/// Writes a first-boot root under `root`: the standard files, then `extra` ones, and
/// `etc/metaboot/metaboot.yaml` with `metaboot_yaml`.
pub fn first_boot(root: &Path, extra: &[(&str, &str)], metaboot_yaml: &str) {
    for (path, text) in FIRST_BOOT_FILES.iter().chain(extra) {
        let file = root.join(path);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(file, text).unwrap();
    }
    for dir in ["root", "tmp"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let config = root.join("etc/metaboot/metaboot.yaml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(config, metaboot_yaml).unwrap();
}
