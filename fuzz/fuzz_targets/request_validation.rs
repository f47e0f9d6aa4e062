//! Events as clients send them, in protobuf or its JSON mapping: validation never panics;
//! what it accepts becomes an entry that decodes back to itself and folds into a contact
//! state; every state is decided under both shipped packs. Requests to open a
//! data-subject request go through their own validation too.

#![no_main]

use consent_ledger::cli::from_json;
use consent_ledger::proto::v1 as pb;
use consent_ledger::service::convert::open_request_from_proto;
use consent_ledger_fuzz::{decide_everything, now, record_batch, shipped_packs};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|bytes: &[u8]| {
    let registry = &shipped_packs()[0].registry;
    let batch = match bytes.first() {
        Some(b'{') => std::str::from_utf8(bytes).ok().and_then(|text| {
            from_json::<pb::AppendBatchRequest>("consentledger.v1.AppendBatchRequest", text).ok()
        }),
        _ => pb::AppendBatchRequest::decode(bytes).ok(),
    };
    if let Some(batch) = batch {
        let ledger = record_batch(batch, registry);
        for state in ledger.states() {
            for pack in shipped_packs() {
                decide_everything(pack, state);
            }
        }
    }
    if let Ok(request) = pb::OpenRequestRequest::decode(bytes) {
        let _ = open_request_from_proto(request, "request-1".to_owned(), registry, now());
    }
});
