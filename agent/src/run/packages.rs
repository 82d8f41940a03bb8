//! apt's sources and the packages: the steps that refresh the package lists, once per instance
//! between them (`ntp`, which may install its client, shares that record).

use super::instance::Instance;
use crate::apply::{apt, packages};
use crate::log::chain;
use crate::state::result::Done;
use crate::state::semaphore::Frequency::PerInstance;

/// The record that the package lists were refreshed for an instance (cloud-init's
/// `update-sources` semaphore): `apt-configure` and `packages` refresh them once between them.
pub(super) const UPDATE_SOURCES: &str = "update-sources";

/// Records that the package lists were refreshed for this instance.
pub(super) fn mark_updated(i: &Instance<'_>) {
    // Not recorded: the next step refreshes the lists again, which costs time only.
    let _ = i.state.semaphores(&i.id).mark(UPDATE_SOURCES, PerInstance);
}

/// `apt` and `apt_pipelining`: apt's sources, keys and configuration; the package lists
/// refreshed on the running system when `sources` added any.
pub(super) fn configure_apt(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    let request = match apt::request(&i.config, warnings) {
        Ok(request) => request,
        Err(err) => return Done::error(err),
    };
    if request.is_empty() && !apt::stale_files(i.root) {
        return Done::skipped("no apt or apt_pipelining");
    }
    let applied = apt::apply(i.root, &request);
    let mut said = Vec::new();
    if !applied.written.is_empty() {
        said.push(format!("wrote {}", applied.written.join(", ")));
    }
    if !applied.removed.is_empty() {
        said.push(format!(
            "removed {} (not asked for by this instance)",
            applied.removed.join(", ")
        ));
    }
    if !applied.superseded.is_empty() {
        said.push(format!(
            "removed {} (its sources are in the deb822 file written in its place)",
            applied.superseded.join(", ")
        ));
    }
    warnings.extend(applied.warnings.iter().cloned());
    if !applied.added.is_empty() {
        said.push(format!("add-apt-repository {}", applied.added.join(", ")));
    }
    let mut errors: Vec<String> = applied.errors.iter().map(|e| chain(e)).collect();
    if applied.refresh {
        if i.root.is_host() {
            i.root.publish();
            match packages::update() {
                Ok(()) => {
                    mark_updated(i);
                    said.push("ran apt-get update".into());
                }
                Err(err) => errors.push(chain(&err)),
            }
        } else {
            said.push("root is not /: apt-get update not run".into());
        }
    }
    if said.is_empty() {
        said.push("nothing to write".into());
    }
    Done::with_errors(errors, said)
}

/// `packages`, `package_update`, `package_upgrade`: apt-get run on the running system, after
/// the run's writes are in place (a `write_files` entry may be an apt source).
pub(super) fn install_packages(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let request = match packages::request(&i.config) {
        Ok(request) => request,
        Err(err) => return Done::error(err.to_string()),
    };
    if request.is_empty() {
        return Done::skipped("no packages, package_update or package_upgrade");
    }
    let asked = if request.install.is_empty() {
        String::new()
    } else {
        format!(" {}", request.install.join(" "))
    };
    if !i.root.is_host() {
        return Done::skipped(format!(
            "root is not /: apt-get installs on the running system only (asked:{asked})"
        ));
    }
    i.root.publish();
    let semaphores = i.state.semaphores(&i.id);
    let refreshed = semaphores.has(UPDATE_SOURCES, PerInstance);
    let applied = packages::apply(&request, refreshed);
    if applied.done.contains(&"update") {
        mark_updated(i);
    }
    let done = if applied.done.is_empty() {
        "nothing done".to_owned()
    } else {
        format!("apt-get {}{asked}", applied.done.join(", "))
    };
    if applied.errors.is_empty() {
        Done::ok_with(done)
    } else {
        let errors: Vec<String> = applied.errors.iter().map(|e| chain(e)).collect();
        Done::error(format!("{}; {done}", errors.join("; ")))
    }
}
