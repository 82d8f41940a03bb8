//! The user data variants the matrix boots with, and what each one asks of the guest.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;

/// The MIME boundary of the multipart variant.
pub const MIME_BOUNDARY: &str = "==metaboot-harness-boundary==";

/// Where the scenarios' `runcmd` appends (on the persistent disk, which holds /root).
pub const RUNCMD_LOG: &str = "/root/runcmd.log";

/// Where the scenarios' `#!` scripts append.
pub const SCRIPT_LOG: &str = "/root/script.log";

/// How the user data is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// No user data: meta_data's hostname and keys only.
    None,
    /// `#cloud-config`.
    CloudConfig,
    /// `#cloud-config`, gzipped.
    GzipCloudConfig,
    /// A `#!/bin/sh` script.
    Script,
    /// A `#!/bin/sh` script, gzipped.
    GzipScript,
    /// MIME multipart: a cloud-config part and a script part.
    Multipart,
    /// gzip magic followed by garbage.
    CorruptGzip,
}

impl Variant {
    /// Every variant, in matrix order.
    pub const ALL: [Variant; 7] = [
        Variant::None,
        Variant::CloudConfig,
        Variant::GzipCloudConfig,
        Variant::Script,
        Variant::GzipScript,
        Variant::Multipart,
        Variant::CorruptGzip,
    ];

    /// The name used in scenario names.
    pub fn name(self) -> &'static str {
        match self {
            Variant::None => "none",
            Variant::CloudConfig => "cloud-config",
            Variant::GzipCloudConfig => "gzip-cloud-config",
            Variant::Script => "script",
            Variant::GzipScript => "gzip-script",
            Variant::Multipart => "multipart",
            Variant::CorruptGzip => "corrupt-gzip",
        }
    }

    /// Whether the user data carries a cloud-config (hostname, root password, ssh_pwauth, runcmd).
    pub fn has_cloud_config(self) -> bool {
        matches!(
            self,
            Variant::CloudConfig | Variant::GzipCloudConfig | Variant::Multipart
        )
    }

    /// Whether the user data carries a `#!` script.
    pub fn has_script(self) -> bool {
        matches!(
            self,
            Variant::Script | Variant::GzipScript | Variant::Multipart
        )
    }

    /// Whether `metaboot status` should report an error.
    pub fn expects_error(self) -> bool {
        self == Variant::CorruptGzip
    }
}

/// What a scenario asks the guest to become.
#[derive(Debug, Clone, Serialize)]
pub struct Intent {
    /// The hostname the cloud-config sets.
    pub hostname: String,
    /// Root's password the cloud-config sets.
    pub password: String,
    /// The line runcmd and the script append to their logs.
    pub marker: String,
}

/// A `#cloud-config` as a user would write it.
pub fn cloud_config(intent: &Intent) -> String {
    format!(
        "#cloud-config\n\
         hostname: {host}\n\
         disable_root: false\n\
         ssh_pwauth: true\n\
         chpasswd:\n  expire: false\n  users:\n    - name: root\n      password: \"{pw}\"\n      type: text\n\
         runcmd:\n  - echo \"{marker}\" >> {RUNCMD_LOG}\n",
        host = intent.hostname,
        pw = intent.password,
        marker = intent.marker,
    )
}

/// The `shutdown` command line the `power-state` flow's `power_state` makes.
pub const REBOOT_COMMAND: &str = "shutdown -r now 'metaboot-harness: rebooting once provisioned'";

/// How the `power-state` flow's final message starts (then `<uptime> s, datasource <name>`).
pub const FINAL_MESSAGE_PREFIX: &str = "metaboot-harness final message: up ";

/// What the `power-state` flow appends to its cloud-config: a reboot once runcmd ran (a
/// condition command), and a final message with cloud-init's variables.
pub const POWER_STATE_REBOOT: &str = "power_state:\n  mode: reboot\n  delay: now\n  \
     message: \"metaboot-harness: rebooting once provisioned\"\n  timeout: 30\n  \
     condition: \"test -s /root/runcmd.log\"\n\
     final_message: \"metaboot-harness final message: up $UPTIME s, datasource ${datasource}\"\n";

