//! `import`: a CSV of acquired contacts (a data vendor's export, an event's attendee list)
//! into the ledger. Each row becomes a contact with its country, its acquisition record and
//! its legal basis, and stays do-not-email until a rule allows it. Rows that cannot be
//! imported are listed with the reason; a rerun imports nothing twice.
//!
//! Contact ids come from a column, or are generated once and kept in the ids file (email →
//! contact id), which a rerun reads back. Idempotency keys derive from the contact id, so
//! no key or id carries a hash of anyone's email.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::Client;
use crate::proto::v1 as pb;
use crate::service::convert::to_timestamp;

/// Which CSV columns hold what. Defaults are the lower-case names below; `email` and
/// `country` are required, the rest optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    /// The contact's pseudonymous id; without it, ids are generated.
    pub id: Option<String>,
    /// Email address (required).
    pub email: String,
    /// Full name.
    pub name: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// ISO 3166-1 alpha-2 country (required).
    pub country: String,
    /// ISO 3166-2 subdivision.
    pub region: Option<String>,
    /// `b2b` or `b2c`; without it, `--audience` applies.
    pub audience: Option<String>,
    /// When the contact was acquired (RFC 3339 or YYYY-MM-DD).
    pub acquired_at: Option<String>,
    /// Form, list or campaign id at the source.
    pub source_reference: Option<String>,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            id: Some("id".into()),
            email: "email".into(),
            name: Some("name".into()),
            phone: Some("phone".into()),
            country: "country".into(),
            region: Some("region".into()),
            audience: Some("audience".into()),
            acquired_at: Some("acquired_at".into()),
            source_reference: Some("source_reference".into()),
        }
    }
}

/// The mapping file: `[columns]` naming the CSV's headers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    columns: Columns,
}

impl Columns {
    /// Reads a mapping file (`[columns]` table).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the mapping {}", path.display()))?;
        let file: MappingFile = toml::from_str(&text)
            .with_context(|| format!("mapping {} is not valid", path.display()))?;
        Ok(file.columns)
    }
}

/// What every imported row records besides its own columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// How the contacts were acquired.
    pub source_kind: pb::SourceKind,
    /// Who supplied them (required for purchased lists and vendor exports).
    pub supplier: Option<String>,
    /// Form, list or campaign id, for rows without their own.
    pub source_reference: String,
    /// The lawful basis recorded for `purpose`.
    pub basis: pb::LegalBasis,
    /// The purpose the basis is for (e.g. `storage`).
    pub purpose: String,
    /// Why the basis holds (e.g. the legitimate-interest assessment's reference).
    pub justification: String,
    /// B2B or B2C, for rows without an audience column.
    pub audience: pb::Audience,
    /// Acquisition time for rows without their own; `None` is the time of import.
    pub acquired_at: Option<DateTime<Utc>>,
    /// Rows sent per `AppendBatch` (three events each).
    pub batch_rows: usize,
    /// Which columns hold what.
    pub columns: Columns,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Data rows read.
    pub rows: u64,
    /// Rows recorded now.
    pub imported: u64,
    /// Rows an earlier run had already recorded.
    pub already_imported: u64,
    /// Rows not imported, by reason (the reasons without their details).
    pub rejected: BTreeMap<String, u64>,
}

impl ImportSummary {
    /// Rows not imported.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Contact ids already given to emails by earlier runs (the ids file), and new ones.
#[derive(Debug, Default)]
pub struct IdBook {
    by_email: HashMap<String, String>,
}

impl IdBook {
    /// Reads an ids file (`email,contact_id` with a header); a missing file is empty.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut book = Self::default();
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(book),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        for record in csv::Reader::from_reader(file).records() {
            let record = record.with_context(|| format!("ids file {}", path.display()))?;
            if let (Some(email), Some(id)) = (record.get(0), record.get(1)) {
                book.by_email.insert(normalise_email(email), id.to_owned());
            }
        }
        Ok(book)
    }
}

