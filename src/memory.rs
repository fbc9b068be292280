//! Memory the allocator holds on to. With glibc's malloc, every thread that allocates gets
//! an arena of its own, and memory freed after a burst (the pages of a cluster's initial
//! list) stays mapped in them: a node syncing 10 000 Services would carry tens of MiB it
//! no longer uses. vipr caps the arenas at two and hands free pages back once the caches
//! are synced and then every [`TRIM_EVERY`] (the status writes of a large sync are a second
//! burst, freed over the following minute). Elsewhere (musl's malloc, the static image)
//! these are no-ops.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often free heap pages are handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(20);

/// Caps malloc's arenas and fixes its mmap threshold; call before the runtime starts its
/// threads. glibc raises the threshold each time a large mapped block is freed (up to
/// 32 MiB), after which the initial list's page buffers (about 1 MiB each) come from the
/// heap and leave holes there; fixed at 128 KiB they are mapped and unmapped whole.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable; no memory is touched.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Returns free heap pages to the system (after the initial sync's burst).
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory malloc holds unused.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Calls [`release_free`] every [`TRIM_EVERY`] until cancelled (a walk of malloc's free
/// lists: about a millisecond for a 50 MiB heap).
pub async fn trim(cancel: CancellationToken) {
    let mut every = tokio::time::interval(TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => release_free(),
        }
    }
}
