//! The `jira-sync` binary: everything lives in the library; see [`jira_sync::commands::run`].

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    allocator::tune();
    jira_sync::commands::run(jira_sync::commands::Cli::parse())
}

/// glibc's allocator, tuned for a process that moves pages of megabytes between a few threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod allocator {
    /// One arena for every thread, and every allocation of 1 MiB or more mapped on its own,
    /// given back to the system as soon as it is freed.
    ///
    /// By default glibc gives a thread that meets contention an arena of its own (up to eight
    /// a core) and raises its mapping threshold each time a big block is freed. An issue page
    /// (3 MB with every field) received on one worker thread and freed on another then leaves
    /// its memory cached in several arenas. Measured with the benchmark's budget stage (a first
    /// full sync of the heavy site): peak RSS at 16 requests in flight 125 to 132 MiB before,
    /// 87 to 97 MiB after; at the default settings 80 MiB before, 52 to 55 MiB after; wall
    /// times within the runs' spread.
    ///
    /// A user's own `MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_` or `GLIBC_TUNABLES` wins:
    /// nothing is changed then.
    pub fn tune() {
        const OWN: [&str; 3] = [
            "MALLOC_ARENA_MAX",
            "MALLOC_MMAP_THRESHOLD_",
            "GLIBC_TUNABLES",
        ];
        if OWN.iter().any(|name| std::env::var_os(name).is_some()) {
            return;
        }
        #[allow(unsafe_code)]
        // SAFETY: `mallopt` only sets two of the allocator's parameters, and this runs first in
        // `main`, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        }
    }
}

/// Other platforms keep their allocator as it is.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod allocator {
    pub fn tune() {}
}
