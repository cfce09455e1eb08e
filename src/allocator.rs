//! The process's allocator.

use std::time::Duration;

/// mimalloc instead of glibc's malloc: the ingest allocates and frees page buffers of 135
/// open Parquet writers from two threads, which glibc's arenas fragment into hundreds of
/// MiB of resident memory (docs/benchmarks.md has the measured numbers).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 2's `mi_option_e` (libmimalloc-sys names no
/// constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Gives freed pages back to the OS at once, rather than after mimalloc's delay (10 ms, and
/// ten times that for arenas), once the command has run for [`LONG_RUNNING`]. A streamed
/// query frees each batch once it is printed; with the delay, the freed batches of a fast
/// scan stay resident (`select *` as ndjson over 1M findings peaked at 535 MiB with it,
/// 353 MiB with this: docs/benchmarks.md). A short query is the other way round: it frees
/// and allocates the same pages file after file, and purging them at once made it fault and
/// zero them again each time (a fifth of a 0.1 s `group by type`'s CPU was the kernel
/// clearing pages; with the timer it runs in 0.77x the wall time). So the delay stays for
/// the first [`LONG_RUNNING`], which short queries end in. The ingest keeps the delay: it
/// reuses what it frees within milliseconds.
pub fn purge_freed_memory_when_long_running() {
    // A detached timer: the process may end before it fires, which is the point.
    let spawned = std::thread::Builder::new()
        .name("gdq-purge-timer".into())
        .spawn(|| {
            std::thread::sleep(LONG_RUNNING);
            purge_freed_memory_at_once();
        });
    if spawned.is_err() {
        purge_freed_memory_at_once();
    }
}

/// How long a command runs before freed memory goes back to the OS at once.
const LONG_RUNNING: Duration = Duration::from_millis(250);

/// Gives freed pages back to the OS at once from now on. The option's number is mimalloc 2's;
/// the crate builds mimalloc 2 unless its `v3` feature is on.
pub fn purge_freed_memory_at_once() {
    // SAFETY: sets one integer option; mimalloc reads options atomically on every purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}