/// One row, validated locally, waiting for its batch.
struct PendingRow {
    line: u64,
    email: String,
    contact_id: String,
    new_id: bool,
}

impl std::fmt::Debug for PendingRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRow")
            .field("line", &self.line)
            .field("contact_id", &self.contact_id)
            .finish_non_exhaustive()
    }
}

/// Imports the CSV from `input`. Writes `email,contact_id` to `ids_out` for every id it
/// generates (before using it, so the file can be appended to across runs) and
/// `line,reason` to `rejects` for every row not imported; calls `progress` with the rows
/// done.
pub async fn import(
    client: &mut Client,
    options: &ImportOptions,
    input: impl Read,
    book: &mut IdBook,
    ids_out: &mut csv::Writer<impl Write>,
    rejects: &mut csv::Writer<impl Write>,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<ImportSummary> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let header = reader
        .headers()
        .context("the CSV has no header row")?
        .clone();
    let index = ColumnIndex::new(&options.columns, &header)?;
    let mut summary = ImportSummary::default();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut batch: Vec<(PendingRow, [pb::Event; 3])> = Vec::with_capacity(options.batch_rows);
    let mut record = csv::StringRecord::new();
    loop {
        let more = reader
            .read_record(&mut record)
            .context("the CSV is malformed")?;
        if more {
            summary.rows += 1;
            let line = record.position().map_or(summary.rows + 1, |p| p.line());
            match prepare_row(options, &index, &record, line, &mut seen, book) {
                Ok(row) => batch.push(row),
                Err(reason) => reject(&mut summary, rejects, line, &reason)?,
            }
        }
        if batch.len() >= options.batch_rows || (!more && !batch.is_empty()) {
            let rows = std::mem::take(&mut batch);
            // New ids are kept before they are used, so an interrupted run's rerun reuses
            // them and its retries are recognised.
            for (row, _) in rows.iter().filter(|(row, _)| row.new_id) {
                ids_out.write_record([row.email.as_str(), row.contact_id.as_str()])?;
                book.by_email
                    .insert(normalise_email(&row.email), row.contact_id.clone());
            }
            ids_out.flush()?;
            let done = rows.len() as u64;
            send_batch(client, rows, &mut summary, rejects).await?;
            progress(done);
        }
        if !more {
            break;
        }
    }
    ids_out.flush()?;
    rejects.flush()?;
    Ok(summary)
}

struct ColumnIndex {
    id: Option<usize>,
    email: usize,
    name: Option<usize>,
    phone: Option<usize>,
    country: usize,
    region: Option<usize>,
    audience: Option<usize>,
    acquired_at: Option<usize>,
    source_reference: Option<usize>,
}

impl ColumnIndex {
    fn new(columns: &Columns, header: &csv::StringRecord) -> anyhow::Result<Self> {
        let find = |name: &str| {
            header
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
        };
        let required = |key: &str, name: &str| {
            find(name).with_context(|| {
                format!("the CSV has no column {name:?} (mapping key columns.{key}); its columns are: {}", header.iter().collect::<Vec<_>>().join(", "))
            })
        };
        let optional = |name: &Option<String>| name.as_deref().and_then(find);
        Ok(Self {
            id: optional(&columns.id),
            email: required("email", &columns.email)?,
            name: optional(&columns.name),
            phone: optional(&columns.phone),
            country: required("country", &columns.country)?,
            region: optional(&columns.region),
            audience: optional(&columns.audience),
            acquired_at: optional(&columns.acquired_at),
            source_reference: optional(&columns.source_reference),
        })
    }
}

