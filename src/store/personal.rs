//! Personal data at rest: the master-key check, data keys, sealed records, the
//! suppression list, and the purge that makes RocksDB drop what an erasure deleted from
//! every file it still sits in (memtables, WAL, SSTs).

use rocksdb::{BottommostLevelCompaction, CompactOptions, Direction, IteratorMode, WriteOptions};

use super::{keys, Store, StoreError};
use crate::crypto::{open_record, DataKey, IdentityDigest, Keyring};
use crate::model::{ContactId, PersonalRecord};

/// What a purge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgeReport {
    /// Erased contacts whose deleted values were compacted away.
    pub contacts: usize,
    /// Sealed records among them.
    pub records: usize,
}

impl Store {
    /// Records the master key's check value in a new ledger, or refuses a master key that
    /// is not the one the ledger's data keys are wrapped with.
    pub(super) fn check_master_key(&self, keyring: &Keyring) -> Result<(), StoreError> {
        let expected = keyring.fingerprint(b"master key check");
        let meta = self.cf(keys::META);
        match self.db.get_pinned_cf(meta, keys::META_MASTER_KEY_CHECK)? {
            Some(stored) if stored.as_ref() == expected => Ok(()),
            Some(_) => Err(StoreError::WrongMasterKey),
            None => {
                let mut sync = WriteOptions::default();
                sync.set_sync(true);
                self.db
                    .put_cf_opt(meta, keys::META_MASTER_KEY_CHECK, expected, &sync)?;
                Ok(())
            }
        }
    }

    /// The contact's data key, unwrapped; `None` if it has none (no personal data yet, or
    /// erased).
    pub(super) fn data_key(
        &self,
        contact: &ContactId,
        keyring: &Keyring,
    ) -> Result<Option<DataKey>, StoreError> {
        let Some(wrapped) = self
            .db
            .get_pinned_cf(self.cf(keys::KEYS), contact.as_str())?
        else {
            return Ok(None);
        };
        keyring
            .unwrap_data_key(contact.as_str(), &wrapped)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("data key of {contact}: {e}")))
    }

    /// The global seq of the erasure that suppressed `identity`, if one did.
    pub(super) fn suppressed_by(
        &self,
        identity: &IdentityDigest,
    ) -> Result<Option<u64>, StoreError> {
        let value = self
            .db
            .get_pinned_cf(self.cf(keys::SUPPRESSION), identity)?;
        value
            .map(|v| {
                keys::decode_u64(&v)
                    .ok_or_else(|| StoreError::Corrupt("malformed suppression record".into()))
            })
            .transpose()
    }

    /// The sealed personal-data record kept beside entry `seq`, if any.
    pub(super) fn sealed_record(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(keys::PII), keys::seq_key(seq))?)
    }

    /// The personal data recorded with the contact's entry at `contact_seq` (global `seq`),
    /// decrypted. `None` when the entry carried none or the contact was erased.
    pub fn personal_record(
        &self,
        contact: &ContactId,
        contact_seq: u64,
        seq: u64,
        keyring: &Keyring,
    ) -> Result<Option<PersonalRecord>, StoreError> {
        let Some(sealed) = self.sealed_record(seq)? else {
            return Ok(None);
        };
        let Some(key) = self.data_key(contact, keyring)? else {
            return Ok(None);
        };
        decode_record(&key, contact, contact_seq, &sealed).map(Some)
    }

    /// Makes RocksDB drop every value that erasures deleted and that may still sit in a
    /// memtable, the WAL or an older SST: flushes every family (so the WAL that held them
    /// is retired), then compacts the erased keys' ranges down through the bottommost
    /// level. Safe to repeat; runs at start for any erasure a crash interrupted. Values
    /// stay only in files a live snapshot, iterator or backup still holds.
    pub fn purge_erased(&self) -> Result<PurgeReport, StoreError> {
        let meta = self.cf(keys::META);
        let mut pending = Vec::new();
        let iter = self.db.iterator_cf(
            meta,
            IteratorMode::From(keys::META_PURGE_PREFIX, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(keys::META_PURGE_PREFIX) {
                break;
            }
            pending.push((key, value));
        }
        if pending.is_empty() {
            return Ok(PurgeReport::default());
        }
        self.flush()?;
        let mut compact = CompactOptions::default();
        compact.set_exclusive_manual_compaction(true);
        compact.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        let mut report = PurgeReport::default();
        for (key, seqs) in &pending {
            let contact = &key[keys::META_PURGE_PREFIX.len()..];
            let mut end = contact.to_vec();
            end.push(0);
            self.db
                .compact_range_cf_opt(self.cf(keys::KEYS), Some(contact), Some(&end), &compact);
            for seq in seqs.chunks_exact(8).filter_map(keys::decode_u64) {
                self.db.compact_range_cf_opt(
                    self.cf(keys::PII),
                    Some(keys::seq_key(seq)),
                    Some(keys::seq_key(seq + 1)),
                    &compact,
                );
                report.records += 1;
            }
            report.contacts += 1;
        }
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        for (key, _) in &pending {
            self.db.delete_cf_opt(meta, key, &sync)?;
        }
        Ok(report)
    }
}

