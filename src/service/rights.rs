//! `consentledger.v1.RightsService`: data-subject requests and their deadlines, erasure
//! that really removes personal data, and the access (Art. 15) and portability (Art. 20)
//! exports.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::audit::contact_bundle;
use super::auth::Caller;
use super::convert::{
    calendar_day, client_contact_id, contact_summary_to_proto, entry_to_proto, erasure_to_proto,
    open_request_from_proto, optional_text, personal_record_to_proto, receipt_to_proto,
    request_kind_from_proto, request_to_proto, to_timestamp,
};
use super::eligibility::Policies;
use super::outbox::{outbox, ResponseStream};
use super::{blocking, caller};
use crate::crypto::Keyring;
use crate::model::{
    ContactId, Event, EventKind, IdempotencyKey, RequestKind, Submission, ValidationError,
};
use crate::proto::v1 as pb;
use crate::proto::v1::rights_service_server::RightsService;
use crate::store::{
    Checkpointer, ContactRequest, Receipt, RequestScan, Store, StoredEntry, WriterHandle,
};

/// Entries read per step of an export.
const EXPORT_PAGE: usize = 256;

/// The rights service over a store, its writer, the keyring and the checkpointer.
#[derive(Debug, Clone)]
pub struct RightsApi {
    store: Store,
    writer: WriterHandle,
    keyring: Arc<Keyring>,
    checkpointer: Checkpointer,
    policies: Policies,
    /// How long a streamed response waits for its caller to read (`request_timeout`).
    stall: Duration,
}

impl RightsApi {
    /// A service that appends through `writer`, reads `store`, opens personal data with
    /// `keyring`, proves exports with checkpoints from `checkpointer`, and validates
    /// purposes against the active policy pack. An `ExportContact` caller that reads
    /// nothing for `stall` has its export stopped.
    pub fn new(
        store: Store,
        writer: WriterHandle,
        keyring: Arc<Keyring>,
        checkpointer: Checkpointer,
        policies: Policies,
        stall: Duration,
    ) -> Self {
        Self {
            store,
            writer,
            keyring,
            checkpointer,
            policies,
            stall,
        }
    }

    /// Appends one submission and returns its receipt.
    async fn append_one(&self, actor: &str, submission: Submission) -> Result<Receipt, Status> {
        self.writer
            .append(actor, vec![submission])
            .await?
            .pop()
            .ok_or_else(|| Status::internal("the writer returned no result"))?
            .map_err(Status::from)
    }

    /// Records `step` of request `request_id` on its contact's chain and answers with the
    /// request as it now stands.
    async fn request_step(
        &self,
        actor: &Caller,
        request_id: &str,
        step: EventKind,
    ) -> Result<Response<pb::RequestResponse>, Status> {
        let contact = self.request_contact(request_id).await?;
        let receipt = self
            .append_one(
                &actor.name,
                Submission {
                    event: Event {
                        contact_id: contact,
                        idempotency_key: None,
                        occurred_at: None,
                        kind: step,
                    },
                    personal: None,
                    entropy: None,
                },
            )
            .await?;
        self.request_response(request_id, Some(receipt)).await
    }

    async fn request_contact(&self, request_id: &str) -> Result<ContactId, Status> {
        IdempotencyKey::parse("request_id", request_id)?;
        let (store, id) = (self.store.clone(), request_id.to_owned());
        blocking(move || Ok(store.request_contact(&id)?))
            .await?
            .ok_or_else(|| Status::not_found(format!("request_id: no request {request_id}")))
    }

    async fn request_response(
        &self,
        request_id: &str,
        receipt: Option<Receipt>,
    ) -> Result<Response<pb::RequestResponse>, Status> {
        let (store, id) = (self.store.clone(), request_id.to_owned());
        let found = blocking(move || Ok(store.request(&id)?))
            .await?
            .ok_or_else(|| Status::not_found(format!("request_id: no request {request_id}")))?;
        Ok(Response::new(pb::RequestResponse {
            request: Some(request_to_proto(
                &found.contact,
                &found.request,
                Utc::now().date_naive(),
            )),
            receipt: receipt.as_ref().map(receipt_to_proto),
        }))
    }
}

/// A new request id: `dsr-` and 20 hex digits, random, or derived from the contact and
/// the idempotency key so that a retry names the same request.
fn new_request_id(contact: &str, idempotency_key: &str) -> Result<String, Status> {
    let mut bytes = [0u8; 10];
    if idempotency_key.is_empty() {
        getrandom::fill(&mut bytes)
            .map_err(|_| Status::unavailable("no randomness for a request id; retry"))?;
    } else {
        let digest = Sha256::new()
            .chain_update(contact)
            .chain_update([0])
            .chain_update(idempotency_key)
            .finalize();
        bytes.copy_from_slice(&digest[..10]);
    }
    Ok(format!("dsr-{}", hex::encode(bytes)))
}

