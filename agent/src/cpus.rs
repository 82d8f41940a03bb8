//! The CPUs this process may run on: the work a run does on a thread of its own (documents
//! fetched ahead, passwords hashed ahead) only pays with a second one. On one CPU a thread
//! takes the run's own time, and under emulation (the lab's TCG guests have one vCPU) its
//! start alone costs more than the waits it overlaps: measured in BENCH.md.

/// True when this process may run on more than one CPU (its affinity mask; `false` when it
/// cannot be read).
pub fn second_cpu() -> bool {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return false;
    };
    (0..nix::sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .nth(1)
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_pinned_to_one_cpu_has_no_second() {
        let pinned = crate::testutil::on_one_cpu(second_cpu);
        assert!(!pinned);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(second_cpu(), cpus > 1);
    }
}
