//! The system's settings: time zone, keyboard, locale, time servers, system logging, GRUB's
//! disk in debconf, and the route to the metadata service once it is read.

use super::instance::Instance;
use super::packages::{UPDATE_SOURCES, mark_updated};
use crate::apply::{
    disable_ec2_metadata, grub_dpkg, keyboard, locale, ntp, packages, rsyslog, timezone, tool,
};
use crate::log::chain;
use crate::state::result::Done;
use crate::state::semaphore::Frequency::PerInstance;
use crate::userdata::cloud_config::{is_false, is_true};

/// `locale` (and `locale_configfile`): the system locale, built first when it must be.
pub(super) fn set_locale(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let name = match &i.config.locale {
        None => return Done::skipped("no locale (the image's stays)"),
        Some(serde_json::Value::String(name)) => name.clone(),
        Some(other) => other.to_string(),
    };
    // Read as text, as cloud-init reads `locale` (`get_cfg_option_str`) before `is_false`.
    if is_false(&serde_json::Value::String(name.trim().to_owned())) {
        return Done::skipped(format!("locale: {name}"));
    }
    let file = i
        .config
        .locale_configfile
        .as_deref()
        .unwrap_or(locale::LOCALE_FILE);
    match locale::set(i.root, &name, Some(file)) {
        Ok(locale::Applied::Already) => {
            Done::skipped(format!("{}={name} already in {file}", locale::KEY))
        }
        Ok(locale::Applied::Set { generated }) => {
            let how = match generated {
                locale::Generated::BuiltIn => "built into the C library".to_owned(),
                locale::Generated::Built => {
                    format!("built by locale-gen from {}", locale::LOCALE_GEN)
                }
                locale::Generated::EnabledOnly => format!(
                    "enabled in {}; root is not /: locale-gen not run",
                    locale::LOCALE_GEN
                ),
            };
            Done::ok_with(format!("{}={name} in {file} ({how})", locale::KEY))
        }
        Err(err) => Done::error(chain(&err)),
    }
}

/// `ntp`: the time client's configuration; on the running system the client installed when the
/// image lacks it and (re)started.
pub(super) fn configure_ntp(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let request = match ntp::request(&i.config) {
        Ok(Some(request)) => request,
        Ok(None) => return Done::skipped("no ntp, or enabled: false"),
        Err(err) => return Done::error(err),
    };
    let (client, installed) = match ntp::choose(i.root, &request) {
        Ok(chosen) => chosen,
        Err(err) => return Done::error(err),
    };
    let (servers, pools) = ntp::servers_and_pools(&request, ntp::distro(i.root).as_deref());
    let names: Vec<&str> = servers.iter().chain(&pools).map(String::as_str).collect();
    let mut said = vec![format!(
        "{} in {}: {}",
        client.name,
        client.confpath,
        names.join(" ")
    )];
    match ntp::write(i.root, &client, &ntp::render(&client, &servers, &pools)) {
        Ok(Some(kept)) => said.push(format!("the image's file kept as {kept}")),
        Ok(None) => {}
        Err(err) => return Done::error(chain(&err)),
    }
    if !i.root.is_host() {
        said.push("root is not /: nothing installed or restarted".to_owned());
        return Done::ok_with(said.join("; "));
    }
    i.root.publish();
    let mut errors = Vec::new();
    if !installed {
        if client.packages.is_empty() {
            errors.push(format!(
                "{} is not installed ({} missing) and names no package",
                client.name, client.check_exe
            ));
        } else {
            let refreshed = i.state.semaphores(&i.id).has(UPDATE_SOURCES, PerInstance);
            let asked = packages::Request {
                install: client.packages.clone(),
                ..packages::Request::default()
            };
            let applied = packages::apply(&asked, refreshed);
            if applied.done.contains(&"update") {
                mark_updated(i);
            }
            errors.extend(applied.errors.iter().map(|e| chain(e)));
            if applied.done.contains(&"install") {
                said.push(format!("installed {}", client.packages.join(" ")));
            }
        }
    }
    if tool::systemd_runs(i.root) {
        match tool::run("systemctl", &["reload-or-restart", &client.service_name]) {
            Ok(Some(())) => said.push(format!("{} restarted", client.service_name)),
            Ok(None) => errors.push("systemctl is not installed".to_owned()),
            Err(err) => errors.push(chain(&err)),
        }
    } else {
        said.push(format!("no systemd: {} not restarted", client.service_name));
    }
    Done::with_errors(errors, said)
}

/// `disable_ec2_metadata`: the running system's route to the metadata service prohibited.
pub(super) fn disable_ec2_metadata(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    if !i.config.disable_ec2_metadata.as_ref().is_some_and(is_true) {
        return Done::skipped("disable_ec2_metadata is not true");
    }
    if !i.root.is_host() {
        return Done::skipped("root is not /: the route is the running system's");
    }
    match disable_ec2_metadata::block() {
        Ok(command) => Done::ok_with(command),
        Err(err) => Done::error(chain(&err)),
    }
}

