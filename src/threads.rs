//! Threads that each run a single-threaded tokio runtime of their own: the server's gRPC
//! threads and the load generator's connections.

use std::future::Future;

use tokio::sync::oneshot;

/// Starts a thread named `name` that runs the future `work` makes in a single-threaded
/// runtime of its own. The receiver gets what the future returns, or why the runtime
/// could not be built; it is closed without either if the thread panics.
pub(crate) fn spawn_single_threaded<F>(
    name: String,
    work: impl FnOnce() -> F + Send + 'static,
) -> std::io::Result<oneshot::Receiver<std::io::Result<F::Output>>>
where
    F: Future,
    F::Output: Send + 'static,
{
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new().name(name).spawn(move || {
        let ran = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| runtime.block_on(work()));
        let _ = done.send(ran);
    })?;
    Ok(finished)
}