/// A required free-text field of a request step.
fn required(text: &str, field: &str, what: &str) -> Result<String, ValidationError> {
    optional_text(text, field)?
        .ok_or_else(|| ValidationError::new(field, format!("is required: {what}")))
}

#[tonic::async_trait]
impl RightsService for RightsApi {
    #[instrument(skip_all, fields(contact))]
    async fn open_request(
        &self,
        request: Request<pb::OpenRequestRequest>,
    ) -> Result<Response<pb::RequestResponse>, Status> {
        let actor = caller(&request)?;
        let request = request.into_inner();
        let request_id = new_request_id(&request.contact_id, &request.idempotency_key)?;
        let submission = open_request_from_proto(
            request,
            request_id.clone(),
            &self.policies.registry(),
            Utc::now(),
        )?;
        tracing::Span::current().record("contact", submission.event.contact_id.as_str());
        let receipt = self.append_one(&actor.name, submission).await?;
        self.request_response(&request_id, Some(receipt)).await
    }

    #[instrument(skip_all)]
    async fn verify_request_identity(
        &self,
        request: Request<pb::VerifyRequestIdentityRequest>,
    ) -> Result<Response<pb::RequestResponse>, Status> {
        let actor = caller(&request)?;
        let request = request.into_inner();
        let method = required(&request.method, "method", "how the identity was verified")?;
        let step = EventKind::RequestIdentityVerified {
            request_id: request.request_id.clone(),
            method,
        };
        self.request_step(&actor, &request.request_id, step).await
    }

    #[instrument(skip_all)]
    async fn acknowledge_request(
        &self,
        request: Request<pb::AcknowledgeRequestRequest>,
    ) -> Result<Response<pb::RequestResponse>, Status> {
        let actor = caller(&request)?;
        let request_id = request.into_inner().request_id;
        let step = EventKind::RequestAcknowledged {
            request_id: request_id.clone(),
        };
        self.request_step(&actor, &request_id, step).await
    }

    #[instrument(skip_all)]
    async fn extend_request(
        &self,
        request: Request<pb::ExtendRequestRequest>,
    ) -> Result<Response<pb::RequestResponse>, Status> {
        let actor = caller(&request)?;
        let request = request.into_inner();
        let step = EventKind::RequestExtended {
            request_id: request.request_id.clone(),
            reason: required(&request.reason, "reason", "why the period is extended")?,
            subject_notified_on: calendar_day(&request.subject_notified_on, "subject_notified_on")?,
        };
        self.request_step(&actor, &request.request_id, step).await
    }

    #[instrument(skip_all)]
    async fn reject_request(
        &self,
        request: Request<pb::RejectRequestRequest>,
    ) -> Result<Response<pb::RequestResponse>, Status> {
        let actor = caller(&request)?;
        let request = request.into_inner();
        let step = EventKind::RequestRejected {
            request_id: request.request_id.clone(),
            reason: required(&request.reason, "reason", "the reason given to the subject")?,
        };
        self.request_step(&actor, &request.request_id, step).await
    }

    #[instrument(skip_all)]
    async fn complete_request(
        &self,
        request: Request<pb::CompleteRequestRequest>,
    ) -> Result<Response<pb::RequestResponse>, Status> {
        let actor = caller(&request)?;
        let request = request.into_inner();
        let step = EventKind::RequestCompleted {
            request_id: request.request_id.clone(),
            outcome: required(&request.outcome, "outcome", "what was done")?,
        };
        self.request_step(&actor, &request.request_id, step).await
    }

    #[instrument(skip_all)]
    async fn get_request(
        &self,
        request: Request<pb::GetRequestRequest>,
    ) -> Result<Response<pb::RequestResponse>, Status> {
        let request_id = request.into_inner().request_id;
        IdempotencyKey::parse("request_id", &request_id)?;
        self.request_response(&request_id, None).await
    }

    #[instrument(skip_all)]
    async fn list_requests(
        &self,
        request: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        let request = request.into_inner();
        let listing = Listing::from_proto(&request, Utc::now().date_naive())?;
        let store = self.store.clone();
        let (found, next) = blocking(move || {
            let keep = |r: &ContactRequest| listing.keeps(r);
            Ok(store.scan_requests(&listing.scan, listing.page_size, keep)?)
        })
        .await?;
        let today = Utc::now().date_naive();
        Ok(Response::new(pb::ListRequestsResponse {
            requests: found
                .iter()
                .map(|r| request_to_proto(&r.contact, &r.request, today))
                .collect(),
            next_page_token: next
                .map(|position| encode_request_token(&request, &position))
                .unwrap_or_default(),
        }))
    }

