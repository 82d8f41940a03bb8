//! `power_state` in user data as cloud-init's users write it: checked and, on the host root,
//! done after the run (the QEMU scenario `router/power-state` reboots a guest with it). Under
//! another root the step says what it would run and runs nothing; a malformed request is an
//! error of its own step that names the entry.

mod support;

use support::Guest;

#[test]
fn under_a_root_that_is_not_slash_the_command_is_only_named() {
    let guest = Guest::new();
    guest.user_data(
        "#cloud-config\npower_state:\n  mode: reboot\n  delay: \"+5\"\n  message: Rebooting now\n  \
         timeout: 30\n  condition: true\n",
    );
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        guest.step("power-state"),
        (
            "skipped".into(),
            "root is not /: `shutdown -r +5 'Rebooting now'` not run".into()
        )
    );
    // The last step: the report is complete before anything goes down.
    let status = guest.status();
    let steps = status["steps"].as_array().unwrap();
    assert_eq!(steps.last().unwrap()["name"], "power-state");
    assert_eq!(status["status"], "done");
}

#[test]
fn a_malformed_request_is_its_steps_error() {
    for (request, message) in [
        (
            "power_state: {delay: now}",
            "power_state.mode is required, one of halt, poweroff, reboot (found: nothing)",
        ),
        (
            "power_state: {mode: reboot, delay: soon}",
            "power_state.delay must be 'now' or '+m' (minutes) (found: 'soon')",
        ),
        (
            "power_state: reboot",
            "invalid `power_state`: invalid type: string, expected a map",
        ),
    ] {
        let guest = Guest::new();
        guest.user_data(format!("#cloud-config\nhostname: kept\n{request}\n"));
        let (code, log) = guest.run();
        assert_eq!(code, 1, "{log}");
        let errors: Vec<String> = serde_json::from_value(guest.status()["errors"].clone()).unwrap();
        let errors = errors.join("\n");
        assert!(errors.contains(message), "{request}: {errors}");
        // The rest of the config still applied.
        assert_eq!(guest.read("/etc/hostname"), "kept\n", "{request}");
    }
}