/// Opens a sealed record and parses it.
pub(super) fn decode_record(
    key: &DataKey,
    contact: &ContactId,
    contact_seq: u64,
    sealed: &[u8],
) -> Result<PersonalRecord, StoreError> {
    let plain = open_record(key, contact.as_str(), contact_seq, sealed).map_err(|e| {
        StoreError::Corrupt(format!(
            "personal data of {contact} at contact seq {contact_seq}: {e}"
        ))
    })?;
    serde_json::from_slice(&plain).map_err(|_| {
        StoreError::Corrupt(format!(
            "personal data of {contact} at contact seq {contact_seq} is not a personal record"
        ))
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::{Entropy, MasterKey};
    use crate::model::{
        Audience, Country, Event, EventKind, Lifecycle, PersonalRecord, Relationship, Submission,
    };
    use crate::store::AppendError;

    fn registration(contact: &ContactId, email: &str) -> Submission {
        Submission {
            event: Event {
                contact_id: contact.clone(),
                idempotency_key: None,
                occurred_at: None,
                kind: EventKind::ContactRegistered {
                    country: Country::parse("c", "DE").unwrap(),
                    region: None,
                    relationship: Relationship {
                        audience: Audience::B2c,
                        lifecycle: Lifecycle::Prospect,
                    },
                    suppression_override: None,
                },
            },
            personal: Some(PersonalRecord {
                email: Some(email.into()),
                name: Some("Quillon Probe".into()),
                ..PersonalRecord::default()
            }),
            entropy: Some(Entropy::draw().unwrap().into_bytes()),
        }
    }

    /// An erasure of `contact`'s personal data, with no request behind it.
    pub(in crate::store) fn erasure(contact: &ContactId) -> Submission {
        Submission {
            event: Event {
                contact_id: contact.clone(),
                idempotency_key: None,
                occurred_at: None,
                kind: EventKind::ErasureExecuted {
                    request_id: None,
                    reason: "test".into(),
                },
            },
            personal: None,
            entropy: None,
        }
    }

    /// Every file under `dir` that contains `needle`.
    fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
        found
    }

    #[test]
    fn erasure_drops_the_key_and_records_from_every_file_and_suppresses_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let keyring = Arc::new(Keyring::new(&MasterKey::from_bytes([3; 32])));
        let store = Store::open(dir.path()).unwrap();
        let (writer, thread) = store.start_writer(keyring.clone()).unwrap();
        let gone = ContactId::parse("c", "crm-gone").unwrap();
        let kept = ContactId::parse("c", "crm-kept").unwrap();
        let append = |submission| {
            runtime
                .block_on(writer.append("test", vec![submission]))
                .unwrap()
                .pop()
                .unwrap()
        };
        let first = append(registration(&gone, "probe@example.test")).unwrap();
        append(registration(&kept, "kept@example.test")).unwrap();

        // The values to look for: the wrapped key and the sealed record, both on disk.
        let wrapped = store
            .db
            .get_cf(store.cf(keys::KEYS), gone.as_str())
            .unwrap()
            .unwrap();
        let sealed = store.sealed_record(first.seq).unwrap().unwrap();
        store.flush().unwrap();
        assert!(!files_containing(dir.path(), &wrapped).is_empty());
        assert!(!files_containing(dir.path(), &sealed).is_empty());
        assert!(files_containing(dir.path(), b"probe@example.test").is_empty());
        let record = store
            .personal_record(&gone, first.contact_seq, first.seq, &keyring)
            .unwrap()
            .unwrap();
        assert_eq!(record.email.as_deref(), Some("probe@example.test"));

        append(erasure(&gone)).unwrap();
        let report = store.purge_erased().unwrap();
        assert_eq!(
            report,
            PurgeReport {
                contacts: 1,
                records: 1
            }
        );
        assert_eq!(store.purge_erased().unwrap(), PurgeReport::default());
        assert_eq!(
            store
                .personal_record(&gone, first.contact_seq, first.seq, &keyring)
                .unwrap(),
            None
        );
        // Another contact's data is untouched.
        assert!(store.data_key(&kept, &keyring).unwrap().is_some());

        // The same identity, differently written, is refused for a new contact...
        let again = ContactId::parse("c", "crm-again").unwrap();
        let refused = append(registration(&again, " Probe@Example.TEST ")).unwrap_err();
        assert!(
            matches!(refused, AppendError::Suppressed { erasure_seq, .. } if erasure_seq == 3),
            "{refused:?}"
        );
        // ...unless a DPO overrides, which the entry records.
        let mut overridden = registration(&again, "probe@example.test");
        if let EventKind::ContactRegistered {
            suppression_override,
            ..
        } = &mut overridden.event.kind
        {
            *suppression_override = Some("the person asked to subscribe again".into());
        }
        append(overridden).unwrap();

        // A backup taken after the erasure does not bring the erased values back.
        let backup = tempfile::tempdir().unwrap();
        let backup_dir = backup.path().join("b");
        store.backup(&backup_dir).unwrap();
        assert_eq!(
            files_containing(&backup_dir, &wrapped),
            Vec::<String>::new()
        );
        assert_eq!(files_containing(&backup_dir, &sealed), Vec::<String>::new());

        drop(writer);
        thread.join();
        drop(store);
        assert_eq!(files_containing(dir.path(), &wrapped), Vec::<String>::new());
        assert_eq!(files_containing(dir.path(), &sealed), Vec::<String>::new());
    }

    #[test]
    fn a_different_master_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let right = Arc::new(Keyring::new(&MasterKey::from_bytes([1; 32])));
        let (writer, thread) = store.start_writer(right.clone()).unwrap();
        drop(writer);
        thread.join();
        let wrong = Arc::new(Keyring::new(&MasterKey::from_bytes([2; 32])));
        assert!(matches!(
            store.start_writer(wrong),
            Err(StoreError::WrongMasterKey)
        ));
        let (writer, thread) = store.start_writer(right).unwrap();
        drop(writer);
        thread.join();
    }
}
