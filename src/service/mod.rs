//! gRPC services: one module per service; `convert` maps proto <-> domain, `error` maps
//! every layer's errors to `tonic::Status`. Handlers validate, call the store, and map.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod convert;
mod decision_wire;
pub mod eligibility;
pub mod error;
pub mod ledger;
mod outbox;
pub mod rights;

pub use admin::AdminApi;
pub use audit::AuditApi;
pub use auth::Caller;
pub use eligibility::EligibilityApi;
pub use ledger::LedgerApi;
pub use rights::RightsApi;

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
