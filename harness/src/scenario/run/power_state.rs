//! The `power-state` flow: the user data's cloud-config ends with `power_state` (reboot, with a
//! shell condition that holds once runcmd ran) and a `final_message`. The guest reboots itself
//! once provisioned (QEMU runs with `-no-reboot`, so it exits), its console showing the final
//! message with cloud-init's variables rendered; booted again from the same disk it is the same
//! instance, provisioned, and does not reboot again (`power_state` runs once per instance).

use std::time::Instant;

use super::{Identity, Runner, ScenarioReport};
use crate::check::CheckResult;
use crate::check::ssh::SshTarget;
use crate::guest::qemu::{BOOT_TIMEOUT, RunningGuest};
use crate::guest::{Guest, serial};
use crate::scenario::matrix::Scenario;
use crate::scenario::run::BootTimes;
use crate::scenario::userdata::{FINAL_MESSAGE_PREFIX, REBOOT_COMMAND};

/// What the guest agent logs when the run is over and it runs the user data's `power_state`.
const RUNNING: &str = "the run is over: running ";

impl Runner<'_> {
    /// Runs the flow: `first` reboots itself, `second` (the same disk) stays up.
    pub(super) fn power_state(
        &self,
        scenario: &Scenario,
        first: &Guest,
        second: &Guest,
        target: &SshTarget,
        who: &Identity,
        report: &mut ScenarioReport,
    ) -> anyhow::Result<()> {
        self.stage(scenario, &format!("boot 1: starting QEMU ({})", self.via));
        report.serial_logs.push(first.serial_log.clone());
        report.boots.push(BootTimes::default());
        let mut vm = RunningGuest::start_via(first, self.via)?;
        let deadline = vm.started + BOOT_TIMEOUT;
        let init = vm.wait_for(serial::MARK_INIT, 0, deadline)?;
        if let Some(times) = report.boots.last_mut() {
            times.init = Some(init.at.as_secs_f64());
        }
        self.stage(scenario, "boot 1: waiting for the guest to reboot itself");
        let rebooted = vm.wait_exit(deadline.saturating_duration_since(Instant::now()));
        let console = std::fs::read_to_string(&first.serial_log).unwrap_or_default();
        report.checks.push(CheckResult::from_bool(
            "rebooted itself once provisioned (power_state)",
            rebooted.is_ok() && reboot_after_done(&console),
            format!(
                "expected QEMU to exit after `metaboot finished: status=done` then `{RUNNING}{REBOOT_COMMAND}`: {}",
                match &rebooted {
                    Ok(()) => "QEMU exited".to_owned(),
                    Err(err) => format!("{err:#}"),
                }
            ),
        ));
        if rebooted.is_err() {
            return vm.kill();
        }
        report
            .checks
            .push(final_message(&console, Some("metadata-service")));

        let vm = self.boot(scenario, second, target, who, report)?;
        self.stage(scenario, "checking after the reboot");
        self.check_boot(scenario, "after reboot: ", target, who, 1, report);
        let console = std::fs::read_to_string(&second.serial_log).unwrap_or_default();
        report.checks.push(CheckResult::from_bool(
            "after reboot: not rebooted again (once per instance)",
            !console.contains(RUNNING) && console.contains(FINAL_MESSAGE_PREFIX),
            format!(
                "{}: expected the final message again and no `{RUNNING}`",
                second.serial_log.display()
            ),
        ));
        vm.kill()
    }
}

/// Whether the console shows the run finished `done`, then the reboot asked for.
fn reboot_after_done(console: &str) -> bool {
    let Some(done) = console.find("metaboot finished: status=done") else {
        return false;
    };
    console[done..].contains(&format!("{RUNNING}{REBOOT_COMMAND}"))
}

/// What the kernel prints on the console as it restarts the machine (`kernel_restart`, at
/// the emergency level: shown whatever the `loglevel`).
pub(crate) const KERNEL_RESTART: &str = "reboot: Restarting system";

/// Whether the console shows, after the final message, the kernel restarting the machine: a
/// guest that ended otherwise (a panic, QEMU killed) did not reboot itself.
pub(crate) fn restarted_after_final_message(console: &str) -> bool {
    console
        .find(FINAL_MESSAGE_PREFIX)
        .is_some_and(|at| console[at..].contains(KERNEL_RESTART))
}

/// The final message of [`POWER_STATE_REBOOT`](crate::scenario::userdata::POWER_STATE_REBOOT),
/// its variables rendered: the uptime a number, the datasource `datasource` (any name when
/// `None`: cloud-init names its own, `DataSourceOpenStack [net,ver=2]`).
pub(crate) fn final_message(console: &str, datasource: Option<&str>) -> CheckResult {
    // Console lines start with the host's time (`[   5.896] `).
    let line = console.lines().map(serial::strip_ansi).find_map(|line| {
        line.find(FINAL_MESSAGE_PREFIX)
            .map(|at| line[at..].to_owned())
    });
    let rendered = line.as_deref().is_some_and(|line| {
        let rest = &line[FINAL_MESSAGE_PREFIX.len()..];
        let uptime = rest.split_whitespace().next().unwrap_or("");
        let named = rest
            .split_once(" s, datasource ")
            .map(|(_, name)| name.trim());
        uptime.parse::<f64>().is_ok()
            && named.is_some_and(|name| {
                !name.is_empty() && !name.contains('$') && datasource.is_none_or(|d| name == d)
            })
    });
    CheckResult::from_bool(
        "final message on the console",
        rendered,
        format!(
            "expected `{FINAL_MESSAGE_PREFIX}<uptime> s, datasource {}`, got {:?}",
            datasource.unwrap_or("<name>"),
            line.unwrap_or_default()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_checks_read_what_the_agent_prints() {
        let console = format!(
            "metaboot-tiny: init reached\n\
             [   5.896] {FINAL_MESSAGE_PREFIX}3.52 s, datasource metadata-service\n\
             2026-12-03T17:30:00.000000Z  INFO metaboot finished: status=done instance=x errors=0\n\
             2026-12-03T17:30:00.000100Z  INFO {RUNNING}{REBOOT_COMMAND}\n"
        );
        assert!(reboot_after_done(&console));
        assert!(final_message(&console, Some("metadata-service")).passed);
        assert!(final_message(&console, None).passed);
        assert!(!final_message(&console, Some("nocloud")).passed);
        assert!(!reboot_after_done("metaboot finished: status=error\n"));
        let unrendered = format!("{FINAL_MESSAGE_PREFIX}$UPTIME s, datasource $datasource\n");
        assert!(!final_message(&unrendered, None).passed);
        let cloud_init = format!(
            "[  61.2] {FINAL_MESSAGE_PREFIX}58.03 s, datasource DataSourceOpenStack [net,ver=2]\n"
        );
        assert!(final_message(&cloud_init, None).passed);
    }

    #[test]
    fn a_reboot_is_the_kernel_restarting_after_the_final_message() {
        let final_line = format!("[  61.2] {FINAL_MESSAGE_PREFIX}58.03 s, datasource x\n");
        let rebooted = format!("{final_line}[ 150.673] [  146.822247] {KERNEL_RESTART}\n");
        assert!(restarted_after_final_message(&rebooted));
        let panicked =
            format!("{final_line}[  62.0] Kernel panic - not syncing: Fatal exception\n");
        assert!(!restarted_after_final_message(&panicked));
        let before = format!("[   1.0] {KERNEL_RESTART}\n{final_line}");
        assert!(!restarted_after_final_message(&before));
    }
}
