//! `instance create|list|show|delete`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::input::InputError;
use super::keys::read_key_file;
use super::output::{self, Output};
use crate::store::{
    Instance, MAX_PASSWORD_BYTES, MAX_USER_DATA_BYTES, Network, NewInstance, NewPort, Port, Store,
    validate,
};

/// `metaboot-server instance …`.
#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Create an instance with one port on a network.
    Create(Box<InstanceCreate>),
    /// List instances.
    List(Output),
    /// Show one instance (by id or unique name).
    Show {
        instance: String,
        #[command(flatten)]
        output: Output,
    },
    /// Delete an instance and its ports.
    Delete { instance: String },
    /// Write the instance's config drive (`config-2`, as nova attaches it).
    ConfigDrive(super::config_drive::ConfigDriveArgs),
    /// Print the password the instance's guest agent posted, decrypted (nova's get-password).
    GetPassword(super::password::GetPasswordArgs),
    /// Clear the password the instance's guest agent posted, so that it may post a new one
    /// (nova's clear-password).
    ClearPassword { instance: String },
}

/// `instance create`'s arguments.
#[derive(Debug, Args)]
pub struct InstanceCreate {
    pub name: String,
    /// Network id or name for the instance's port.
    #[arg(long)]
    pub network: String,
    /// The port's address (default: a free one); on a dual-stack network one per subnet,
    /// e.g. `--ip 198.18.0.10 --ip fdc6:1200:0:1::10`.
    #[arg(long)]
    pub ip: Vec<String>,
    #[arg(long)]
    pub mac: Option<String>,
    /// Host name (default: derived from the name as nova 23 and later derive it: `web.prod.01`
    /// → `web-prod-01`, Latin-1 letters kept, `Server-<uuid>` when nothing usable is left).
    #[arg(long)]
    pub hostname: Option<String>,
    #[arg(long, default_value = "admin")]
    pub project: String,
    /// Served as `nova` (nova's default zone) when not given.
    #[arg(long = "availability-zone")]
    pub availability_zone: Option<String>,
    #[arg(long = "launch-index", default_value_t = 0)]
    pub launch_index: u32,
    /// An SSH public key file; repeatable. The key pair is named after the file (without
    /// `.pub`) unless --key-name names it.
    #[arg(long = "key-file")]
    pub key_files: Vec<PathBuf>,
    /// Name of the key pair of the --key-file at the same position (letters, digits, '_', '-',
    /// '@', '.' and spaces, at most 255); give it once per --key-file, or not at all.
    #[arg(long = "key-name")]
    pub key_names: Vec<String>,
    /// The user data file (at most 49149 bytes: 65535 characters in base64, as nova's API
    /// takes it).
    #[arg(long = "user-data")]
    pub user_data: Option<PathBuf>,
    /// Server metadata `K=V`; repeatable.
    #[arg(long = "meta")]
    pub meta: Vec<String>,
    /// Admin password (served on config drives only). Other users can read it in `ps`:
    /// prefer --admin-pass-file.
    #[arg(long = "admin-pass", conflicts_with = "admin_pass_file")]
    pub admin_pass: Option<String>,
    /// A file holding the admin password (one trailing newline is dropped); `/dev/stdin`
    /// reads it from a pipe.
    #[arg(long = "admin-pass-file")]
    pub admin_pass_file: Option<PathBuf>,
    /// Instance uuid (default: a new random one).
    #[arg(long)]
    pub uuid: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

/// Runs one `instance` command against `store`.
pub fn run(store: &dyn Store, cmd: InstanceCommand) -> anyhow::Result<()> {
    match cmd {
        InstanceCommand::Create(args) => create(store, *args),
        InstanceCommand::List(output) => list(store, output),
        InstanceCommand::Show { instance, output } => {
            let instance = store.instance(&instance)?;
            let ports = store.instance_ports(&instance.uuid)?;
            show(&instance, &ports, output)
        }
        InstanceCommand::Delete { instance } => {
            let instance = store.instance(&instance)?;
            store.delete_instance(&instance.uuid)?;
            output::line(&format!(
                "deleted instance {} ({}) and its ports",
                instance.name, instance.uuid
            ))
        }
        InstanceCommand::ConfigDrive(args) => super::config_drive::run(store, &args),
        InstanceCommand::GetPassword(args) => super::password::run(store, &args),
        InstanceCommand::ClearPassword { instance } => {
            let instance = store.instance(&instance)?;
            let said = if store.clear_password(&instance.uuid)? {
                "cleared the password of instance"
            } else {
                "no password to clear: none is stored for instance"
            };
            output::line(&format!("{said} {} ({})", instance.name, instance.uuid))
        }
    }
}

/// What `instance create --json` prints: enough for a script to boot and reach the guest.
#[derive(Serialize)]
struct Created<'a> {
    uuid: &'a str,
    name: &'a str,
    ip: String,
    /// Every address of the port (two on a dual-stack network).
    ips: Vec<String>,
    mac: &'a str,
    port_id: &'a str,
    network_id: &'a str,
}

