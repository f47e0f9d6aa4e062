//! Maps every error of the layers below to a `tonic::Status`, in one place.

use tonic::{Code, Status};

use crate::ledger::ApplyError;
use crate::model::ValidationError;
use crate::service::convert::SubmissionError;
use crate::store::{AppendError, ProofRequestError, StoreError};

impl From<SubmissionError> for Status {
    fn from(err: SubmissionError) -> Self {
        match err {
            SubmissionError::Invalid(e) => e.into(),
            SubmissionError::Crypto(e) => {
                tracing::error!(cause = %e, "cannot seal personal data");
                Status::unavailable("cannot seal personal data right now; nothing was written")
            }
        }
    }
}

impl From<ValidationError> for Status {
    fn from(err: ValidationError) -> Self {
        Status::invalid_argument(err.to_string())
    }
}

/// The end of every out-of-space refusal.
const NOTHING_WRITTEN_UNTIL_SPACE: &str =
    "nothing was written. Appends resume by themselves once space is freed";

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::Corrupt(_) => {
                tracing::error!(cause = %err, "stored data is damaged");
                Status::data_loss(
                    "stored ledger data is damaged; run a contact or ledger verification",
                )
            }
            // Logged once by the store when refusals start.
            StoreError::DiskFull { .. } => {
                Status::resource_exhausted(format!("{err}; {NOTHING_WRITTEN_UNTIL_SPACE}"))
            }
            StoreError::Engine(_) if err.is_out_of_space() => Status::resource_exhausted(format!(
                "the ledger's disk is full; {NOTHING_WRITTEN_UNTIL_SPACE}"
            )),
            StoreError::Engine(_) => {
                tracing::error!(cause = %err, "storage engine error");
                Status::unavailable("the ledger's storage failed; nothing was written, retry later")
            }
            StoreError::WriterStopped => Status::unavailable("the server is shutting down"),
            StoreError::Cancelled => Status::cancelled(err.to_string()),
            StoreError::WrongMasterKey => Status::failed_precondition(err.to_string()),
            StoreError::NoRandomness(_) => {
                tracing::error!(cause = %err, "no randomness");
                Status::unavailable(err.to_string())
            }
        }
    }
}

impl From<ProofRequestError> for Status {
    fn from(err: ProofRequestError) -> Self {
        match err {
            ProofRequestError::Invalid(e) => Status::invalid_argument(e.to_string()),
            ProofRequestError::BeyondTree { .. } => Status::out_of_range(err.to_string()),
            ProofRequestError::Store(e) => e.into(),
        }
    }
}

/// The code, field and message of an event that was not appended; the same for a unary
/// append (as a `Status`) and for one result of a batch.
pub fn append_error_parts(err: &AppendError) -> (Code, &'static str, String) {
    let (code, field) = match err {
        AppendError::Rejected(ApplyError::NotRegistered) => (Code::NotFound, "contact_id"),
        AppendError::Rejected(rejected) => (Code::FailedPrecondition, rejected.field()),
        AppendError::IdempotencyConflict { .. } => (Code::AlreadyExists, "idempotency_key"),
        AppendError::Suppressed { field, .. } => (Code::FailedPrecondition, *field),
        AppendError::Unsealable => (Code::Internal, "personal"),
    };
    (code, field, err.to_string())
}

impl From<AppendError> for Status {
    fn from(err: AppendError) -> Self {
        let (code, field, message) = append_error_parts(&err);
        Status::new(code, format!("{field}: {message}"))
    }
}
