//! `/etc/fstab` as cloud-init's `cc_mounts` edits it: the lines it wrote before (marked
//! `comment=cloudconfig` in their options) are dropped, every other line is kept as it is, and
//! the new entries are appended, tab-separated, their fields octal-escaped (cloud-init escapes
//! the first two; a line break in another field would start a line of its own, without the
//! mark that lets the next instance drop it).

/// The mark in the options of every line metaboot (and cloud-init) writes.
pub const MNT_COMMENT: &str = "comment=cloudconfig";

/// Characters escaped in an fstab field (backslash first, as `escape_fstab_field`).
const ESCAPES: [(char, &str); 4] = [
    ('\\', "\\134"),
    (' ', "\\040"),
    ('\t', "\\011"),
    ('\n', "\\012"),
];

/// An fstab read: the lines kept, the devices they name, the lines dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fstab {
    /// Every line without [`MNT_COMMENT`], as it was (blank lines and comments included).
    pub kept: Vec<String>,
    /// The first field of each kept line that has one, unescaped.
    pub devices: Vec<String>,
    /// The lines with [`MNT_COMMENT`] (a previous instance's entries).
    pub dropped: Vec<String>,
}

impl Fstab {
    pub fn parse(text: &str) -> Self {
        let mut fstab = Fstab::default();
        for line in text.lines() {
            if line.contains(MNT_COMMENT) {
                fstab.dropped.push(line.to_owned());
                continue;
            }
            if let Some(first) = line.split_whitespace().next()
                && !first.starts_with('#')
            {
                fstab.devices.push(unescape(first));
            }
            fstab.kept.push(line.to_owned());
        }
        fstab
    }

    /// Whether a kept line names `device`.
    pub fn has_device(&self, device: &str) -> bool {
        self.devices.iter().any(|d| d == device)
    }

    /// The file: the kept lines, then `added`.
    pub fn render(&self, added: &[String]) -> String {
        let mut text = String::new();
        for line in self.kept.iter().chain(added) {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

pub fn escape(field: &str) -> String {
    let mut out = field.to_owned();
    for (c, escaped) in ESCAPES {
        out = out.replace(c, escaped);
    }
    out
}

pub fn unescape(field: &str) -> String {
    let mut out = field.to_owned();
    for (c, escaped) in ESCAPES.iter().rev() {
        out = out.replace(escaped, &c.to_string());
    }
    out
}

/// One entry's line: six fields, tab-separated, each escaped.
pub fn line(entry: &[String]) -> String {
    entry
        .iter()
        .map(|field| escape(field))
        .collect::<Vec<_>>()
        .join("\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_entries_are_dropped_and_the_rest_kept_as_written() {
        let text = "# /etc/fstab\nUUID=abc / ext4 rw,discard 0 1\n\n\
                    /dev/vdb\t/mnt\tauto\tdefaults,nofail,comment=cloudconfig\t0\t2\n\
                    my\\040disk /data ext4 defaults 0 0\n";
        let fstab = Fstab::parse(text);
        assert_eq!(
            fstab.dropped,
            ["/dev/vdb\t/mnt\tauto\tdefaults,nofail,comment=cloudconfig\t0\t2"]
        );
        assert_eq!(fstab.devices, ["UUID=abc", "my disk"]);
        assert!(fstab.has_device("my disk") && !fstab.has_device("/dev/vdb"));
        let added = [line(&[
            "/dev/vdc".into(),
            "/my mnt".into(),
            "auto".into(),
            "defaults".into(),
            "0".into(),
            "2".into(),
        ])];
        assert_eq!(
            fstab.render(&added),
            "# /etc/fstab\nUUID=abc / ext4 rw,discard 0 1\n\nmy\\040disk /data ext4 defaults 0 0\n\
             /dev/vdc\t/my\\040mnt\tauto\tdefaults\t0\t2\n"
        );
    }

    #[test]
    fn escaping_round_trips() {
        for field in [
            "plain",
            "a b",
            "tab\there",
            "back\\slash \\040",
            "new\nline",
        ] {
            assert_eq!(unescape(&escape(field)), field);
        }
        assert_eq!(escape("a b\\"), "a\\040b\\134");
    }

    /// A line break in any field (here the type, as `mounts` gives it) stays inside the line:
    /// no entry of its own, which would lack the mark and outlive the instance.
    #[test]
    fn every_field_stays_on_its_line() {
        let entry = [
            "/dev/vdb",
            "/data",
            "ext4\n/dev/vdc /etc ext4 defaults 0 0",
            "defaults,comment=cloudconfig",
            "0\n/dev/vdd /usr ext4 defaults 0",
            "2",
        ]
        .map(str::to_owned);
        let written = line(&entry);
        assert!(!written.contains('\n'), "{written}");
        assert_eq!(written.split('\t').count(), 6, "{written}");
        assert!(written.contains(MNT_COMMENT));
    }
}
