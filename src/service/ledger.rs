//! `consentledger.v1.LedgerService`: append events, read history, verify a contact.

use chrono::Utc;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::{Caller, Role};
use super::convert::{
    chain_report_to_proto, entry_to_proto, receipt_to_proto, submission_from_proto, SubmissionError,
};
use super::eligibility::Policies;
use super::error::append_error_parts;
use super::{blocking, caller};
use crate::config::Limits;
use crate::model::{ContactId, Submission, ValidationError};
use crate::proto::v1 as pb;
use crate::proto::v1::ledger_service_server::LedgerService;
use crate::store::{Store, WriterHandle};

/// Default and largest page of `GetHistory`.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// The ledger service over a store and its writer.
#[derive(Debug, Clone)]
pub struct LedgerApi {
    store: Store,
    writer: WriterHandle,
    policies: Policies,
    limits: Limits,
}

impl LedgerApi {
    /// A service that appends through `writer` and reads from `store`, validating events
    /// against the purposes and channels of the active policy pack.
    pub fn new(store: Store, writer: WriterHandle, policies: Policies, limits: Limits) -> Self {
        Self {
            store,
            writer,
            policies,
            limits,
        }
    }
}

#[tonic::async_trait]
impl LedgerService for LedgerApi {
    // The high-rate calls (Append, AppendBatch, Check, Screen) open their spans at
    // `debug`: an enabled span, its fields formatted as it opens, cost about 5% of a
    // `Check`'s server CPU. The other calls keep theirs at `info`.
    #[instrument(level = "debug", skip_all, fields(contact))]
    async fn append(
        &self,
        request: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let actor = caller(&request)?;
        let event = request
            .into_inner()
            .event
            .ok_or_else(|| ValidationError::new("event", "is required"))?;
        let submission = submission_from_proto(event, &self.policies.registry(), Utc::now())?;
        tracing::Span::current().record("contact", submission.event.contact_id.as_str());
        may_override_suppression(&actor, &submission)?;
        let mut results = self.writer.append(&actor.name, vec![submission]).await?;
        let receipt = results
            .pop()
            .ok_or_else(|| Status::internal("the writer returned no result"))??;
        Ok(Response::new(pb::AppendResponse {
            receipt: Some(receipt_to_proto(&receipt)),
        }))
    }

    #[instrument(level = "debug", skip_all, fields(events))]
    async fn append_batch(
        &self,
        request: Request<pb::AppendBatchRequest>,
    ) -> Result<Response<pb::AppendBatchResponse>, Status> {
        let actor = caller(&request)?;
        let events = request.into_inner().events;
        tracing::Span::current().record("events", events.len());
        self.store
            .metrics()
            .batch_events
            .observe(events.len() as f64);
        if events.is_empty() {
            return Err(ValidationError::new("events", "must hold at least one event").into());
        }
        if events.len() > self.limits.max_batch_events {
            return Err(Status::invalid_argument(format!(
                "events: batch of {} events exceeds the limit of {} (max_batch_events)",
                events.len(),
                self.limits.max_batch_events
            )));
        }
        let now = Utc::now();
        let registry = self.policies.registry();
        let mut results: Vec<Option<pb::append_result::Outcome>> = Vec::with_capacity(events.len());
        let mut valid: Vec<Submission> = Vec::with_capacity(events.len());
        let mut valid_at = Vec::with_capacity(events.len());
        for (index, event) in events.into_iter().enumerate() {
            match submission_from_proto(event, &registry, now) {
                Ok(submission) if may_override_suppression(&actor, &submission).is_err() => results
                    .push(Some(pb::append_result::Outcome::Error(pb::AppendError {
                        code: tonic::Code::PermissionDenied as i32,
                        field: "suppression_override".into(),
                        message: OVERRIDE_NEEDS_DPO.into(),
                    }))),
                Ok(submission) => {
                    valid.push(submission);
                    valid_at.push(index);
                    results.push(None);
                }
                Err(SubmissionError::Crypto(err)) => {
                    return Err(SubmissionError::Crypto(err).into())
                }
                Err(SubmissionError::Invalid(err)) => {
                    results.push(Some(pb::append_result::Outcome::Error(pb::AppendError {
                        code: tonic::Code::InvalidArgument as i32,
                        field: err.field.clone(),
                        message: err.to_string(),
                    })))
                }
            }
        }
        if !valid.is_empty() {
            let appended = self.writer.append(&actor.name, valid).await?;
            for (index, result) in valid_at.into_iter().zip(appended) {
                results[index] = Some(match result {
                    Ok(receipt) => pb::append_result::Outcome::Receipt(receipt_to_proto(&receipt)),
                    Err(err) => {
                        let (code, field, message) = append_error_parts(&err);
                        pb::append_result::Outcome::Error(pb::AppendError {
                            code: code as i32,
                            field: field.to_owned(),
                            message: format!("{field}: {message}"),
                        })
                    }
                });
            }
        }
        let results = results
            .into_iter()
            .enumerate()
            .map(|(index, outcome)| pb::AppendResult {
                index: index as u32,
                outcome,
            })
            .collect();
        Ok(Response::new(pb::AppendBatchResponse { results }))
    }

