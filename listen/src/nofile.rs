//! The process's open-file limit (`RLIMIT_NOFILE`): raised to its hard limit at start, so a
//! listener's connection cap — not the kernel's default of 1,024 — decides what a flood of
//! connections gets. Uses nix's safe wrappers; no `unsafe` here.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The soft and hard open-file limits; `None` when they cannot be read.
pub fn current() -> Option<(u64, u64)> {
    getrlimit(Resource::RLIMIT_NOFILE).ok()
}

/// Raise the soft open-file limit to the hard one. Returns the (old, new) soft limit.
pub fn raise() -> Result<(u64, u64), nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok((soft, hard.max(soft)))
}

/// Whether `e` means this process (`EMFILE`) or the whole system (`ENFILE`) ran out of file
/// descriptors: the agent's own trouble, never evidence about the database.
pub fn is_exhausted(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error().map(nix::errno::Errno::from_raw),
        Some(nix::errno::Errno::EMFILE | nix::errno::Errno::ENFILE)
    )
}
