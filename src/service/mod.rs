//! gRPC services: one module per service; `convert` maps proto <-> domain, `error` maps
//! every layer's errors to `tonic::Status`. Handlers validate, call the store, and map.

pub mod convert;
pub mod error;
pub mod ledger;

pub use ledger::LedgerApi;

/// The authenticated caller of a request, placed in the request's extensions by the
/// server before any handler runs. The actor recorded in an entry comes only from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's name, recorded as the actor of the entries it appends.
    pub name: String,
}

impl Caller {
    /// The caller of the embedded default, which runs on loopback without authentication.
    pub fn unauthenticated_local() -> Self {
        Self {
            name: "local-unauthenticated".into(),
        }
    }
}

/// Reads the caller placed in a request by the server.
pub(crate) fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| tonic::Status::unauthenticated("no authenticated caller"))
}

/// Runs blocking storage work off the async executor.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, tonic::Status> + Send + 'static,
) -> Result<T, tonic::Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| tonic::Status::internal("a storage task failed"))?
}