/// Builds a row's three events, or says why the row is not imported.
fn prepare_row(
    options: &ImportOptions,
    index: &ColumnIndex,
    record: &csv::StringRecord,
    line: u64,
    seen: &mut HashMap<String, u64>,
    book: &IdBook,
) -> Result<(PendingRow, [pb::Event; 3]), String> {
    let cell = |at: Option<usize>| {
        at.and_then(|i| record.get(i))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let email = cell(Some(index.email)).ok_or("missing email")?;
    let normalised = normalise_email(email);
    if !normalised.contains('@') {
        return Err("malformed email".into());
    }
    let country = cell(Some(index.country))
        .ok_or("missing country")?
        .to_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "bad country: {country:?} is not an ISO 3166-1 alpha-2 code"
        ));
    }
    if let Some(first) = seen.get(&normalised) {
        return Err(format!("duplicate: the same email as line {first}"));
    }
    let audience = match cell(index.audience).map(str::to_ascii_lowercase).as_deref() {
        None => options.audience,
        Some("b2b") => pb::Audience::B2b,
        Some("b2c") => pb::Audience::B2c,
        Some(other) => return Err(format!("bad audience {other:?}: use b2b or b2c")),
    };
    let acquired_at = match cell(index.acquired_at) {
        Some(text) => Some(
            parse_time(text)
                .ok_or_else(|| format!("bad acquired_at {text:?}: use RFC 3339 or YYYY-MM-DD"))?,
        ),
        None => options.acquired_at,
    };
    let (contact_id, new_id) = match (cell(index.id), book.by_email.get(&normalised)) {
        (Some(id), _) => (id.to_owned(), false),
        (None, Some(id)) => (id.clone(), false),
        (None, None) => (new_contact_id().map_err(|e| e.to_string())?, true),
    };
    seen.insert(normalised, line);
    let event = |suffix: &str, kind: pb::event::Kind| pb::Event {
        contact_id: contact_id.clone(),
        idempotency_key: format!("import:{contact_id}:{suffix}"),
        occurred_at: acquired_at.map(to_timestamp),
        kind: Some(kind),
    };
    let events = [
        event(
            "registered",
            pb::event::Kind::ContactRegistered(pb::ContactRegistered {
                country,
                region: cell(index.region).unwrap_or_default().to_uppercase(),
                relationship: Some(pb::Relationship {
                    audience: audience as i32,
                    lifecycle: pb::Lifecycle::Prospect as i32,
                }),
                personal: Some(pb::PersonalData {
                    email: email.to_owned(),
                    name: cell(index.name).unwrap_or_default().to_owned(),
                    phone: cell(index.phone).unwrap_or_default().to_owned(),
                    notes: String::new(),
                }),
                suppression_override: None,
            }),
        ),
        event(
            "acquired",
            pb::event::Kind::AcquisitionRecorded(pb::AcquisitionRecorded {
                source_kind: options.source_kind as i32,
                supplier: options.supplier.clone().unwrap_or_default(),
                source_reference: cell(index.source_reference)
                    .unwrap_or(&options.source_reference)
                    .to_owned(),
                notice_sent_at: None,
            }),
        ),
        event(
            "basis",
            pb::event::Kind::LegalBasisRecorded(pb::LegalBasisRecorded {
                purpose: options.purpose.clone(),
                basis: options.basis as i32,
                justification: options.justification.clone(),
            }),
        ),
    ];
    Ok((
        PendingRow {
            line,
            email: email.to_owned(),
            contact_id,
            new_id,
        },
        events,
    ))
}

async fn send_batch(
    client: &mut Client,
    rows: Vec<(PendingRow, [pb::Event; 3])>,
    summary: &mut ImportSummary,
    rejects: &mut csv::Writer<impl Write>,
) -> anyhow::Result<()> {
    let (rows, events): (Vec<PendingRow>, Vec<[pb::Event; 3]>) = rows.into_iter().unzip();
    let events: Vec<pb::Event> = events.into_iter().flatten().collect();
    let results = client
        .append_batch(pb::AppendBatchRequest { events })
        .await?
        .into_inner()
        .results;
    if results.len() != rows.len() * 3 {
        bail!(
            "the server answered {} results for {} events",
            results.len(),
            rows.len() * 3
        );
    }
    for (row, outcomes) in rows.into_iter().zip(results.chunks(3)) {
        use pb::append_result::Outcome;
        // The registration decides; if it was refused, the row's other events were too.
        let failure = outcomes.iter().find_map(|r| match &r.outcome {
            Some(Outcome::Error(e)) => Some(e.message.clone()),
            None => Some("no result".into()),
            Some(Outcome::Receipt(_)) => None,
        });
        match failure {
            Some(message) => reject(summary, rejects, row.line, &message)?,
            None => {
                let replayed = outcomes.iter().all(
                    |r| matches!(&r.outcome, Some(Outcome::Receipt(receipt)) if receipt.replayed),
                );
                if replayed {
                    summary.already_imported += 1;
                } else {
                    summary.imported += 1;
                }
            }
        }
    }
    Ok(())
}