/// cloud-config's `phone_home` to `url`: every field, three tries.
pub fn phone_home(url: &str) -> String {
    format!("phone_home:\n  url: \"{url}\"\n  post: all\n  tries: 3\n")
}

/// A shell script as a user would write it.
pub fn script(intent: &Intent) -> String {
    format!(
        "#!/bin/sh\n# metaboot-harness: proves that user data scripts run, once per instance\n\
         echo \"{marker}\" >> {SCRIPT_LOG}\n",
        marker = intent.marker
    )
}

/// A MIME multipart message with a cloud-config part and a script part.
pub fn multipart(intent: &Intent) -> String {
    let part = |content_type: &str, name: &str, body: &str| {
        format!(
            "--{MIME_BOUNDARY}\nContent-Type: {content_type}; charset=\"us-ascii\"\nMIME-Version: 1.0\n\
             Content-Transfer-Encoding: 7bit\nContent-Disposition: attachment; filename=\"{name}\"\n\n{body}\n"
        )
    };
    format!(
        "Content-Type: multipart/mixed; boundary=\"{MIME_BOUNDARY}\"\nMIME-Version: 1.0\n\n{}{}--{MIME_BOUNDARY}--\n",
        part(
            "text/cloud-config",
            "cloud-config.txt",
            &cloud_config(intent)
        ),
        part("text/x-shellscript", "script.sh", &script(intent)),
    )
}

/// The gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(data);
    gz.finish().unwrap_or_default()
}

/// A gzip member cut short and overwritten: the magic and header are right, the deflate stream
/// is not, so any decompressor fails on it.
pub fn corrupt_gzip(intent: &Intent) -> Vec<u8> {
    let mut data = gzip(cloud_config(intent).as_bytes());
    let header = 10.min(data.len());
    for (i, byte) in data.iter_mut().enumerate().skip(header) {
        *byte = 0xff ^ (i as u8);
    }
    data.truncate(header + 40);
    data
}

/// The user data bytes of `variant`, if it has any.
pub fn user_data(variant: Variant, intent: &Intent) -> Option<Vec<u8>> {
    match variant {
        Variant::None => None,
        Variant::CloudConfig => Some(cloud_config(intent).into_bytes()),
        Variant::GzipCloudConfig => Some(gzip(cloud_config(intent).as_bytes())),
        Variant::Script => Some(script(intent).into_bytes()),
        Variant::GzipScript => Some(gzip(script(intent).as_bytes())),
        Variant::Multipart => Some(multipart(intent).into_bytes()),
        Variant::CorruptGzip => Some(corrupt_gzip(intent)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;

    fn intent() -> Intent {
        Intent {
            hostname: "ud-g1".into(),
            password: "pw-1".into(),
            marker: "m-1".into(),
        }
    }

    #[test]
    fn gzip_variants_decompress_to_the_plain_ones() {
        let mut text = String::new();
        GzDecoder::new(&user_data(Variant::GzipCloudConfig, &intent()).unwrap()[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, cloud_config(&intent()));
        assert!(text.contains("hostname: ud-g1\n") && text.contains("password: \"pw-1\""));
        let mut out = String::new();
        GzDecoder::new(&user_data(Variant::GzipScript, &intent()).unwrap()[..])
            .read_to_string(&mut out)
            .unwrap();
        assert!(out.starts_with("#!/bin/sh\n"));
    }

    #[test]
    fn corrupt_gzip_has_the_magic_but_does_not_decompress() {
        let data = user_data(Variant::CorruptGzip, &intent()).unwrap();
        assert_eq!(&data[..2], &[0x1f, 0x8b]);
        let mut out = Vec::new();
        assert!(GzDecoder::new(&data[..]).read_to_end(&mut out).is_err());
    }

    #[test]
    fn multipart_has_both_parts() {
        let text = multipart(&intent());
        assert!(text.starts_with("Content-Type: multipart/mixed; boundary="));
        assert!(
            text.contains("Content-Type: text/cloud-config")
                && text.contains("Content-Type: text/x-shellscript")
        );
        assert!(text.trim_end().ends_with(&format!("--{MIME_BOUNDARY}--")));
        assert_eq!(user_data(Variant::None, &intent()), None);
    }
}
