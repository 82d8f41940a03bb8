//! Progress while guests boot: one spinner line per scenario on a terminal, plain timestamped
//! lines otherwise (CI logs).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Receives the stages of the scenarios as they run (from several threads).
pub trait Progress: Sync {
    /// `scenario` reached `stage` ("booting", "provisioned", "checking", …).
    fn stage(&self, scenario: &str, stage: &str);
    /// `scenario` finished.
    fn done(&self, scenario: &str, passed: bool, summary: &str);
}

/// Spinners on a terminal, plain lines otherwise.
pub fn for_terminal(scenarios: &[String]) -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Spinners::new(scenarios))
    } else {
        Box::new(Lines {
            started: Instant::now(),
        })
    }
}

/// Plain lines on stderr with the time since the run started.
#[derive(Debug)]
pub struct Lines {
    started: Instant,
}

impl Lines {
    /// Lines timed from now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
        }
    }
}

impl Default for Lines {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Lines {
    fn stage(&self, scenario: &str, stage: &str) {
        eprintln!(
            "[{:>7.1}s] {scenario}: {stage}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn done(&self, scenario: &str, passed: bool, summary: &str) {
        let verdict = if passed { "PASS" } else { "FAIL" };
        eprintln!(
            "[{:>7.1}s] {scenario}: {verdict} {summary}",
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// One indicatif spinner per scenario.
struct Spinners {
    _multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Spinners {
    fn new(scenarios: &[String]) -> Self {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{spinner} {prefix:<26} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let width = scenarios.iter().map(String::len).max().unwrap_or(0);
        let bars = scenarios
            .iter()
            .map(|name| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(format!("{name:<width$}"));
                bar.set_message("waiting");
                (name.clone(), bar)
            })
            .collect();
        Self {
            _multi: multi,
            bars: Mutex::new(bars),
        }
    }

    fn with_bar(&self, scenario: &str, f: impl FnOnce(&ProgressBar)) {
        let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = bars.get(scenario) {
            f(bar);
        }
    }
}

impl Progress for Spinners {
    fn stage(&self, scenario: &str, stage: &str) {
        self.with_bar(scenario, |bar| {
            if bar.elapsed() < Duration::from_millis(200) || bar.message() == "waiting" {
                bar.reset_elapsed();
                bar.enable_steady_tick(Duration::from_millis(120));
            }
            bar.set_message(stage.to_owned());
        });
    }

    fn done(&self, scenario: &str, passed: bool, summary: &str) {
        self.with_bar(scenario, |bar| {
            let verdict = if passed { "✔ pass" } else { "✘ FAIL" };
            bar.finish_with_message(format!("{verdict} {summary}"));
        });
    }
}
