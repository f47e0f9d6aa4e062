//! The eligibility commands: one explained decision (`check`), a campaign list streamed
//! through `Screen` (`screen`), and the policy packs (`policy check|activate|show|list`).

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{descriptor, EligibilityClient};
use crate::policy::{PolicyError, PolicyPack};
use crate::proto::v1 as pb;
use crate::service::convert::to_timestamp;

/// Most contact ids sent in one `ScreenRequest`.
pub const SCREEN_MESSAGE_IDS: usize = 1000;
/// Request messages read ahead of what the connection has sent: with the server's own
/// buffers and HTTP/2 flow control, this bounds the memory a screening of any length uses.
const SCREEN_READ_AHEAD: usize = 4;

/// What to decide: a purpose on a channel, now or at a past time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A purpose of the policy, e.g. `email_marketing`.
    pub purpose: String,
    /// A channel the policy decides the purpose on, e.g. `email`.
    pub channel: String,
    /// The time to decide for; `None` is now.
    pub at: Option<DateTime<Utc>>,
    /// With `at`: decide from what the ledger had recorded by then
    /// (`TIME_BASIS_RECORDED`) instead of every fact that had happened by then.
    pub recorded: bool,
    /// `Screen` only: decisions without reasons and evidence.
    pub brief: bool,
}

impl Target {
    fn time_basis(&self) -> pb::TimeBasis {
        match (self.at, self.recorded) {
            (None, _) => pb::TimeBasis::Unspecified,
            (Some(_), true) => pb::TimeBasis::Recorded,
            (Some(_), false) => pb::TimeBasis::Effective,
        }
    }

    /// The `Check` request for one contact.
    pub fn check_request(&self, contact_id: &str) -> pb::CheckRequest {
        pb::CheckRequest {
            contact_id: contact_id.to_owned(),
            purpose: self.purpose.clone(),
            channel: self.channel.clone(),
            at: self.at.map(to_timestamp),
            time_basis: self.time_basis() as i32,
        }
    }

    /// The target of a `Screen` call (its first message).
    pub fn screen_target(&self) -> pb::ScreenTarget {
        pb::ScreenTarget {
            purpose: self.purpose.clone(),
            channel: self.channel.clone(),
            at: self.at.map(to_timestamp),
            time_basis: self.time_basis() as i32,
            brief: self.brief,
        }
    }
}

/// Contact ids read one per line: surrounding whitespace (and a CR) is trimmed, and blank
/// lines and lines starting with `#` are skipped. Reads one line at a time, so a list of
/// any length is never held in memory. Stops after the first error, which names the line.
#[derive(Debug)]
pub struct ContactIds<R> {
    reader: R,
    buffer: String,
    line: u64,
    failed: bool,
}

impl<R: BufRead> ContactIds<R> {
    /// Ids from `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buffer: String::new(),
            line: 0,
            failed: false,
        }
    }
}

impl<R: BufRead> Iterator for ContactIds<R> {
    type Item = anyhow::Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            self.buffer.clear();
            self.line += 1;
            match self.reader.read_line(&mut self.buffer) {
                Ok(0) => return None,
                Ok(_) => {
                    let id = self.buffer.trim();
                    if id.is_empty() || id.starts_with('#') {
                        continue;
                    }
                    return Some(Ok(id.to_owned()));
                }
                Err(err) => {
                    self.failed = true;
                    return Some(Err(
                        anyhow::Error::new(err).context(format!("line {}", self.line))
                    ));
                }
            }
        }
    }
}

/// One brief decision as a JSON line: exactly these four fields, in this order.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct BriefDecision<'a> {
    contact_id: &'a str,
    allowed: bool,
    rule_id: &'a str,
    regime: &'static str,
}

impl<'a> From<&'a pb::Decision> for BriefDecision<'a> {
    fn from(decision: &'a pb::Decision) -> Self {
        Self {
            contact_id: &decision.contact_id,
            allowed: decision.allowed,
            rule_id: &decision.rule_id,
            regime: pb::Regime::try_from(decision.regime)
                .unwrap_or(pb::Regime::Unspecified)
                .as_str_name(),
        }
    }
}

/// Writes messages of one type as JSON Lines: one compact protobuf-JSON object per line,
/// every field included (`"allowed": false` is written, not left out).
#[derive(Debug, Clone)]
pub struct JsonLines {
    descriptor: MessageDescriptor,
}

impl JsonLines {
    /// A writer for messages named `name` in the proto package, e.g.
    /// `consentledger.v1.Decision`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        Ok(Self {
            descriptor: descriptor(name)?,
        })
    }

    /// Writes one message and a newline.
    pub fn write<T: Message>(&self, out: &mut impl Write, message: &T) -> anyhow::Result<()> {
        let dynamic =
            DynamicMessage::decode(self.descriptor.clone(), message.encode_to_vec().as_slice())?;
        let options = prost_reflect::SerializeOptions::new().skip_default_fields(false);
        dynamic.serialize_with_options(&mut serde_json::Serializer::new(&mut *out), &options)?;
        out.write_all(b"\n")?;
        Ok(())
    }
}

