//! `metaboot run --stage init` then `--stage final` (metaboot.service, then
//! metaboot-final.service after sshd starts): everything but the user scripts first, the run
//! left `running`; then the scripts, and the run is done. Like cloud-init's stages.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const USER_DATA: &str = r#"#cloud-config
hostname: staged
bootcmd:
  - echo boot >> tmp/bootcmd.count
runcmd:
  - echo "runcmd $INSTANCE_ID" >> tmp/runcmd.out
write_files:
  - path: /etc/app/late.conf
    content: deferred
    defer: true
"#;

fn has_step(guest: &Guest, name: &str) -> bool {
    guest.status()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == name)
}

/// `metaboot status --wait` on the guest's root, started, its output piped.
fn status_wait(guest: &Guest) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_metaboot"))
        .args(["status", "--wait", "--root"])
        .arg(&guest.root)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_init_stage_applies_everything_and_the_final_stage_runs_the_scripts() {
    let guest = Guest::new();
    guest.user_data(USER_DATA);
    let (code, stderr) = guest.run_stage("init");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("metaboot init stage finished"), "{stderr}");
    let status = guest.status();
    assert_eq!(status["status"], "running", "{status:#}");
    assert_eq!(status["next_stage"], "final");
    assert!(status["finished_at"].is_null());
    // Everything a login needs is in place; bootcmd ran; runcmd is written, not run.
    assert_eq!(guest.read("/etc/hostname"), "staged\n");
    assert!(guest.read("/root/.ssh/authorized_keys").contains(META_KEY));
    assert_eq!(guest.read("/tmp/bootcmd.count"), "boot\n");
    // Deferred write_files are the final stage's, after the packages.
    assert!(!guest.path("/etc/app/late.conf").exists());
    let instance = format!("/var/lib/metaboot/instances/{UUID}");
    assert!(guest.path(&format!("{instance}/scripts/runcmd")).is_file());
    assert!(!guest.path("/tmp/runcmd.out").exists());
    assert!(!guest.path(&format!("{instance}/boot-finished")).exists());
    for name in ["scripts-vendor", "scripts-per-boot", "scripts-user"] {
        assert!(!has_step(&guest, name), "{name} ran in the init stage");
    }
    // `metaboot status` says the run is not over, and what it waits for.
    let out = guest.metaboot(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.starts_with("status: running\nwaiting for: stage final"),
        "{text}"
    );
    let init_ms = status["duration_ms"].as_u64().unwrap();

    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("metaboot final stage starting"), "{stderr}");
    assert!(
        stderr.contains("metaboot finished: status=done"),
        "{stderr}"
    );
    assert_eq!(guest.read("/tmp/runcmd.out"), format!("runcmd {UUID}\n"));
    assert_eq!(guest.read("/etc/app/late.conf"), "deferred");
    let status = guest.status();
    assert_eq!(status["status"], "done", "{status:#}");
    assert!(status.get("next_stage").is_none(), "{status:#}");
    assert!(status["finished_at"].is_u64());
    assert!(status["duration_ms"].as_u64().unwrap() >= init_ms);
    assert_eq!(guest.step("scripts-user").0, "ok");
    assert_eq!(
        guest.step("scripts-per-boot"),
        ("skipped".into(), "no per-boot scripts".into())
    );
    assert!(guest.path(&format!("{instance}/boot-finished")).is_file());
    // Each step once, in the order of a whole run.
    let names = guest.step_names();
    let whole = Guest::new();
    whole.user_data(USER_DATA);
    assert_eq!(whole.run().0, 0);
    let whole_names = whole.step_names();
    assert_eq!(names, whole_names);
    assert_eq!(guest.metaboot(&["status"]).status.code(), Some(0));

    // A second final stage finds nothing to do and runs nothing.
    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("nothing to do"), "{stderr}");
    assert_eq!(guest.read("/tmp/runcmd.out"), format!("runcmd {UUID}\n"));

    // The next boot, same instance: bootcmd again, runcmd not (once per instance).
    assert_eq!(guest.run_stage("init").0, 0);
    assert_eq!(guest.run_stage("final").0, 0);
    assert_eq!(guest.read("/tmp/bootcmd.count"), "boot\nboot\n");
    assert_eq!(guest.read("/tmp/runcmd.out"), format!("runcmd {UUID}\n"));
    assert_eq!(
        guest.step("scripts-user"),
        ("skipped".into(), "already ran for this instance".into())
    );
    assert_eq!(guest.status()["status"], "done");
}

#[test]
fn status_wait_returns_when_the_final_stage_has_finished() {
    let guest = Guest::new();
    guest.user_data(USER_DATA);
    assert_eq!(guest.run_stage("init").0, 0);
    let mut wait = status_wait(&guest);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        wait.try_wait().unwrap().is_none(),
        "status --wait returned while the final stage was still to run"
    );
    assert_eq!(guest.run_stage("final").0, 0);
    let out = wait.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("status: done\n"));
}

