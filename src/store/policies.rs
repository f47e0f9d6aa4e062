//! Policy pack texts kept by digest, and the book of every activation read back from the
//! ledger's `~policy` chain, so a decision for a past time uses the pack then in force.

use std::sync::Arc;

use rocksdb::WriteOptions;

use super::{keys, Store, StoreError};
use crate::model::{ContactId, EventKind};
use crate::policy::{Activation, PolicyBook, PolicyPack};

/// Entries read from the policy chain per page.
const PAGE: usize = 256;

impl Store {
    /// Keeps a pack's text under its digest, durably, before the activation that names it
    /// is appended (a text without an activation is harmless; the reverse is not).
    pub fn save_policy_text(&self, pack: &PolicyPack, text: &str) -> Result<(), StoreError> {
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db
            .put_cf_opt(self.cf(keys::POLICIES), pack.sha256, text.as_bytes(), &sync)?;
        Ok(())
    }

    /// The text of a pack by its digest.
    pub fn policy_text(&self, sha256: &[u8; 32]) -> Result<Option<String>, StoreError> {
        self.db
            .get_cf(self.cf(keys::POLICIES), sha256)?
            .map(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| StoreError::Corrupt("a stored policy text is not UTF-8".into()))
            })
            .transpose()
    }

    /// Every pack activated in this ledger, in order, each parsed from its stored text.
    pub fn policy_book(&self) -> Result<PolicyBook, StoreError> {
        let chain = ContactId::policy_chain();
        let mut book = PolicyBook::default();
        let mut after = 0;
        loop {
            let (entries, more) = self.history(&chain, after, PAGE)?;
            for stored in &entries {
                let EventKind::PolicyActivated {
                    version,
                    text_sha256,
                } = &stored.entry.body.event
                else {
                    return Err(StoreError::Corrupt(format!(
                        "entry {} on the policy chain is not a policy activation",
                        stored.entry.seq
                    )));
                };
                let mut digest = [0u8; 32];
                hex::decode_to_slice(text_sha256, &mut digest).map_err(|_| {
                    StoreError::Corrupt(format!(
                        "entry {}: malformed policy digest",
                        stored.entry.seq
                    ))
                })?;
                let text = self.policy_text(&digest)?.ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "the text of policy {version} (entry {}) is missing",
                        stored.entry.seq
                    ))
                })?;
                let pack = PolicyPack::parse(&text).map_err(|err| {
                    StoreError::Corrupt(format!(
                        "policy {version} (entry {}) no longer parses: {err}",
                        stored.entry.seq
                    ))
                })?;
                if pack.sha256 != digest || pack.version != *version {
                    return Err(StoreError::Corrupt(format!(
                        "the stored text of policy {version} (entry {}) does not match its activation",
                        stored.entry.seq
                    )));
                }
                book.push(Activation {
                    pack: Arc::new(pack),
                    seq: stored.entry.seq,
                    recorded_at: stored.entry.body.recorded_at,
                });
            }
            match entries.last() {
                Some(last) if more => after = last.entry.contact_seq,
                _ => return Ok(book),
            }
        }
    }
}
