//! `consentledger.v1.AuditService`: Merkle proofs, signed checkpoints, full ledger
//! verification and offline bundles. Read-only: nothing here changes an entry.

use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::blocking;
use super::convert::{
    bundle_to_proto, checkpoint_to_proto, inclusion_proof_to_proto, ledger_report_to_proto,
};
use super::outbox::{outbox, ResponseStream};
use crate::audit::bundle::BundleEntry;
use crate::audit::checkpoint::open_checkpoint;
use crate::model::{ContactId, ValidationError};
use crate::proto::v1 as pb;
use crate::proto::v1::audit_service_server::AuditService;
use crate::store::{Checkpointer, Store};

/// The contact's entries as stored, each with its inclusion proof against one checkpoint
/// signed now (or the latest, if it covers the whole tree). Blocks on storage.
pub(crate) fn contact_bundle(
    store: &Store,
    checkpointer: &Checkpointer,
    contact: &ContactId,
) -> Result<pb::Bundle, Status> {
    let checkpoint = checkpointer.checkpoint_now()?;
    let (history, _) = store.history(contact, 0, usize::MAX)?;
    if history.is_empty() {
        return Err(Status::not_found(format!(
            "contact_id: no contact {} in the ledger",
            contact.as_str()
        )));
    }
    let entries = history
        .into_iter()
        .filter(|stored| stored.entry.seq <= checkpoint.size)
        .map(|stored| {
            let proof = store.inclusion_proof(stored.entry.seq - 1, checkpoint.size)?;
            Ok(BundleEntry {
                stored_bytes: stored.bytes,
                inclusion_proof: proof,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(bundle_to_proto(contact.as_str(), &checkpoint, entries))
}

/// Default and largest page of `ListCheckpoints`.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// The audit service over a store and its checkpointer.
#[derive(Debug, Clone)]
pub struct AuditApi {
    store: Store,
    checkpointer: Checkpointer,
    /// How long a streamed response waits for its caller to read (`request_timeout`).
    stall: Duration,
}

impl AuditApi {
    /// A service that reads `store` and signs with `checkpointer`; a `VerifyLedger`
    /// caller that reads nothing for `stall` has its verification stopped.
    pub fn new(store: Store, checkpointer: Checkpointer, stall: Duration) -> Self {
        Self {
            store,
            checkpointer,
            stall,
        }
    }
}

fn seq_field(seq: u64) -> Result<u64, ValidationError> {
    seq.checked_sub(1)
        .ok_or_else(|| ValidationError::new("seq", "must be at least 1"))
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    #[instrument(skip_all)]
    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        let request = request.into_inner();
        let index = seq_field(request.seq)?;
        let store = self.store.clone();
        blocking(move || {
            let size = match request.tree_size {
                0 => store.tree_head()?.size,
                size => size,
            };
            let hashes = store.inclusion_proof(index, size)?;
            let entry = store.entry(request.seq)?.ok_or_else(|| {
                Status::not_found(format!("seq: entry {} does not exist", request.seq))
            })?;
            Ok(Response::new(pb::GetInclusionProofResponse {
                entry_hash: entry.hash.to_vec(),
                proof: Some(inclusion_proof_to_proto(index, size, &hashes)),
                root: store.root_at(size)?.to_vec(),
            }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        let request = request.into_inner();
        if request.first_size == 0 {
            return Err(ValidationError::new("first_size", "must be at least 1").into());
        }
        let store = self.store.clone();
        blocking(move || {
            let second = match request.second_size {
                0 => store.tree_head()?.size,
                size => size,
            };
            let hashes = store.consistency_proof(request.first_size, second)?;
            Ok(Response::new(pb::GetConsistencyProofResponse {
                first_size: request.first_size,
                second_size: second,
                hashes: hashes.iter().map(|h| h.to_vec()).collect(),
                first_root: store.root_at(request.first_size)?.to_vec(),
                second_root: store.root_at(second)?.to_vec(),
            }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        let request = request.into_inner();
        let (store, checkpointer) = (self.store.clone(), self.checkpointer.clone());
        blocking(move || {
            let checkpoint = match request.tree_size {
                0 if !request.fresh => match store.latest_checkpoint()? {
                    Some(latest) => latest,
                    None => checkpointer.checkpoint_now()?,
                },
                0 => checkpointer.checkpoint_now()?,
                size => store.checkpoint_at(size)?.ok_or_else(|| {
                    Status::not_found(format!(
                        "tree_size: no checkpoint was issued at size {size}; ListCheckpoints shows those that were"
                    ))
                })?,
            };
            Ok(Response::new(pb::GetCheckpointResponse {
                checkpoint: Some(checkpoint_to_proto(&checkpoint)),
            }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn list_checkpoints(
        &self,
        request: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        let request = request.into_inner();
        let page = match request.page_size {
            0 => DEFAULT_PAGE,
            n if n > MAX_PAGE => {
                return Err(ValidationError::new(
                    "page_size",
                    format!("must be at most {MAX_PAGE}"),
                )
                .into())
            }
            n => n,
        } as usize;
        let store = self.store.clone();
        blocking(move || {
            let mut found = store.checkpoints(request.from_size, page + 1)?;
            let next_from_size = if found.len() > page {
                found.pop().map_or(0, |next| next.size)
            } else {
                0
            };
            Ok(Response::new(pb::ListCheckpointsResponse {
                checkpoints: found.iter().map(checkpoint_to_proto).collect(),
                next_from_size,
            }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn get_receipt_proof(
        &self,
        request: Request<pb::GetReceiptProofRequest>,
    ) -> Result<Response<pb::GetReceiptProofResponse>, Status> {
        let seq = request.into_inner().seq;
        let index = seq_field(seq)?;
        let (store, checkpointer) = (self.store.clone(), self.checkpointer.clone());
        blocking(move || {
            let entry = store
                .entry(seq)?
                .ok_or_else(|| Status::not_found(format!("seq: entry {seq} does not exist")))?;
            let checkpoint = checkpointer.checkpoint_covering(seq)?;
            let hashes = store.inclusion_proof(index, checkpoint.size)?;
            Ok(Response::new(pb::GetReceiptProofResponse {
                checkpoint: Some(checkpoint_to_proto(&checkpoint)),
                entry_hash: entry.hash.to_vec(),
                proof: Some(inclusion_proof_to_proto(index, checkpoint.size, &hashes)),
            }))
        })
        .await
    }

    type VerifyLedgerStream = ResponseStream<pb::VerifyLedgerResponse>;

    #[instrument(skip_all)]
    async fn verify_ledger(
        &self,
        request: Request<pb::VerifyLedgerRequest>,
    ) -> Result<Response<Self::VerifyLedgerStream>, Status> {
        let note = request.into_inner().trusted_checkpoint;
        let verifier = self.checkpointer.key().verifier();
        let trusted = match note.as_str() {
            "" => None,
            note => Some(
                open_checkpoint(note, &verifier)
                    .map_err(|e| Status::invalid_argument(format!("trusted_checkpoint: {e}")))?,
            ),
        };
        let store = self.store.clone();
        let (outbox, stream) = outbox("VerifyLedger", 16, self.stall, store.metrics().clone());
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            // A caller that went away or stopped reading stops the verification at its
            // next progress report.
            let mut progress = |done, total| {
                outbox.blocking_send(Ok(pb::VerifyLedgerResponse {
                    update: Some(pb::verify_ledger_response::Update::Progress(
                        pb::VerifyProgress {
                            entries_done: done,
                            entries_total: total,
                        },
                    )),
                }))
            };
            let outcome = store.verify_ledger(Some(&verifier), trusted, &mut progress);
            let message = match outcome {
                Ok(report) => {
                    if report.is_ok() {
                        tracing::info!(entries = report.entries, "ledger verified");
                    } else {
                        tracing::error!(
                            entries = report.entries,
                            findings = report.damage.len(),
                            "ledger verification found damage"
                        );
                    }
                    Ok(pb::VerifyLedgerResponse {
                        update: Some(pb::verify_ledger_response::Update::Result(
                            ledger_report_to_proto(&report, started.elapsed().as_secs_f64()),
                        )),
                    })
                }
                Err(err) => Err(Status::from(err)),
            };
            outbox.blocking_send(message);
        });
        Ok(Response::new(stream))
    }

    #[instrument(skip_all)]
    async fn export_bundle(
        &self,
        request: Request<pb::ExportBundleRequest>,
    ) -> Result<Response<pb::Bundle>, Status> {
        let contact = ContactId::parse("contact_id", &request.into_inner().contact_id)?;
        let (store, checkpointer) = (self.store.clone(), self.checkpointer.clone());
        blocking(move || contact_bundle(&store, &checkpointer, &contact).map(Response::new)).await
    }

    #[instrument(skip_all)]
    async fn get_verifier_key(
        &self,
        _request: Request<pb::GetVerifierKeyRequest>,
    ) -> Result<Response<pb::GetVerifierKeyResponse>, Status> {
        Ok(Response::new(pb::GetVerifierKeyResponse {
            verifier_key: self.checkpointer.key().verifier().to_string(),
        }))
    }
}