fn reject(
    summary: &mut ImportSummary,
    rejects: &mut csv::Writer<impl Write>,
    line: u64,
    reason: &str,
) -> anyhow::Result<()> {
    rejects.write_record([line.to_string().as_str(), reason])?;
    *summary.rejected.entry(reason_kind(reason)).or_default() += 1;
    Ok(())
}

/// The kind of a rejection, for the summary: the reason up to its first `:`, or the field
/// a server message names.
fn reason_kind(reason: &str) -> String {
    if reason.contains("suppressed by the erasure") {
        return "suppressed (erased identity)".into();
    }
    reason.split(':').next().unwrap_or(reason).trim().to_owned()
}

fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
}

/// A new pseudonymous id: `imp-` and 16 random hex digits.
fn new_contact_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for an id: {e}"))?;
    Ok(format!("imp-{}", hex::encode(bytes)))
}

/// Imports the CSV file `file`: reads the ids file `ids` back (appending new ids to it,
/// created with mode 0600 since it links ids to emails), writes the rejects to `rejects`,
/// and shows a progress bar with rate and ETA on a terminal.
pub async fn import_file(
    client: &mut Client,
    options: &ImportOptions,
    file: &Path,
    ids: &Path,
    rejects: &Path,
) -> anyhow::Result<ImportSummary> {
    let mut book = IdBook::load(ids)?;
    let mut ids_options = std::fs::OpenOptions::new();
    ids_options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut ids_options, 0o600);
    let ids_file = ids_options
        .open(ids)
        .with_context(|| format!("cannot open {}", ids.display()))?;
    let ids_is_new = ids_file.metadata()?.len() == 0;
    let mut ids_out = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(ids_file);
    if ids_is_new {
        ids_out.write_record(["email", "contact_id"])?;
    }
    let mut rejects_out = csv::Writer::from_path(rejects)
        .with_context(|| format!("cannot create {}", rejects.display()))?;
    rejects_out.write_record(["line", "reason"])?;
    let bar = indicatif::ProgressBar::new(count_rows(file)?).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  ETA {eta}")?,
    );
    let input = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let summary = import(
        client,
        options,
        input,
        &mut book,
        &mut ids_out,
        &mut rejects_out,
        |done| bar.inc(done),
    )
    .await?;
    bar.finish_and_clear();
    Ok(summary)
}

/// Counts the data rows of a CSV file (for the progress bar's length and ETA).
fn count_rows(path: &Path) -> anyhow::Result<u64> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = csv::Reader::from_reader(std::io::BufReader::new(file));
    let mut record = csv::ByteRecord::new();
    let mut rows = 0;
    while reader.read_byte_record(&mut record)? {
        rows += 1;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_both_forms() {
        assert_eq!(
            parse_time("2026-03-04").map(|t| t.to_rfc3339()),
            Some("2026-03-04T00:00:00+00:00".into())
        );
        assert!(parse_time("2026-03-04T10:00:00+02:00").is_some());
        assert!(parse_time("04/03/2026").is_none());
    }

    #[test]
    fn rejection_kinds_group_the_summary() {
        assert_eq!(
            reason_kind("duplicate: the same email as line 3"),
            "duplicate"
        );
        assert_eq!(
            reason_kind(
                "contact_registered.personal: suppressed by the erasure recorded at seq 9: …"
            ),
            "suppressed (erased identity)"
        );
    }
}
