//! `consentledger.v1.RightsService`: erasure that really removes personal data, and the
//! access (Art. 15) and portability (Art. 20) exports.

use std::pin::Pin;
use std::sync::Arc;

use chrono::Utc;
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::audit::contact_bundle;
use super::convert::{
    client_contact_id, contact_summary_to_proto, entry_to_proto, erasure_to_proto, optional_text,
    personal_record_to_proto, receipt_to_proto, to_timestamp,
};
use super::{blocking, caller};
use crate::crypto::Keyring;
use crate::model::{ContactId, Event, EventKind, IdempotencyKey, Submission, ValidationError};
use crate::proto::v1 as pb;
use crate::proto::v1::rights_service_server::RightsService;
use crate::store::{Checkpointer, Store, StoredEntry, WriterHandle};

/// Entries read per step of an export.
const EXPORT_PAGE: usize = 256;

/// The rights service over a store, its writer, the keyring and the checkpointer.
#[derive(Debug, Clone)]
pub struct RightsApi {
    store: Store,
    writer: WriterHandle,
    keyring: Arc<Keyring>,
    checkpointer: Checkpointer,
}

impl RightsApi {
    /// A service that appends through `writer`, reads `store`, opens personal data with
    /// `keyring` and proves exports with checkpoints from `checkpointer`.
    pub fn new(
        store: Store,
        writer: WriterHandle,
        keyring: Arc<Keyring>,
        checkpointer: Checkpointer,
    ) -> Self {
        Self {
            store,
            writer,
            keyring,
            checkpointer,
        }
    }
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportPart, Status>> + Send>>;

#[tonic::async_trait]
impl RightsService for RightsApi {
    #[instrument(skip_all, fields(contact))]
    async fn erase_contact(
        &self,
        request: Request<pb::EraseContactRequest>,
    ) -> Result<Response<pb::EraseContactResponse>, Status> {
        let actor = caller(&request)?;
        let request = request.into_inner();
        let contact = client_contact_id(&request.contact_id)?;
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
        let receipt = self
            .writer
            .append(&actor.name, vec![submission])
            .await?
            .pop()
            .ok_or_else(|| Status::internal("the writer returned no result"))??;
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

    type ExportContactStream = ExportStream;

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
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let (keyring, checkpointer) = (self.keyring.clone(), self.checkpointer.clone());
        tokio::task::spawn_blocking(move || {
            let export = Export {
                store: &store,
                keyring: &keyring,
                contact: &contact,
                tree_size,
                kind,
            };
            let send = |part| sender.blocking_send(Ok(part)).is_ok();
            if let Err(status) = export.run(&state, &checkpointer, send) {
                let _ = sender.blocking_send(Err(status));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
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
        if !send(part(Part::State(contact_summary_to_proto(state)))) {
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