    #[instrument(skip_all, fields(contact))]
    async fn erase_contact(
        &self,
        request: Request<pb::EraseContactRequest>,
    ) -> Result<Response<pb::EraseContactResponse>, Status> {
        let actor = caller(&request)?;
        let request = request.into_inner();
        let contact = client_contact_id("contact_id", &request.contact_id)?;
        tracing::Span::current().record("contact", contact.as_str());
        let reason = optional_text(&request.reason, "reason")?.ok_or_else(|| {
            ValidationError::new("reason", "is required: why the personal data is erased")
        })?;
        let request_id = optional_text(&request.request_id, "request_id")?;
        let idempotency_key = (!request.idempotency_key.is_empty())
            .then(|| IdempotencyKey::parse("idempotency_key", &request.idempotency_key))
            .transpose()?;
        let submission = Submission {
            event: Event {
                contact_id: contact,
                idempotency_key,
                occurred_at: None,
                kind: EventKind::ErasureExecuted { request_id, reason },
            },
            personal: None,
            entropy: None,
        };
        let receipt = self.append_one(&actor.name, submission).await?;
        // The erasure is durable; now make the storage engine forget the destroyed values.
        let store = self.store.clone();
        let purged = blocking(move || Ok(store.purge_erased()?)).await?;
        tracing::info!(
            seq = receipt.seq,
            records = purged.records,
            "personal data erased and purged"
        );
        Ok(Response::new(pb::EraseContactResponse {
            receipt: Some(receipt_to_proto(&receipt)),
            records_purged: purged.records as u64,
        }))
    }

    type ExportContactStream = ResponseStream<pb::ExportPart>;

    #[instrument(skip_all, fields(contact))]
    async fn export_contact(
        &self,
        request: Request<pb::ExportContactRequest>,
    ) -> Result<Response<Self::ExportContactStream>, Status> {
        let request = request.into_inner();
        let contact = ContactId::parse("contact_id", &request.contact_id)?;
        tracing::Span::current().record("contact", contact.as_str());
        let kind = match pb::ExportKind::try_from(request.kind) {
            Ok(pb::ExportKind::Access) => pb::ExportKind::Access,
            Ok(pb::ExportKind::Portability) => pb::ExportKind::Portability,
            _ => {
                return Err(ValidationError::new(
                    "kind",
                    "must be EXPORT_KIND_ACCESS or EXPORT_KIND_PORTABILITY",
                )
                .into())
            }
        };
        let store = self.store.clone();
        let state = {
            let (store, contact) = (store.clone(), contact.clone());
            blocking(move || Ok(store.contact_state_with_size(&contact)?)).await?
        };
        let (Some(state), tree_size) = state else {
            return Err(Status::not_found(format!(
                "contact_id: no contact {contact} in the ledger"
            )));
        };
        let (outbox, stream) = outbox("ExportContact", 4, self.stall, store.metrics().clone());
        let (keyring, checkpointer) = (self.keyring.clone(), self.checkpointer.clone());
        tokio::task::spawn_blocking(move || {
            let export = Export {
                store: &store,
                keyring: &keyring,
                contact: &contact,
                tree_size,
                kind,
            };
            let send = |part| outbox.blocking_send(Ok(part));
            if let Err(status) = export.run(&state, &checkpointer, send) {
                outbox.blocking_send(Err(status));
            }
        });
        Ok(Response::new(stream))
    }
}

/// One export being streamed.
struct Export<'a> {
    store: &'a Store,
    keyring: &'a Keyring,
    contact: &'a ContactId,
    /// Entries beyond this size (appended after the export began) are left out.
    tree_size: u64,
    kind: pb::ExportKind,
}

impl Export<'_> {
    /// Streams the parts through `send`, which says whether the caller still listens.
    fn run(
        &self,
        state: &crate::ledger::ContactState,
        checkpointer: &Checkpointer,
        mut send: impl FnMut(pb::ExportPart) -> bool,
    ) -> Result<(), Status> {
        use pb::export_part::Part;
        let erasure = match state.erased {
            Some(erased) => self.store.entry(erased.seq)?.map(|e| erasure_to_proto(&e)),
            None => None,
        };
        let header = pb::ExportHeader {
            contact_id: self.contact.to_string(),
            kind: self.kind as i32,
            generated_at: Some(to_timestamp(Utc::now())),
            tree_size: self.tree_size,
            tree_root: self.store.root_at(self.tree_size)?.to_vec(),
            erasure,
        };
        if !send(part(Part::Header(header))) {
            return Ok(());
        }
        let mut after = 0;
        loop {
            let (page, more) = self.store.history(self.contact, after, EXPORT_PAGE)?;
            for stored in &page {
                after = stored.entry.contact_seq;
                if stored.entry.seq > self.tree_size {
                    continue;
                }
                if self.kind == pb::ExportKind::Portability && !provided_by_subject(stored) {
                    continue;
                }
                if !send(part(Part::Entry(self.exported_entry(stored)?))) {
                    return Ok(());
                }
            }
            if !more {
                break;
            }
        }
        let today = Utc::now().date_naive();
        if !send(part(Part::State(contact_summary_to_proto(
            self.contact,
            state,
            today,
        )))) {
            return Ok(());
        }
        if self.kind == pb::ExportKind::Access {
            let bundle = contact_bundle(self.store, checkpointer, self.contact)?;
            send(part(Part::Integrity(bundle)));
        }
        Ok(())
    }

    fn exported_entry(&self, stored: &StoredEntry) -> Result<pb::ExportedEntry, Status> {
        let entry = &stored.entry;
        let (status, personal) = match entry.body.personal_data_sha256 {
            None => (pb::PersonalDataStatus::None, None),
            Some(_) => match self.store.personal_record(
                self.contact,
                entry.contact_seq,
                entry.seq,
                self.keyring,
            )? {
                Some(record) => (
                    pb::PersonalDataStatus::Present,
                    Some(personal_record_to_proto(record)),
                ),
                None => (pb::PersonalDataStatus::Erased, None),
            },
        };
        Ok(pb::ExportedEntry {
            entry: Some(entry_to_proto(stored)),
            personal_status: status as i32,
            personal,
        })
    }
}