    #[instrument(skip_all)]
    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let request = request.into_inner();
        let contact = ContactId::parse("contact_id", &request.contact_id)?;
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE,
            n if n > MAX_PAGE => {
                return Err(ValidationError::new(
                    "page_size",
                    format!("must be at most {MAX_PAGE} (got {n})"),
                )
                .into())
            }
            n => n,
        };
        let after = decode_page_token(&request.page_token)?;
        let store = self.store.clone();
        let (entries, more) = blocking(move || {
            if store.chain_head(&contact)?.is_none() {
                return Err(Status::not_found(format!(
                    "contact {contact} is not registered"
                )));
            }
            Ok(store.history(&contact, after, page_size as usize)?)
        })
        .await?;
        let next_page_token = match (more, entries.last()) {
            (true, Some(last)) => encode_page_token(last.entry.contact_seq),
            _ => String::new(),
        };
        Ok(Response::new(pb::GetHistoryResponse {
            entries: entries.iter().map(entry_to_proto).collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all, fields(seq = request.get_ref().seq))]
    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::GetEntryResponse>, Status> {
        let seq = request.into_inner().seq;
        if seq == 0 {
            return Err(ValidationError::new("seq", "sequence numbers start at 1").into());
        }
        let store = self.store.clone();
        let entry = blocking(move || Ok(store.entry(seq)?)).await?;
        let entry = entry.ok_or_else(|| Status::not_found(format!("no entry with seq {seq}")))?;
        Ok(Response::new(pb::GetEntryResponse {
            entry: Some(entry_to_proto(&entry)),
        }))
    }

    #[instrument(skip_all)]
    async fn verify_contact(
        &self,
        request: Request<pb::VerifyContactRequest>,
    ) -> Result<Response<pb::VerifyContactResponse>, Status> {
        let contact = ContactId::parse("contact_id", &request.into_inner().contact_id)?;
        let store = self.store.clone();
        let report = blocking(move || {
            store
                .verify_contact(&contact)?
                .ok_or_else(|| Status::not_found(format!("contact {contact} is not registered")))
        })
        .await?;
        if let Some(broken) = &report.first_break {
            tracing::warn!(seq = broken.seq, contact_seq = broken.contact_seq, problem = ?broken.problem, "contact chain is broken");
        }
        Ok(Response::new(chain_report_to_proto(&report)))
    }

    #[instrument(skip_all)]
    async fn get_tree_head(
        &self,
        _request: Request<pb::GetTreeHeadRequest>,
    ) -> Result<Response<pb::GetTreeHeadResponse>, Status> {
        let store = self.store.clone();
        let head = blocking(move || Ok(store.tree_head()?)).await?;
        Ok(Response::new(pb::GetTreeHeadResponse {
            tree_size: head.size,
            root_hash: head.root.to_vec(),
        }))
    }
}

const OVERRIDE_NEEDS_DPO: &str =
    "suppression_override: only a caller with the dpo role may record a suppressed identity again";

/// Refuses a suppression override from a caller without the `dpo` role.
fn may_override_suppression(actor: &Caller, submission: &Submission) -> Result<(), Status> {
    if submission.event.kind.suppression_override().is_some() && !actor.roles.contains(&Role::Dpo) {
        return Err(Status::permission_denied(OVERRIDE_NEEDS_DPO));
    }
    Ok(())
}

/// Page tokens are `h` followed by the last contact seq returned, in hex. Opaque to
/// clients; validated here.
fn encode_page_token(after: u64) -> String {
    format!("h{after:x}")
}

fn decode_page_token(token: &str) -> Result<u64, ValidationError> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix('h')
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| ValidationError::new("page_token", "is not a token returned by GetHistory"))
}
