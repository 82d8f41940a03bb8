//! The registry commands of the libvirt host scenario, run with the server binary as the
//! README's "A libvirt host" section runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::process::check;

/// The registry's name of the libvirt network (the README's `lan`).
pub const NETWORK: &str = "lan";

/// The registry commands of the README, run as the user runs them.
pub(super) struct Registry<'a> {
    pub(super) bin: &'a Path,
    pub(super) db: PathBuf,
}

impl Registry<'_> {
    pub(super) fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        check(Command::new(self.bin).arg("--db").arg(&self.db).args(args))
    }

    /// `instance create NAME --network lan --mac MAC --key-file K [--user-data F]
    /// [--hostname H] --json`; returns the instance's uuid.
    pub(super) fn instance(
        &self,
        name: &str,
        mac: &str,
        key: &Path,
        user_data: Option<&Path>,
        hostname: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut args = vec![
            "instance".to_owned(),
            "create".into(),
            name.into(),
            "--network".into(),
            NETWORK.into(),
            "--mac".into(),
            mac.into(),
            "--key-file".into(),
            key.display().to_string(),
        ];
        if let Some(file) = user_data {
            args.extend(["--user-data".into(), file.display().to_string()]);
        }
        if let Some(h) = hostname {
            args.extend(["--hostname".into(), h.to_owned()]);
        }
        args.push("--json".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&args)?;
        let v: serde_json::Value = serde_json::from_str(out.trim())
            .with_context(|| format!("instance create printed no JSON: {out}"))?;
        v.get("uuid")
            .and_then(|u| u.as_str())
            .map(str::to_owned)
            .with_context(|| format!("instance create printed no uuid: {v}"))
    }
}
