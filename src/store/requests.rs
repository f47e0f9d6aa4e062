//! Data-subject requests across contacts: which contact holds a request, and the open
//! requests in due-date order. The writer keeps both indexes in the batch that records
//! each step, so they never disagree with the contacts' states.

use chrono::NaiveDate;
use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{keys, Store, StoreError};
use crate::ledger::projection::RequestRecord;
use crate::ledger::ContactState;
use crate::model::ContactId;

/// A request with the contact that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRequest {
    /// The contact.
    pub contact: ContactId,
    /// The request.
    pub request: RequestRecord,
}

/// Which index a listing walks, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestScan {
    /// Open requests due on or before `until` (every open request if `None`), in due
    /// order, after the index key `after` (empty: from the start).
    OpenByDue {
        /// Last due day included.
        until: Option<NaiveDate>,
        /// Resume after this index key.
        after: Vec<u8>,
    },
    /// Every request, in id order, after the id `after`.
    ById {
        /// Resume after this id.
        after: String,
    },
}

impl Store {
    /// The contact that holds request `id`, if any.
    pub fn request_contact(&self, id: &str) -> Result<Option<ContactId>, StoreError> {
        let value = self.db.get_pinned_cf(self.cf(keys::REQUESTS), id)?;
        value
            .map(|bytes| {
                std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|c| ContactId::parse("contact_id", c).ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("request index entry {id}")))
            })
            .transpose()
    }

    /// The request `id` with its contact, as the contact's state holds it.
    pub fn request(&self, id: &str) -> Result<Option<ContactRequest>, StoreError> {
        let Some(contact) = self.request_contact(id)? else {
            return Ok(None);
        };
        let state = self.contact_state(&contact)?.ok_or_else(|| {
            StoreError::Corrupt(format!("request {id} names a contact without state"))
        })?;
        let request = state.find_request(id).cloned().ok_or_else(|| {
            StoreError::Corrupt(format!("request {id} is not in its contact's state"))
        })?;
        Ok(Some(ContactRequest { contact, request }))
    }

    /// Up to `limit` requests from `scan` that `keep` accepts, and the position to resume
    /// from (`None` when the index is exhausted). The position is an index key for
    /// `OpenByDue` and a request id for `ById`.
    pub fn scan_requests(
        &self,
        scan: &RequestScan,
        limit: usize,
        mut keep: impl FnMut(&ContactRequest) -> bool,
    ) -> Result<(Vec<ContactRequest>, Option<Vec<u8>>), StoreError> {
        let (family, start, until) = match scan {
            RequestScan::OpenByDue { until, after } => (
                keys::REQUESTS_BY_DUE,
                after.clone(),
                until.map(|day| keys::due_prefix(day.succ_opt().unwrap_or(day))),
            ),
            RequestScan::ById { after } => (keys::REQUESTS, after.as_bytes().to_vec(), None),
        };
        let mut found = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(family),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (key, _) = item?;
            if !start.is_empty() && *key == *start {
                continue;
            }
            if until.is_some_and(|end| key.as_ref() >= end.as_slice()) {
                return Ok((found, None));
            }
            if found.len() == limit {
                let position = last_position(&found, scan);
                return Ok((found, Some(position)));
            }
            let id = match scan {
                RequestScan::OpenByDue { .. } => &key[4..],
                RequestScan::ById { .. } => &key[..],
            };
            let id = std::str::from_utf8(id)
                .map_err(|_| StoreError::Corrupt("malformed request index key".into()))?;
            let request = self.request(id)?.ok_or_else(|| {
                StoreError::Corrupt(format!("request {id} is indexed but unknown"))
            })?;
            if keep(&request) {
                found.push(request);
            }
        }
        Ok((found, None))
    }
}

fn last_position(found: &[ContactRequest], scan: &RequestScan) -> Vec<u8> {
    let Some(last) = found.last() else {
        return Vec::new();
    };
    match scan {
        RequestScan::OpenByDue { .. } => keys::due_key(last.request.state.due, &last.request.id),
        RequestScan::ById { .. } => last.request.id.as_bytes().to_vec(),
    }
}

/// Stages the index changes that one step of request `id` makes, from the contact's
/// state `before` to `after`.
pub(super) fn stage_request_index(
    store: &Store,
    batch: &mut WriteBatch,
    contact: &ContactId,
    id: &str,
    before: Option<&ContactState>,
    after: &ContactState,
) {
    let old = before.and_then(|s| s.find_request(id));
    let new = after.find_request(id);
    if old.is_none() {
        batch.put_cf(store.cf(keys::REQUESTS), id, contact.as_str());
    }
    if let Some(old) = old.filter(|r| !r.state.status.is_closed()) {
        batch.delete_cf(
            store.cf(keys::REQUESTS_BY_DUE),
            keys::due_key(old.state.due, id),
        );
    }
    if let Some(new) = new.filter(|r| !r.state.status.is_closed()) {
        batch.put_cf(
            store.cf(keys::REQUESTS_BY_DUE),
            keys::due_key(new.state.due, id),
            contact.as_str(),
        );
    }
}