/// Streams the contact ids of `input` (see [`ContactIds`]) through `Screen` in messages of
/// at most [`SCREEN_MESSAGE_IDS`] ids, writes each decision to `out` as a JSON line as it
/// arrives, and returns the server's summary. The input is read on its own thread through
/// a bounded channel, so memory stays bounded whatever its length; an input that cannot
/// be read fails the command after the decisions for the ids read before it.
pub async fn screen(
    client: &mut EligibilityClient,
    target: &Target,
    input: Box<dyn BufRead + Send>,
    out: &mut impl Write,
) -> anyhow::Result<pb::ScreenSummary> {
    let (sender, receiver) = mpsc::channel(SCREEN_READ_AHEAD);
    // The target goes first and alone, so a bad target fails before any input is read.
    sender
        .try_send(pb::ScreenRequest {
            target: Some(target.screen_target()),
            contact_ids: Vec::new(),
        })
        .context("the request channel is full before anything was sent")?;
    // A plain thread, not a blocking task: a read blocked on a terminal must not keep the
    // process alive once the command has failed.
    let reader = std::thread::Builder::new()
        .name("screen-input".into())
        .spawn(move || feed(input, &sender))
        .context("cannot start the input reader")?;
    let mut responses = client
        .screen(ReceiverStream::new(receiver))
        .await?
        .into_inner();
    let json = JsonLines::new("consentledger.v1.Decision")?;
    let brief = target.brief;
    let mut summary = None;
    let mut decided = 0u64;
    while let Some(response) = responses.message().await? {
        match response.kind {
            Some(pb::screen_response::Kind::Decisions(mut batch)) => {
                let frame = batch.frame.take().unwrap_or_default();
                for decision in &mut batch.decisions {
                    if brief {
                        serde_json::to_writer(&mut *out, &BriefDecision::from(&*decision))?;
                        out.write_all(b"\n").map_err(anyhow::Error::from)
                    } else {
                        // Each line reads as a `Check` answer does.
                        frame.fill(decision);
                        json.write(out, decision)
                    }
                    .context("cannot write the decisions")?;
                }
                decided += batch.decisions.len() as u64;
                out.flush().context("cannot write the decisions")?;
            }
            Some(pb::screen_response::Kind::Summary(s)) => summary = Some(s),
            None => {}
        }
    }
    // The request stream has ended (the server answered with its summary), so the reader
    // is done.
    let read = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the input reader panicked"))?
        .with_context(|| format!("cannot read the contact ids (after {decided} decisions)"))?;
    let summary = summary.context("the server ended the stream without a summary")?;
    anyhow::ensure!(
        summary.contacts == read && decided == read,
        "{read} contact ids were sent, but the server decided {decided} and its summary counts {}",
        summary.contacts
    );
    Ok(summary)
}

/// Reads ids and sends them in messages of [`SCREEN_MESSAGE_IDS`]; returns how many were
/// sent. Stops quietly if the call has ended (the receiver is gone).
fn feed(input: impl BufRead, sender: &mpsc::Sender<pb::ScreenRequest>) -> anyhow::Result<u64> {
    let mut sent = 0u64;
    let mut batch = Vec::with_capacity(SCREEN_MESSAGE_IDS);
    let mut ids = ContactIds::new(input);
    loop {
        let (next, failed) = match ids.next().transpose() {
            Ok(next) => (next, None),
            Err(err) => (None, Some(err)),
        };
        let end = next.is_none();
        batch.extend(next);
        // At the end, or before failing, the ids read so far are still screened.
        if batch.len() == SCREEN_MESSAGE_IDS || (end && !batch.is_empty()) {
            let contact_ids = std::mem::replace(&mut batch, Vec::with_capacity(SCREEN_MESSAGE_IDS));
            let count = contact_ids.len() as u64;
            let message = pb::ScreenRequest {
                target: None,
                contact_ids,
            };
            if sender.blocking_send(message).is_err() {
                return Ok(sent);
            }
            sent += count;
        }
        if let Some(err) = failed {
            return Err(err);
        }
        if end {
            return Ok(sent);
        }
    }
}

/// The screening summary for people: totals, then the contacts per deciding rule, most
/// frequent first.
pub fn summary_text(target: &Target, summary: &pb::ScreenSummary) -> String {
    let mut text = format!(
        "screened {} contacts for {} on {}{} under policy {} (tree size {}): {} allowed, {} denied",
        summary.contacts,
        target.purpose,
        target.channel,
        target.at.map_or(String::new(), |at| format!(
            " at {} ({})",
            at.to_rfc3339(),
            if target.recorded {
                "as recorded then"
            } else {
                "effective"
            }
        )),
        summary.policy_version,
        summary.tree_size,
        summary.allowed,
        summary.denied
    );
    let mut rules: Vec<(&String, &u64)> = summary.by_rule.iter().collect();
    rules.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let width = rules.iter().map(|(rule, _)| rule.len()).max().unwrap_or(0);
    for (rule, count) in rules {
        text.push_str(&format!("\n  {rule:<width$}  {count}"));
    }
    text
}

