//! One runtime for the table's I/O, for synchronous callers (the CLI's writers, the threads
//! of a local ingest). Async callers (the worker, queries) use the async API directly.

use std::future::Future;
use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gdq-table")
            .enable_all()
            .build()
            .expect("the table runtime starts (threads and timers are available)")
    })
}

/// Runs `future` to completion. Call it from a thread that is not running async code (it
/// blocks the thread; inside a runtime, `.await` instead).
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}
