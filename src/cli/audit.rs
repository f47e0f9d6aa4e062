//! The auditor's commands: fetch and check checkpoints and proofs, verify the whole
//! ledger, and export and verify bundles. Everything fetched is checked here, on the
//! auditor's side, against the verifier key the auditor pinned; nothing is taken on the
//! server's word.

use std::path::Path;

use anyhow::{bail, Context};

use super::{from_json, AuditClient};
use crate::audit::bundle::{verify_bundle, BundleSummary};
use crate::audit::checkpoint::{open_checkpoint, TreeCheckpoint, VerifierKey};
use crate::audit::proof::{verify_consistency, verify_inclusion};
use crate::keyfile::CHECKPOINT_KEY_FILE;
use crate::ledger::Hash;
use crate::proto::v1 as pb;
use crate::service::convert::bundle_from_proto;

/// A verifier key given as its text or as the path of a file holding it.
pub fn verifier_key(text_or_path: &str) -> anyhow::Result<VerifierKey> {
    let path = Path::new(text_or_path);
    let text = if path.is_file() {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?
    } else {
        text_or_path.to_owned()
    };
    VerifierKey::parse(text.trim()).context("not a verifier key (name+keyid+base64)")
}

/// The verifier key of the signing key kept in `data_dir` (or in `key_file`).
pub fn local_verifier_key(data_dir: &Path, key_file: Option<&Path>) -> anyhow::Result<String> {
    let path = key_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join(CHECKPOINT_KEY_FILE));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the signing key {}", path.display()))?;
    let key = crate::audit::checkpoint::SigningKey::from_text(&text)
        .with_context(|| format!("{} is not a signing key", path.display()))?;
    Ok(key.verifier().to_string())
}

/// Reads a saved checkpoint note and checks its signature.
pub fn read_checkpoint(path: &Path, key: &VerifierKey) -> anyhow::Result<(String, TreeCheckpoint)> {
    let note = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
    let head =
        open_checkpoint(&note, key).with_context(|| format!("checkpoint {}", path.display()))?;
    Ok((note, head))
}

fn hash(bytes: &[u8], what: &str) -> anyhow::Result<Hash> {
    bytes
        .try_into()
        .with_context(|| format!("the server sent a {what} that is not 32 bytes"))
}

fn hashes(list: &[Vec<u8>], what: &str) -> anyhow::Result<Vec<Hash>> {
    list.iter().map(|h| hash(h, what)).collect()
}

/// Fetches the receipt proof of entry `seq` and checks it: the checkpoint's signature
/// with `key` and the inclusion proof against the checkpoint's root.
pub async fn receipt_proof(
    client: &mut AuditClient,
    seq: u64,
    key: &VerifierKey,
) -> anyhow::Result<pb::GetReceiptProofResponse> {
    let response = client
        .get_receipt_proof(pb::GetReceiptProofRequest { seq })
        .await?
        .into_inner();
    let checkpoint = response
        .checkpoint
        .as_ref()
        .context("the server sent no checkpoint")?;
    let head = open_checkpoint(&checkpoint.note, key).context("the receipt's checkpoint")?;
    let proof = response
        .proof
        .as_ref()
        .context("the server sent no proof")?;
    if proof.tree_size != head.size || proof.leaf_index + 1 != seq {
        bail!("the proof is for another entry or tree size than the checkpoint");
    }
    verify_inclusion(
        proof.leaf_index,
        head.size,
        &hash(&response.entry_hash, "entry hash")?,
        &hashes(&proof.hashes, "proof hash")?,
        &head.root,
    )
    .with_context(|| {
        format!(
            "entry {seq} is not proven included in checkpoint {}",
            head.size
        )
    })?;
    Ok(response)
}

/// What a checked consistency proof showed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyOutcome {
    /// The older tree size.
    pub old_size: u64,
    /// The newer tree size.
    pub new_size: u64,
    /// Hashes in the proof.
    pub proof_hashes: usize,
}

/// Proves that the tree of the `old` checkpoint is a prefix of the tree of `new` (both
/// already signature-checked): fetches the consistency proof and checks it here.
pub async fn check_consistency(
    client: &mut AuditClient,
    old: TreeCheckpoint,
    new: TreeCheckpoint,
) -> anyhow::Result<ConsistencyOutcome> {
    if old.size > new.size {
        bail!(
            "the old checkpoint (size {}) is larger than the new one (size {}): the log shrank, or the files are swapped",
            old.size,
            new.size
        );
    }
    let proof = if old.size == 0 {
        Vec::new()
    } else {
        let response = client
            .get_consistency_proof(pb::GetConsistencyProofRequest {
                first_size: old.size,
                second_size: new.size,
            })
            .await?
            .into_inner();
        hashes(&response.hashes, "proof hash")?
    };
    if old.size > 0 {
        verify_consistency(old.size, new.size, &old.root, &new.root, &proof).with_context(|| {
            format!(
                "the log of size {} is not an extension of the log of size {}: entries recorded before were changed or removed",
                new.size, old.size
            )
        })?;
    }
    Ok(ConsistencyOutcome {
        old_size: old.size,
        new_size: new.size,
        proof_hashes: proof.len(),
    })
}

/// Verifies a bundle file (protobuf JSON of `consentledger.v1.Bundle`) with `key`, with
/// no server and no data directory.
pub fn verify_bundle_file(path: &Path, key: &VerifierKey) -> anyhow::Result<BundleSummary> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the bundle {}", path.display()))?;
    verify_bundle_json(&text, key).with_context(|| format!("bundle {}", path.display()))
}

/// Verifies a bundle given as the protobuf JSON of `consentledger.v1.Bundle`.
pub fn verify_bundle_json(text: &str, key: &VerifierKey) -> anyhow::Result<BundleSummary> {
    let bundle: pb::Bundle = from_json("consentledger.v1.Bundle", text)?;
    let bundle = bundle_from_proto(bundle).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(verify_bundle(&bundle, key)?)
}