/// A validated `ListRequests`.
#[derive(Debug)]
struct Listing {
    scan: RequestScan,
    page_size: usize,
    kind: Option<RequestKind>,
    closed: Option<bool>,
    until: Option<NaiveDate>,
}

impl Listing {
    fn from_proto(request: &pb::ListRequestsRequest, today: NaiveDate) -> Result<Self, Status> {
        let filter = pb::RequestFilter::try_from(request.filter).map_err(|_| {
            ValidationError::new("filter", format!("unknown value {}", request.filter))
        })?;
        let kind = match request.kind {
            0 => None,
            _ => Some(request_kind_from_proto(request.kind, "kind")?),
        };
        let page_size = match request.page_size {
            0 => 100,
            n if n > 1000 => {
                return Err(ValidationError::new(
                    "page_size",
                    format!("must be at most 1000 (got {n})"),
                )
                .into())
            }
            n => n as usize,
        };
        let mut until = None;
        if request.overdue {
            until = today.pred_opt();
        }
        if request.due_within_days > 0 {
            let within = today
                .checked_add_days(chrono::Days::new(request.due_within_days.into()))
                .ok_or_else(|| ValidationError::new("due_within_days", "is too far ahead"))?;
            until = Some(until.map_or(within, |u: NaiveDate| u.min(within)));
        }
        let position = decode_request_token(&request.page_token)?;
        let (scan, closed) = match filter {
            pb::RequestFilter::OpenUnspecified => (
                RequestScan::OpenByDue {
                    until,
                    after: position,
                },
                Some(false),
            ),
            pb::RequestFilter::Closed | pb::RequestFilter::All => {
                let after = String::from_utf8(position).map_err(|_| {
                    ValidationError::new("page_token", "is not a token returned by ListRequests")
                })?;
                let closed = (filter == pb::RequestFilter::Closed).then_some(true);
                (RequestScan::ById { after }, closed)
            }
        };
        Ok(Self {
            scan,
            page_size,
            kind,
            closed,
            until,
        })
    }

    fn keeps(&self, found: &ContactRequest) -> bool {
        let state = &found.request.state;
        let closed = state.status.is_closed();
        self.kind.is_none_or(|k| k == state.kind)
            && self.closed.is_none_or(|c| c == closed)
            && self.until.is_none_or(|until| !closed && state.due <= until)
    }
}

/// Page tokens are `r` and the hex of the index position. Opaque to clients.
fn encode_request_token(_request: &pb::ListRequestsRequest, position: &[u8]) -> String {
    format!("r{}", hex::encode(position))
}

fn decode_request_token(token: &str) -> Result<Vec<u8>, ValidationError> {
    if token.is_empty() {
        return Ok(Vec::new());
    }
    token
        .strip_prefix('r')
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| {
            ValidationError::new("page_token", "is not a token returned by ListRequests")
        })
}

fn part(part: pb::export_part::Part) -> pb::ExportPart {
    pb::ExportPart { part: Some(part) }
}

/// Whether an entry records data the person provided (GDPR Art. 20(1)): their identity
/// and contact details, and the consents, confirmations and objections they expressed.
fn provided_by_subject(stored: &StoredEntry) -> bool {
    matches!(
        stored.entry.body.event,
        EventKind::ContactRegistered { .. }
            | EventKind::ProfileUpdated(_)
            | EventKind::ConsentGranted { .. }
            | EventKind::ConsentWithdrawn { .. }
            | EventKind::DoubleOptInConfirmed { .. }
            | EventKind::ObjectionRecorded { .. }
    )
}