#[test]
fn a_final_stage_without_an_init_stage_refuses_and_writes_nothing() {
    let guest = Guest::new();
    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no run to finish") && stderr.contains("metaboot run --stage init"),
        "{stderr}"
    );
    assert!(!guest.path("/var/lib/metaboot/status.json").exists());
}

#[test]
fn an_init_stage_stopped_midway_is_finished_as_an_error() {
    let guest = Guest::new();
    guest.user_data(USER_DATA);
    assert_eq!(guest.run_stage("init").0, 0);
    // What a killed init stage leaves: `running`, no next stage (written before it commits).
    let path = guest.path("/var/lib/metaboot/status.json");
    let mut status = guest.status();
    status.as_object_mut().unwrap().remove("next_stage");
    std::fs::write(&path, status.to_string()).unwrap();
    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, 1, "{stderr}");
    let status = guest.status();
    assert_eq!(status["status"], "error", "{status:#}");
    assert!(
        status["errors"][0]
            .as_str()
            .unwrap()
            .contains("the run did not finish (it was stopped)"),
        "{status:#}"
    );
    assert!(!guest.path("/tmp/runcmd.out").exists(), "no script ran");
}

/// A final stage killed while a script runs (kill -9, the OOM killer, `systemctl stop`)
/// leaves `running` in status.json: `metaboot status` reports the run stopped (an error) once
/// no process holds the run's lock, and `--wait` returns, where it would wait for ever.
#[test]
fn a_killed_final_stage_is_reported_stopped_and_status_wait_returns() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nruncmd:\n  - echo $$ > tmp/script.pid; exec sleep 30\n");
    assert_eq!(guest.run_stage("init").0, 0);
    let mut last = Command::new(env!("CARGO_BIN_EXE_metaboot"))
        .args(["run", "--stage", "final", "--root"])
        .arg(&guest.root)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = guest.path("/tmp/script.pid");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !pid_file.exists() || guest.read("/tmp/script.pid").trim().is_empty() {
        assert!(std::time::Instant::now() < deadline, "runcmd never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let script: i32 = guest.read("/tmp/script.pid").trim().parse().unwrap();
    // While the final stage runs, the run is running.
    let out = guest.metaboot(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    last.kill().unwrap();
    last.wait().unwrap();
    // The script lives on (as under `KillMode=process`); the run is over all the same.
    let mut wait = status_wait(&guest);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wait.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let returned = wait.try_wait().unwrap().is_some();
    if !returned {
        wait.kill().unwrap();
    }
    let out = wait.wait_with_output().unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(script),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        returned,
        "status --wait still waits for a run that was killed"
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.starts_with("status: error\n"), "{text}");
    assert!(
        text.contains("the run was stopped before it finished"),
        "{text}"
    );
}

/// `write_files` with `defer: true` is written as cloud-init's `write_files_deferred` writes
/// it: in the final stage, after `packages` and before the user scripts, so an entry may be
/// owned by a user a package creates (`packages: [postgresql]`, owner `postgres`). The
/// package's user appears here between the two stages, as `packages` would add it at the
/// start of the final stage (under `--root` the step installs nothing).
#[test]
fn deferred_write_files_may_be_owned_by_a_user_the_packages_create() {
    let guest = Guest::new();
    guest.user_data(
        "#cloud-config\npackages: [postgresql]\nruncmd: [cat etc/postgresql/tune.conf > tmp/seen]\n\
         write_files:\n- {path: /etc/postgresql/tune.conf, content: tuned, owner: 'postgres:postgres', defer: true}\n",
    );
    let (code, stderr) = guest.run_stage("init");
    assert_eq!(code, 0, "{stderr}");
    assert!(!guest.path("/etc/postgresql/tune.conf").exists());
    assert!(!has_step(&guest, "write-files-deferred"));
    guest.append(
        "/etc/passwd",
        "postgres:x:114:121:PostgreSQL administrator:/var/lib/postgresql:/bin/sh",
    );
    guest.append("/etc/group", "postgres:x:121:");
    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, 0, "{stderr}");
    let (outcome, message) = guest.step("write-files-deferred");
    assert_eq!(outcome, "ok", "{message}");
    assert_eq!(guest.read("/etc/postgresql/tune.conf"), "tuned");
    assert_eq!(
        guest.mode_owner("/etc/postgresql/tune.conf"),
        (0o644, 114, 121)
    );
    // The user scripts see the file in place.
    assert_eq!(guest.read("/tmp/seen"), "tuned", "{stderr}");
    let names = guest.step_names();
    let at = |name: &str| names.iter().position(|n| n == name).unwrap();
    assert!(at("packages") < at("write-files-deferred"), "{names:?}");
    assert!(at("write-files-deferred") < at("scripts-user"), "{names:?}");
}

