//! The DPO commands: data-subject requests (`requests …`), the access and portability
//! export (`export`), and erasure (`erase`).

use std::io::Write;

use anyhow::Context;

use super::{descriptor, write_json_with_defaults, RightsClient};
use crate::proto::v1 as pb;

/// Format name written at the top of every export file.
pub const EXPORT_FORMAT: &str = "consent-ledger/export/v1";

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportSummary {
    /// Entries written.
    pub entries: u64,
    /// Entries whose personal data was decrypted.
    pub with_personal_data: u64,
    /// Contact seq of the erasure, if the contact was erased.
    pub erased_at_contact_seq: Option<u64>,
}

/// Streams the export of `contact` into `out` as one JSON document:
/// `{"format", "header", "entries": [...], "state", "integrity"?}`, each part in the
/// protobuf JSON mapping of its message. Entries are written as they arrive, one per line,
/// so a history of any length never sits in memory.
pub async fn export(
    client: &mut RightsClient,
    contact: &str,
    kind: pb::ExportKind,
    out: &mut impl Write,
) -> anyhow::Result<ExportSummary> {
    use pb::export_part::Part;
    let mut stream = client
        .export_contact(pb::ExportContactRequest {
            contact_id: contact.to_owned(),
            kind: kind as i32,
        })
        .await?
        .into_inner();
    let mut summary = ExportSummary::default();
    write!(out, "{{\n\"format\": {:?},\n", EXPORT_FORMAT)?;
    let mut in_entries = false;
    while let Some(part) = stream.message().await? {
        match part.part.context("the server sent an empty export part")? {
            Part::Header(header) => {
                summary.erased_at_contact_seq = header.erasure.as_ref().map(|e| e.contact_seq);
                write!(out, "\"header\": ")?;
                write_json_with_defaults(out, "consentledger.v1.ExportHeader", &header, false)?;
                write!(out, ",\n\"entries\": [")?;
                in_entries = true;
            }
            Part::Entry(entry) => {
                if entry.personal_status == pb::PersonalDataStatus::Present as i32 {
                    summary.with_personal_data += 1;
                }
                writeln!(out, "{}", if summary.entries == 0 { "" } else { "," })?;
                write_compact(out, "consentledger.v1.ExportedEntry", &entry)?;
                summary.entries += 1;
            }
            Part::State(state) => {
                write!(out, "\n],\n\"state\": ")?;
                in_entries = false;
                write_json_with_defaults(out, "consentledger.v1.ContactSummary", &state, false)?;
            }
            Part::Integrity(bundle) => {
                write!(out, ",\n\"integrity\": ")?;
                write_compact(out, "consentledger.v1.Bundle", &bundle)?;
            }
        }
    }
    anyhow::ensure!(
        !in_entries,
        "the export ended before the contact's state was sent"
    );
    writeln!(out, "\n}}")?;
    out.flush()?;
    Ok(summary)
}

fn write_compact<T: prost::Message>(
    out: &mut impl Write,
    name: &str,
    message: &T,
) -> anyhow::Result<()> {
    let dynamic = prost_reflect::DynamicMessage::decode(
        descriptor(name)?,
        message.encode_to_vec().as_slice(),
    )?;
    serde_json::to_writer(out, &dynamic)?;
    Ok(())
}

/// One line per request, for a terminal: id, contact, kind, regime, status, received,
/// due, and days left (or how late).
pub fn request_table(requests: &[pb::DataSubjectRequest]) -> String {
    let mut table = format!(
        "{:<25} {:<20} {:<13} {:<8} {:<9} {:<10} {:<10} {}\n",
        "REQUEST", "CONTACT", "KIND", "REGIME", "STATUS", "RECEIVED", "DUE", "DAYS LEFT"
    );
    for r in requests {
        let kind = pb::RequestKind::try_from(r.kind)
            .map(|k| {
                k.as_str_name()
                    .trim_start_matches("REQUEST_KIND_")
                    .to_lowercase()
            })
            .unwrap_or_default();
        let regime = pb::RequestRegime::try_from(r.regime)
            .map(|k| {
                k.as_str_name()
                    .trim_start_matches("REQUEST_REGIME_")
                    .to_lowercase()
            })
            .unwrap_or_default();
        let status = pb::RequestStatus::try_from(r.status)
            .map(|k| {
                k.as_str_name()
                    .trim_start_matches("REQUEST_STATUS_")
                    .to_lowercase()
            })
            .unwrap_or_default();
        let left = if r.overdue {
            format!("OVERDUE by {}", -r.days_left)
        } else if r.acknowledgement_overdue {
            format!("{} (ACKNOWLEDGEMENT OVERDUE)", r.days_left)
        } else if r.closed_at.is_some() {
            (if r.closed_late { "closed late" } else { "-" }).to_owned()
        } else {
            r.days_left.to_string()
        };
        table.push_str(&format!(
            "{:<25} {:<20} {:<13} {:<8} {:<9} {:<10} {:<10} {}\n",
            r.request_id, r.contact_id, kind, regime, status, r.received_on, r.due_on, left
        ));
    }
    table
}
