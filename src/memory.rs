//! Memory the allocator holds on to. With glibc's malloc, every thread that allocates gets
//! an arena of its own, and memory freed after a burst (the pages of a cluster's initial
//! list) stays mapped in them: a node syncing 10 000 Services would carry tens of MiB it
//! no longer uses. vipr caps the arenas at two and hands free pages back once the caches
//! are synced. Elsewhere (musl's malloc, the static image) these are no-ops.

/// Caps malloc's arenas; call before the runtime starts its threads.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable; no memory is touched.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
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
