//! `/etc/hosts` (docs/protocol.md §5.1, `manage_etc_hosts`): `true` renders cloud-init's Debian
//! template; `localhost` maintains only the `127.0.1.1` line and keeps every other line.

/// The hosts file, under the root.
pub const HOSTS_FILE: &str = "/etc/hosts";
/// The address Debian-family systems give their own name.
pub const LOCAL_IP: &str = "127.0.1.1";

/// cloud-init's `hosts.debian.tmpl`, rendered.
pub fn render_template(hostname: &str, fqdn: &str) -> String {
    format!(
        "# Your system has configured 'manage_etc_hosts' as True.\n\
         # As a result, if you wish for changes to this file to persist\n\
         # then you will need to either\n\
         # a.) change or remove the value of 'manage_etc_hosts' in\n\
         #     /etc/metaboot/metaboot.yaml or cloud-config from user-data\n\
         #\n\
         {LOCAL_IP} {fqdn} {hostname}\n\
         127.0.0.1 localhost\n\
         \n\
         # The following lines are desirable for IPv6 capable hosts\n\
         ::1 localhost ip6-localhost ip6-loopback\n\
         ff02::1 ip6-allnodes\n\
         ff02::2 ip6-allrouters\n"
    )
}

fn names_of(line: &str) -> Option<Vec<&str>> {
    let content = line.split('#').next().unwrap_or("");
    let mut words = content.split_whitespace();
    (words.next()? == LOCAL_IP).then(|| words.collect())
}

/// Sets the `127.0.1.1` entry to `fqdn hostname` (cloud-init's `update_etc_hosts`): an entry
/// that already lists `fqdn` first and `hostname` among its aliases is left alone; otherwise
/// every `127.0.1.1` line is replaced by one new line (where the first one was, else appended).
pub fn update_local_line(text: &str, hostname: &str, fqdn: &str) -> String {
    let entries: Vec<Vec<&str>> = text.lines().filter_map(names_of).collect();
    let current = entries.iter().any(|names| {
        names.first() == Some(&fqdn) && (fqdn == hostname || names[1..].contains(&hostname))
    });
    if current {
        return text.to_owned();
    }
    let entry = if fqdn == hostname {
        format!("{LOCAL_IP} {hostname}")
    } else {
        format!("{LOCAL_IP} {fqdn} {hostname}")
    };
    let mut out: Vec<String> = Vec::new();
    let mut placed = false;
    for line in text.lines() {
        if names_of(line).is_some() {
            if !placed {
                out.push(entry.clone());
                placed = true;
            }
            continue;
        }
        out.push(line.to_owned());
    }
    if !placed {
        out.push(entry);
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_HOSTS: &str = "127.0.0.1\tlocalhost\n127.0.1.1\told.example old\n\n\
        # IPv6\n::1     localhost ip6-localhost ip6-loopback\n";

    #[test]
    fn replaces_only_the_local_line() {
        let out = update_local_line(DEBIAN_HOSTS, "web", "web.example.org");
        assert_eq!(
            out,
            DEBIAN_HOSTS.replace(
                "127.0.1.1\told.example old",
                "127.0.1.1 web.example.org web"
            )
        );
        assert_eq!(
            update_local_line(&out, "web", "web.example.org"),
            out,
            "idempotent"
        );
    }

    #[test]
    fn appends_when_missing_and_collapses_duplicates() {
        assert_eq!(
            update_local_line("127.0.0.1 localhost\n", "h", "h"),
            "127.0.0.1 localhost\n127.0.1.1 h\n"
        );
        assert_eq!(update_local_line("", "h", "h.d"), "127.0.1.1 h.d h\n");
        let doubled = "127.0.1.1 a\n10.0.0.1 x\n127.0.1.1 b # note\n";
        assert_eq!(
            update_local_line(doubled, "h", "h.d"),
            "127.0.1.1 h.d h\n10.0.0.1 x\n"
        );
    }

    #[test]
    fn comments_mentioning_the_address_are_kept() {
        let text = "# 127.0.1.1 is ours\n127.0.1.1 h.d h\n";
        assert_eq!(update_local_line(text, "h", "h.d"), text);
    }

    #[test]
    fn template_lists_fqdn_then_hostname() {
        let text = render_template("web", "web.example.org");
        assert!(text.contains("\n127.0.1.1 web.example.org web\n127.0.0.1 localhost\n"));
        assert!(text.contains("::1 localhost ip6-localhost ip6-loopback\n"));
    }
}