fn create(store: &dyn Store, args: InstanceCreate) -> anyhow::Result<()> {
    if !args.key_names.is_empty() && args.key_names.len() != args.key_files.len() {
        return Err(InputError(format!(
            "{} --key-name for {} --key-file: give one --key-name per --key-file, in the same \
             order, or none",
            args.key_names.len(),
            args.key_files.len()
        ))
        .into());
    }
    let key_pairs = args
        .key_files
        .iter()
        .enumerate()
        .map(|(index, path)| read_key_file(path, args.key_names.get(index).map(String::as_str)))
        .collect::<Result<Vec<_>, _>>()?;
    let admin_pass = match (&args.admin_pass, &args.admin_pass_file) {
        (_, Some(path)) => Some(read_admin_pass(path)?),
        // Refused as an empty file is: a config drive leaves an empty password out (as nova),
        // so taking it would only make `instance show` say one is set.
        (Some(pass), None) if pass.is_empty() => {
            return Err(InputError(
                "--admin-pass is empty: give the password, or leave --admin-pass out".to_owned(),
            )
            .into());
        }
        (pass, None) => pass.clone(),
    };
    let user_data = args.user_data.as_deref().map(read_user_data).transpose()?;
    let meta = parse_meta(&args.meta)?;
    let (ip, second_ip) = super::port::parse_ips(&args.ip)?;
    // Normalised first: nova's fallback host name (`Server-<uuid>`) carries it.
    let uuid = match &args.uuid {
        Some(uuid) => validate::uuid(uuid)?,
        None => uuid::Uuid::new_v4().hyphenated().to_string(),
    };
    let hostname = args
        .hostname
        .clone()
        .unwrap_or_else(|| validate::default_hostname(&args.name, &uuid));
    let new = NewInstance {
        uuid,
        project: args.project,
        name: args.name,
        hostname,
        availability_zone: args.availability_zone,
        launch_index: args.launch_index,
        key_pairs,
        user_data,
        meta,
        admin_pass,
    };
    // Read before the write, and the port placed on it by id: once the write succeeded the
    // command must too (an error would have the user run it again and register a second
    // instance), so nothing after the write reads the registry.
    let network = store.network(&args.network)?;
    let port = NewPort {
        network_id: network.id.clone(),
        ip,
        second_ip,
        mac: args.mac,
        instance_id: new.uuid.clone(),
    };
    let (instance, port) = store.create_instance(&new, &port)?;
    if args.output.json {
        return output::json(&Created {
            uuid: &instance.uuid,
            name: &instance.name,
            ip: port.shown_ip(),
            ips: port.shown_ips(),
            mac: &port.mac,
            port_id: &port.id,
            network_id: &port.network_id,
        });
    }
    let hint = libvirt_host_entry(&network, &port);
    show(&instance, &[(port, network)], Output { json: false })?;
    match hint {
        Some(hint) => output::line(&hint),
        None => Ok(()),
    }
}

#[cfg(test)]
mod create_tests;

/// For a fixed address on a libvirt network: the `virsh` line that makes libvirt's DHCP
/// server hand the guest that address.
fn libvirt_host_entry(network: &Network, port: &Port) -> Option<String> {
    let name = network.host.as_ref()?.libvirt_network()?;
    if port.ip_learned() {
        return None;
    }
    Some(format!(
        "libvirt hands the guest this address once told: virsh net-update {} add \
         ip-dhcp-host \"<host mac='{}' ip='{}'/>\" --live --config",
        shell_word(name),
        port.mac,
        port.ip
    ))
}

