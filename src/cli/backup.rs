//! `restore`: a backup taken by `backup` (AdminService.Backup) into a new data directory,
//! offline, proven before it is used: the manifest's checkpoint signature and consistency
//! proof, the restored tree head against the manifest, and a full verification.

use std::path::Path;

use anyhow::{bail, Context};

use crate::audit::backup::{BackupManifest, MANIFEST_FILE};
use crate::audit::checkpoint::VerifierKey;
use crate::store::{LedgerReport, Store};

/// What a restore proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The backup's manifest.
    pub manifest: BackupManifest,
    /// Size of the signed checkpoint the backup is a prefix of.
    pub signed_size: u64,
    /// Whether the key was taken from the manifest rather than given.
    pub key_from_manifest: bool,
    /// The full verification of the restored ledger.
    pub verification: LedgerReport,
}

/// Restores the backup in `from` into `to` (which must not exist, or be empty), checking
/// it against `key` (or the key the manifest names, if none is given). Nothing is left in
/// `to` if a check before the copy fails; a restored ledger that fails verification is
/// reported as an error and left for inspection.
pub fn restore(from: &Path, to: &Path, key: Option<&VerifierKey>) -> anyhow::Result<RestoreReport> {
    let manifest_path = from.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "{} is not a backup: cannot read {MANIFEST_FILE}",
            from.display()
        )
    })?;
    let manifest: BackupManifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a backup manifest", manifest_path.display()))?;
    let (key, key_from_manifest) = match key {
        Some(key) => (key.clone(), false),
        None => (
            super::audit::verifier_key(&manifest.verifier_key)
                .context("the manifest's verifier key")?,
            true,
        ),
    };
    let signed = manifest
        .verify(&key)
        .with_context(|| format!("backup {} does not prove its tree", from.display()))?;
    if to.exists() && std::fs::read_dir(to)?.next().is_some() {
        bail!(
            "{} is not empty: restore into a new directory",
            to.display()
        );
    }
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for item in std::fs::read_dir(from)? {
        let item = item?;
        let name = item.file_name();
        if name == MANIFEST_FILE || name == "LOCK" || !item.file_type()?.is_file() {
            continue;
        }
        let target = to.join(&name);
        std::fs::copy(item.path(), &target)
            .with_context(|| format!("cannot copy {}", item.path().display()))?;
        std::fs::File::open(&target)?.sync_all()?;
    }
    std::fs::File::open(to)?.sync_all()?;

    let store = Store::open(to)?;
    let head = store.tree_head()?;
    if (head.size, head.root) != (manifest.tree_size, manifest.root) {
        bail!(
            "the restored ledger holds {} entries with root {}, the manifest says {} with root {}",
            head.size,
            hex::encode(head.root),
            manifest.tree_size,
            hex::encode(manifest.root)
        );
    }
    let verification = store.verify_ledger(Some(&key), None, &mut |_, _| true)?;
    if !verification.is_ok() {
        bail!(
            "the restored ledger does not verify: {} finding(s), first: {:?}",
            verification.damage.len() as u64 + verification.more_damage,
            verification.damage.first()
        );
    }
    Ok(RestoreReport {
        manifest,
        signed_size: signed.size,
        key_from_manifest,
        verification,
    })
}
