//! `consentledger.v1.AdminService`: online backups and compaction.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::blocking;
use crate::audit::backup::{BackupManifest, HexHash, MANIFEST_FILE, MANIFEST_FORMAT};
use crate::model::ValidationError;
use crate::proto::v1 as pb;
use crate::proto::v1::admin_service_server::AdminService;
use crate::store::{Checkpointer, Store};

/// The admin service over a store and its checkpointer.
#[derive(Debug, Clone)]
pub struct AdminApi {
    store: Store,
    checkpointer: Checkpointer,
    /// Set while a `Compact` runs.
    compacting: Arc<AtomicBool>,
}

impl AdminApi {
    /// A service that backs up `store`, attested by checkpoints from `checkpointer`.
    pub fn new(store: Store, checkpointer: Checkpointer) -> Self {
        Self {
            store,
            checkpointer,
            compacting: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Clears the `compacting` flag when the compaction ends, however it ends (it runs on even
/// if its caller goes away).
struct Compacting(Arc<AtomicBool>);

impl Drop for Compacting {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    #[instrument(skip_all)]
    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        let dir = PathBuf::from(request.into_inner().to_dir);
        if !dir.is_absolute() {
            return Err(ValidationError::new(
                "to_dir",
                "must be an absolute path on the server's filesystem",
            )
            .into());
        }
        if dir.exists() {
            return Err(ValidationError::new(
                "to_dir",
                format!("{} already exists: name a new directory", dir.display()),
            )
            .into());
        }
        let (store, checkpointer) = (self.store.clone(), self.checkpointer.clone());
        let manifest = blocking(move || {
            let head = store.backup(&dir)?;
            // Signed after the copy was taken, so it covers at least what the copy holds.
            let signed = checkpointer.checkpoint_now()?;
            let proof = if head.size == 0 || head.size == signed.size {
                Vec::new()
            } else {
                store.consistency_proof(head.size, signed.size)?
            };
            let manifest = BackupManifest {
                format: MANIFEST_FORMAT.into(),
                created_at: Utc::now().to_rfc3339(),
                tree_size: head.size,
                root: head.root,
                checkpoint: signed.note,
                consistency_proof: proof.into_iter().map(HexHash).collect(),
                verifier_key: checkpointer.key().verifier().to_string(),
            };
            write_manifest(&dir, &manifest).map_err(|e| {
                tracing::error!(cause = %e, "cannot write the backup manifest");
                Status::internal("the backup was taken but its manifest could not be written")
            })?;
            tracing::info!(tree_size = head.size, dir = %dir.display(), "backup taken");
            Ok((dir, manifest))
        })
        .await?;
        let (dir, manifest) = manifest;
        Ok(Response::new(pb::BackupResponse {
            dir: dir.display().to_string(),
            tree_size: manifest.tree_size,
            root_hash: manifest.root.to_vec(),
            checkpoint: manifest.checkpoint,
            consistency_proof: manifest
                .consistency_proof
                .iter()
                .map(|h| h.0.to_vec())
                .collect(),
        }))
    }

    #[instrument(skip_all)]
    async fn compact(
        &self,
        _request: Request<pb::CompactRequest>,
    ) -> Result<Response<pb::CompactResponse>, Status> {
        if self.compacting.swap(true, Ordering::AcqRel) {
            return Err(Status::failed_precondition(
                "a compaction is already running: wait for it to finish",
            ));
        }
        let running = Compacting(self.compacting.clone());
        let store = self.store.clone();
        let (before, after, seconds) = blocking(move || {
            let _running = running;
            let started = Instant::now();
            let (before, after) = store.compact_all()?;
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(before, after, seconds, "table files compacted");
            Ok((before, after, seconds))
        })
        .await?;
        Ok(Response::new(pb::CompactResponse {
            table_file_bytes_before: before,
            table_file_bytes_after: after,
            seconds,
        }))
    }
}

/// Writes the manifest into the backup directory and syncs it.
fn write_manifest(dir: &std::path::Path, manifest: &BackupManifest) -> std::io::Result<()> {
    let mut file = std::fs::File::create(dir.join(MANIFEST_FILE))?;
    file.write_all(&serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}