/// A policy-pack error located in its file, `FILE:line N: problem`.
pub fn located(path: &Path, err: &PolicyError) -> String {
    format!("{}:{err}", path.display())
}

/// What `policy check` prints for a valid pack: its version, digest, purposes, countries
/// and the regime for countries it does not list.
pub fn describe_pack(pack: &PolicyPack) -> String {
    let purposes: Vec<&str> = pack.purposes.keys().map(String::as_str).collect();
    let countries: Vec<&str> = pack.countries.keys().map(|c| c.as_str()).collect();
    let mut text = format!("version          {}\n", pack.version);
    if let Some(description) = &pack.description {
        text.push_str(&format!("description      {description}\n"));
    }
    text.push_str(&format!(
        "sha256           {}\npurposes         {}: {}\ncountries        {}: {}\nunknown country  {}",
        hex::encode(pack.sha256),
        purposes.len(),
        purposes.join(", "),
        countries.len(),
        countries.join(" "),
        pack.unknown_country
    ));
    text
}

/// One line about a policy pack for `policy show`: version, digest, and its activation.
pub fn policy_info(policy: &pb::Policy) -> String {
    let activated_at = policy
        .activated_at
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
        .map_or_else(|| "an unknown time".to_owned(), |t| t.to_rfc3339());
    format!(
        "policy {}{}, sha256 {}, activated at seq {} on {}",
        policy.version,
        if policy.active {
            " (active)"
        } else {
            " (not active)"
        },
        hex::encode(&policy.sha256),
        policy.activated_seq,
        activated_at
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Vec<String> {
        ContactIds::new(text.as_bytes())
            .collect::<anyhow::Result<_>>()
            .unwrap()
    }

    #[test]
    fn ids_are_trimmed_and_blank_lines_and_comments_skipped() {
        assert_eq!(
            ids("# campaign 2026-11\ncrm-1\n\n  crm-2  \r\n\t\n   # indented comment\ncrm-3\r\n\ncrm-4"),
            ["crm-1", "crm-2", "crm-3", "crm-4"]
        );
        assert!(ids("").is_empty());
        assert!(ids("\n\n# nothing\n   \n").is_empty());
        // An id is kept whole: only the ends of the line are trimmed.
        assert_eq!(ids("crm-1 # not a comment\n"), ["crm-1 # not a comment"]);
    }

    #[test]
    fn a_line_that_is_not_text_is_an_error_naming_it() {
        let mut ids = ContactIds::new(&b"crm-1\n\ncrm-\xff\ncrm-3\n"[..]);
        assert_eq!(ids.next().unwrap().unwrap(), "crm-1");
        let err = ids.next().unwrap().unwrap_err();
        assert!(format!("{err:#}").starts_with("line 3: "), "{err:#}");
        assert!(ids.next().is_none(), "reading stops at the first error");
    }

    #[test]
    fn the_ids_are_sent_in_messages_of_at_most_a_thousand() {
        let text: String = (0..2500).map(|n| format!("crm-{n}\n# comment\n")).collect();
        let (sender, mut receiver) = mpsc::channel(8);
        let reader = std::thread::spawn(move || feed(text.as_bytes(), &sender));
        let mut sizes = Vec::new();
        let mut last = None;
        while let Some(message) = receiver.blocking_recv() {
            assert!(message.target.is_none());
            sizes.push(message.contact_ids.len());
            last = message.contact_ids.last().cloned();
        }
        assert_eq!(reader.join().unwrap().unwrap(), 2500);
        assert_eq!(sizes, [1000, 1000, 500]);
        assert_eq!(last.as_deref(), Some("crm-2499"));
    }

    #[test]
    fn the_ids_read_before_an_unreadable_line_are_still_sent() {
        let (sender, mut receiver) = mpsc::channel(8);
        let reader = std::thread::spawn(move || feed(&b"crm-1\ncrm-2\n\xff\ncrm-3\n"[..], &sender));
        let message = receiver.blocking_recv().unwrap();
        assert_eq!(message.contact_ids, ["crm-1", "crm-2"]);
        assert!(receiver.blocking_recv().is_none());
        let err = reader.join().unwrap().unwrap_err();
        assert!(format!("{err:#}").starts_with("line 3: "), "{err:#}");
    }

    #[test]
    fn the_time_basis_follows_the_flags() {
        let mut target = Target {
            purpose: "email_marketing".into(),
            channel: "email".into(),
            at: None,
            recorded: false,
            brief: false,
        };
        assert_eq!(target.check_request("c").time_basis, 0);
        target.at = Some(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        assert_eq!(
            target.check_request("c").time_basis,
            pb::TimeBasis::Effective as i32
        );
        target.recorded = true;
        assert_eq!(
            target.screen_target().time_basis,
            pb::TimeBasis::Recorded as i32
        );
    }
}