/// `text` as one shell word: as it is when it holds only characters no shell treats
/// specially, else single-quoted (a user pastes the line, so a name such as `my lab` or one
/// with `$(…)` must stay one argument and run nothing).
fn shell_word(text: &str) -> String {
    let plain = |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '%' | '+' | ',')
    };
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Reads the user data file; reads one byte past the limit so the store can refuse a file
/// that is too large without this reading all of it.
fn read_user_data(path: &Path) -> Result<Vec<u8>, InputError> {
    let shown = path.display();
    let file = File::open(path)
        .map_err(|err| InputError(format!("cannot read user data file {shown}: {err}")))?;
    let mut data = Vec::new();
    (&file)
        .take(MAX_USER_DATA_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|err| InputError(format!("cannot read user data file {shown}: {err}")))?;
    if data.len() > MAX_USER_DATA_BYTES {
        // A regular file's own size, not the part read to find it too large; a pipe or a
        // device has none (its metadata says 0), so only what was read is known of it.
        let size = match file.metadata() {
            Ok(meta) if meta.is_file() && meta.len() > MAX_USER_DATA_BYTES as u64 => {
                meta.len().to_string()
            }
            _ => format!("more than {MAX_USER_DATA_BYTES}"),
        };
        return Err(InputError(validate::user_data_too_large(
            &format!("user data file {shown}"),
            &size,
        )));
    }
    Ok(data)
}

/// The admin password in `path`: its text without one trailing newline. Reads one byte past
/// the limit (and a line break) so the store refuses a longer one without this reading all of
/// it.
fn read_admin_pass(path: &Path) -> Result<String, InputError> {
    let shown = path.display();
    let file = File::open(path)
        .map_err(|err| InputError(format!("cannot read admin password file {shown}: {err}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_PASSWORD_BYTES as u64 + 3)
        .read_to_end(&mut bytes)
        .map_err(|err| InputError(format!("cannot read admin password file {shown}: {err}")))?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(InputError(format!(
            "admin password file {shown} is empty: write the password into it"
        )));
    }
    // Before the text is judged: the cut may fall inside a character.
    if bytes.len() > MAX_PASSWORD_BYTES {
        return Err(InputError(format!(
            "admin password file {shown} holds more than {MAX_PASSWORD_BYTES} bytes: the limit \
             of a password"
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| InputError(format!("admin password file {shown} is not UTF-8 text")))
}

/// `--meta K=V` arguments as a map; refuses a missing '=', an empty key and a key given
/// twice.
fn parse_meta(args: &[String]) -> Result<BTreeMap<String, String>, InputError> {
    let mut meta = BTreeMap::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(InputError(format!("bad --meta {arg:?}: write KEY=VALUE")));
        };
        if key.is_empty() {
            return Err(InputError(format!(
                "bad --meta {arg:?}: the key is empty; write KEY=VALUE"
            )));
        }
        if meta.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(InputError(format!(
                "--meta {key} is given twice: give each key once"
            )));
        }
    }
    Ok(meta)
}

fn list(store: &dyn Store, output: Output) -> anyhow::Result<()> {
    let instances = store.instances()?;
    if output.json {
        return output::json(&instances);
    }
    let networks: HashMap<String, String> = store
        .networks()?
        .into_iter()
        .map(|n| (n.id, n.name))
        .collect();
    let mut addresses: HashMap<String, Vec<String>> = HashMap::new();
    for port in store.ports()? {
        let network = networks
            .get(&port.network_id)
            .cloned()
            .unwrap_or_else(|| port.network_id.clone());
        addresses
            .entry(port.instance_id.clone())
            .or_default()
            .extend(port.shown_ips().iter().map(|ip| format!("{network}={ip}")));
    }
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            vec![
                i.uuid.clone(),
                i.name.clone(),
                i.project.clone(),
                i.hostname.clone(),
                addresses
                    .get(&i.uuid)
                    .map_or_else(|| "-".to_owned(), |a| a.join(", ")),
            ]
        })
        .collect();
    output::table(&["UUID", "NAME", "PROJECT", "HOSTNAME", "ADDRESSES"], &rows)
}