#[test]
fn without_metadata_the_final_stage_runs_only_the_per_boot_scripts() {
    let guest = Guest::new();
    // No datasource this machine has: meta-data fails at once.
    guest.config("datasources: [config-drive]\n");
    let per_boot = guest.path("/var/lib/metaboot/scripts/per-boot");
    std::fs::create_dir_all(&per_boot).unwrap();
    let script = per_boot.join("10-mark");
    std::fs::write(&script, "#!/bin/sh\necho ran >> tmp/per-boot.out\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, stderr) = guest.run_stage("init");
    assert_eq!(code, 1, "meta-data failed: {stderr}");
    assert_eq!(guest.status()["status"], "running");
    assert!(!guest.path("/tmp/per-boot.out").exists());
    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(guest.read("/tmp/per-boot.out"), "ran\n");
    assert_eq!(guest.step("scripts-per-boot").0, "ok");
    for name in ["scripts-vendor", "scripts-per-instance", "scripts-user"] {
        assert_eq!(
            guest.step(name),
            (
                "skipped".into(),
                "no instance metadata (meta-data failed)".into()
            ),
            "{name}"
        );
    }
    assert_eq!(guest.status()["status"], "error");
}

/// A user-script step with nothing to run is not marked as run: a later boot of the same
/// instance that brings scripts (user data served late, a `runcmd` added) runs them.
#[test]
fn a_user_script_step_with_nothing_to_run_is_not_marked() {
    let guest = Guest::new();
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.step("scripts-user").0, "skipped", "{stderr}");
    let sem = format!("/var/lib/metaboot/instances/{UUID}/sem");
    for name in ["config_scripts_user", "config_scripts_vendor"] {
        assert!(!guest.path(&format!("{sem}/{name}")).exists(), "{name}");
    }
    guest.user_data(USER_DATA);
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.read("/tmp/runcmd.out"), format!("runcmd {UUID}\n"));
    assert!(guest.path(&format!("{sem}/config_scripts_user")).exists());
}

/// A final stage whose boot's init stage did not run finds the init stage of an earlier boot
/// in status.json: it refuses to take that run up, saying why, and runs nothing; status.json
/// then says that refusal, this boot's error, no longer the earlier boot's `running`.
#[test]
fn the_final_stage_refuses_an_init_stage_of_another_boot() {
    let guest = Guest::new();
    guest.user_data(USER_DATA);
    assert_eq!(guest.run_stage("init").0, 0);
    let path = guest.path("/var/lib/metaboot/status.json");
    let mut status = guest.status();
    assert!(status["boot_id"].is_string(), "{status:#}");
    status["boot_id"] = "00000000-0000-4000-8000-000000000000".into();
    std::fs::write(&path, status.to_string()).unwrap();
    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, 1, "{stderr}");
    let refusal = "an init stage's of an earlier boot";
    assert!(stderr.contains(refusal), "{stderr}");
    assert!(!guest.path("/tmp/runcmd.out").exists(), "{stderr}");
    let now = guest.status();
    assert_eq!(now["status"], "error", "{now:#}");
    assert!(
        now["errors"][0].as_str().unwrap().contains(refusal),
        "{now:#}"
    );
    assert_ne!(now["boot_id"], status["boot_id"], "{now:#}");
    assert!(now["next_stage"].is_null(), "{now:#}");
    let out = guest.metaboot(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.starts_with("status: error\n"), "{shown}");
}

/// User data that could not be fetched in the init stage (503 to every attempt): the final
/// stage runs no per-instance script and marks none, and the next boot runs them.
#[test]
fn after_an_incomplete_fetch_the_final_stage_runs_only_the_per_boot_scripts() {
    let guest = Guest::new();
    guest.user_data(USER_DATA);
    let attempts = metaboot::source::http::DOCUMENT_ATTEMPTS as usize;
    guest
        .server
        .fail("/openstack/latest/user_data", Fault::Status(503), attempts);
    let (code, stderr) = guest.run_stage("init");
    assert_eq!(code, 1, "{stderr}");
    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, 1, "{stderr}");
    let (outcome, message) = guest.step("scripts-user");
    assert_eq!(outcome, "skipped", "{stderr}");
    assert!(message.contains("incomplete"), "{message}");
    assert!(!guest.path("/tmp/runcmd.out").exists());
    guest.run_stage("init");
    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.read("/tmp/runcmd.out"), format!("runcmd {UUID}\n"));
}

/// `runcmd: [reboot]`: the machine goes down while the final stage runs, and systemd's
/// SIGTERM ends it before it commits. The next boot of the same instance does not run the
/// scripts again (cloud-init writes a module's semaphore before it runs): else the instance
/// would reboot at every boot.
#[test]
fn a_script_that_reboots_the_machine_runs_once() {
    let guest = Guest::new();
    guest.user_data(
        "#cloud-config\nruncmd:\n  - echo ran >> tmp/reboots.count\n  - kill -TERM $PPID\n  \
         - sleep 5\n",
    );
    assert_eq!(guest.run_stage("init").0, 0);
    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, -1, "the final stage was not killed: {stderr}");
    assert_eq!(guest.read("/tmp/reboots.count"), "ran\n");
    // The boot after the reboot, same instance.
    assert_eq!(guest.run_stage("init").0, 0);
    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.read("/tmp/reboots.count"), "ran\n");
    assert_eq!(
        guest.step("scripts-user"),
        ("skipped".into(), "already ran for this instance".into())
    );
}