/// `rsyslog`: its configuration files; on the running system rsyslog reloaded (a failed reload
/// is a warning, as cloud-init logs it).
pub(super) fn configure_rsyslog(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    let request = match rsyslog::request(&i.config, warnings) {
        Ok(Some(request)) => request,
        Ok(None) => return Done::skipped("no rsyslog configs or remotes"),
        Err(err) => return Done::error(err),
    };
    let files = match rsyslog::write(i.root, &request) {
        Ok(files) => files,
        Err(err) => return Done::error(chain(&err)),
    };
    let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let mut said = vec![format!("wrote {}", shown.join(", "))];
    let command = rsyslog::reload_command(&request.reload);
    if !i.root.is_host() {
        said.push("root is not /: rsyslog not reloaded".to_owned());
    } else if request.reload == rsyslog::Reload::Auto && !tool::systemd_runs(i.root) {
        said.push("no systemd: rsyslog not reloaded".to_owned());
    } else {
        i.root.publish();
        let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
        match tool::run(&command[0], &args) {
            Ok(Some(())) => said.push(format!("ran {}", command.join(" "))),
            Ok(None) => warnings.push(format!(
                "rsyslog: not reloaded: {} is not installed",
                command[0]
            )),
            Err(err) => warnings.push(format!("rsyslog: not reloaded: {}", chain(&err))),
        }
    }
    Done::ok_with(said.join("; "))
}

/// `keyboard`: the layout in `/etc/default/keyboard`; on the running system console-setup
/// restarted when it runs.
pub(super) fn keyboard(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let keymap = match keyboard::request(i.config.keyboard.as_ref()) {
        Ok(Some(keymap)) => keymap,
        Ok(None) => return Done::skipped("no keyboard"),
        Err(err) => return Done::error(err),
    };
    if let Err(err) = keyboard::write(i.root, &keymap) {
        return Done::error(chain(&err));
    }
    let mut said = format!(
        "{} (model {}, variant {:?}, options {:?}) in {}",
        keymap.layout,
        keymap.model,
        keymap.variant,
        keymap.options,
        keyboard::KEYBOARD_FILE
    );
    if i.root.is_host() && tool::systemd_runs(i.root) && keyboard::has_console_setup(i.root) {
        i.root.publish();
        let args = ["--no-block", "try-restart", keyboard::CONSOLE_SETUP];
        match tool::run("systemctl", &args) {
            Ok(Some(())) => said.push_str(&format!("; {} restarted", keyboard::CONSOLE_SETUP)),
            Ok(None) => {}
            Err(err) => return Done::error(format!("{}; {said}", chain(&err))),
        }
    }
    Done::ok_with(said)
}

/// `grub_dpkg` (on unless disabled; host root, Debian family): the disk GRUB boots from in
/// debconf's answers for grub-pc, so an upgrade installs GRUB there without asking.
pub(super) fn grub_dpkg(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let config = grub_dpkg::config(i.config.grub_dpkg.as_ref(), i.config.grub_dpkg_old.as_ref());
    if !grub_dpkg::enabled(config) {
        return Done::skipped("grub_dpkg.enabled is false");
    }
    if !i.root.is_host() {
        return Done::skipped("root is not /: debconf's answers are the running system's");
    }
    if tool::find(grub_dpkg::SET_SELECTIONS).is_none() {
        return Done::skipped(format!(
            "no {} here (not a Debian system)",
            grub_dpkg::SET_SELECTIONS
        ));
    }
    let selections = match grub_dpkg::selections(config, grub_dpkg::boot_disk) {
        Ok(selections) => selections,
        Err(err) => return Done::error(err),
    };
    let held = i
        .root
        .read_optional_string(grub_dpkg::DEBCONF_CONFIG)
        .ok()
        .flatten()
        .and_then(|config| grub_dpkg::current(&config));
    if held.as_ref() == Some(&selections) {
        return Done::skipped(format!(
            "debconf already has {} {:?}, {} {}",
            grub_dpkg::INSTALL_DEVICES,
            selections.devices,
            grub_dpkg::INSTALL_DEVICES_EMPTY,
            selections.empty
        ));
    }
    match tool::run_with_input(grub_dpkg::SET_SELECTIONS, &[], selections.text().as_bytes()) {
        Ok(_) => Done::ok_with(format!(
            "{} {:?}, {} {}",
            grub_dpkg::INSTALL_DEVICES,
            selections.devices,
            grub_dpkg::INSTALL_DEVICES_EMPTY,
            selections.empty
        )),
        Err(err) => Done::error(chain(&err)),
    }
}

/// `timezone`: `/etc/localtime` and `/etc/timezone` for the zone.
pub(super) fn timezone(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let Some(zone) = &i.config.timezone else {
        return Done::skipped("no timezone");
    };
    match timezone::set(i.root, zone) {
        Ok(timezone::Localtime::Linked) => Done::ok_with(format!(
            "{zone}: {} -> {}/{zone}",
            timezone::LOCALTIME,
            timezone::ZONEINFO
        )),
        Ok(timezone::Localtime::Copied) => Done::ok_with(format!(
            "{zone}: {} is a copy of {}/{zone}",
            timezone::LOCALTIME,
            timezone::ZONEINFO
        )),
        Err(err) => Done::error(chain(&err)),
    }
}