/// One port of `instance show --json`.
#[derive(Serialize)]
struct PortView<'a> {
    id: &'a str,
    network_id: &'a str,
    network: &'a str,
    ip: String,
    ips: Vec<String>,
    mac: &'a str,
}

/// `instance show --json`: the record (secrets left out) plus its ports and what is set.
#[derive(Serialize)]
struct InstanceView<'a> {
    #[serde(flatten)]
    instance: &'a Instance,
    user_data_bytes: Option<usize>,
    admin_pass_set: bool,
    password_set: bool,
    ports: Vec<PortView<'a>>,
}

fn show(instance: &Instance, ports: &[(Port, Network)], output: Output) -> anyhow::Result<()> {
    let password_set = instance
        .password
        .as_deref()
        .is_some_and(|password| !password.is_empty());
    if output.json {
        return output::json(&InstanceView {
            instance,
            user_data_bytes: instance.user_data.as_ref().map(Vec::len),
            admin_pass_set: instance.admin_pass.is_some(),
            password_set,
            ports: ports
                .iter()
                .map(|(port, network)| PortView {
                    id: &port.id,
                    network_id: &port.network_id,
                    network: &network.name,
                    ip: port.shown_ip(),
                    ips: port.shown_ips(),
                    mac: &port.mac,
                })
                .collect(),
        });
    }
    let yes_no = |set: bool| if set { "set" } else { "not set" }.to_owned();
    let mut rows = vec![
        ("uuid", instance.uuid.clone()),
        ("name", instance.name.clone()),
        ("hostname", instance.hostname.clone()),
        ("project", instance.project.clone()),
        (
            "availability_zone",
            output::or_dash(instance.availability_zone.as_deref()),
        ),
        ("launch_index", instance.launch_index.to_string()),
        ("ec2_id", format!("i-{:08x}", instance.ec2_id)),
    ];
    for (port, network) in ports {
        rows.push((
            "port",
            format!(
                "{} on {} ({}): ip {} mac {}",
                port.id,
                network.name,
                network.cidrs(),
                port.shown_ips().join(" "),
                port.mac
            ),
        ));
    }
    for pair in &instance.key_pairs {
        rows.push(("key_pair", format!("{} ({})", pair.name, pair.kind)));
    }
    for (key, value) in &instance.meta {
        rows.push(("meta", format!("{key}={value}")));
    }
    rows.push((
        "user_data",
        instance
            .user_data
            .as_ref()
            .map_or_else(|| "-".to_owned(), |data| format!("{} bytes", data.len())),
    ));
    rows.push(("admin_pass", yes_no(instance.admin_pass.is_some())));
    rows.push(("password", yes_no(password_set)));
    rows.push(("created", instance.created.clone()));
    output::fields(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_needs_key_equals_value_once() {
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let meta = parse_meta(&args(&["a=1", "b=x=y", "c="])).unwrap();
        assert_eq!(meta["a"], "1");
        assert_eq!(meta["b"], "x=y");
        assert_eq!(meta["c"], "");
        assert!(
            parse_meta(&args(&["nokey"]))
                .unwrap_err()
                .0
                .contains("KEY=VALUE")
        );
        assert!(parse_meta(&args(&["=v"])).is_err());
        assert!(
            parse_meta(&args(&["a=1", "a=2"]))
                .unwrap_err()
                .0
                .contains("twice")
        );
    }

    /// A libvirt network's name goes into a line the user pastes into a shell: it stays one
    /// word, and nothing in it runs.
    #[test]
    fn a_name_in_the_virsh_line_stays_one_shell_word() {
        assert_eq!(shell_word("default"), "default");
        assert_eq!(shell_word("lab-net_1.a"), "lab-net_1.a");
        assert_eq!(shell_word("my lab"), "'my lab'");
        assert_eq!(shell_word("$(reboot)"), "'$(reboot)'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("printf '%s|' {}", shell_word("a b'c $(x) `y`")),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b'c $(x) `y`|");
    }
}
