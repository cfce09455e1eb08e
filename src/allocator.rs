//! The process's allocator.

/// mimalloc instead of glibc's malloc: the ingest allocates and frees page buffers of 135
/// open Parquet writers from two threads, which glibc's arenas fragment into hundreds of
/// MiB of resident memory (docs/benchmarks.md has the measured numbers).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 2's `mi_option_e` (libmimalloc-sys names no
/// constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Gives freed pages back to the OS at once rather than after mimalloc's delay (10 ms, and
/// ten times that for arenas). A streamed query frees each batch once it is printed; with
/// the delay, the freed batches of a fast scan stay resident (`select *` as ndjson over 1M
/// findings peaked at 535 MiB with it, 320 MiB without: docs/benchmarks.md). The option's
/// number is mimalloc 2's; the crate builds mimalloc 2 unless its `v3` feature is on.
/// The ingest keeps the delay: it reuses what it frees within milliseconds.
pub fn purge_freed_memory_at_once() {
    // SAFETY: sets one integer option; mimalloc reads options atomically on every purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}
