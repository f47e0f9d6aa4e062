//! The `consent-ledger` binary: parses the command line, sets up tracing, and calls the
//! library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, FromArgMatches, Parser, Subcommand};
use consent_ledger::cli::{self, to_json};
use consent_ledger::config::{LimitSettings, LogFormat, Settings, TlsSettings};
use consent_ledger::proto::v1 as pb;
use consent_ledger::service::auth::{new_token, Role};
use tracing_subscriber::EnvFilter;

/// An append-only, hash-chained ledger of legal bases, consent and data-subject rights,
/// served over gRPC.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    ///
    /// Example: consent-ledger serve --listen 127.0.0.1:50051 --data-dir ./data
    Serve(ServeArgs),
    /// Append events and read the ledger through a running server.
    ///
    /// Example: consent-ledger ledger history crm-1
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Create bearer tokens for callers.
    ///
    /// Example: consent-ledger token create --name crm-sync --role writer
    #[command(subcommand)]
    Token(TokenCommand),
    /// Measure a running server under load.
    ///
    /// Example: consent-ledger bench append --concurrency 64 --connections 4 --duration 10
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Proofs, checkpoints, full verification and offline bundles, for auditors.
    ///
    /// Example: consent-ledger audit verify-ledger
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Decide whether a purpose may be carried out on a channel for one contact, and print
    /// the explained decision as JSON.
    ///
    /// Decides for now, or for a past time with --at. The JSON holds the deciding rule,
    /// the reasons and the entries relied on. Exits 0 whether the purpose is allowed or
    /// denied (see `allowed` and `ruleId`); 1 if the server refuses the question (unknown
    /// contact, purpose or channel).
    ///
    /// Example: consent-ledger check crm-1 --purpose email_marketing --channel email
    Check {
        /// The contact id.
        contact_id: String,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        server: Server,
    },
    /// Screen a campaign list: one decision per contact id as JSON Lines on stdout, then a
    /// summary on stderr.
    ///
    /// Contact ids are read one per line (surrounding spaces trimmed; blank lines and lines
    /// starting with '#' skipped) and streamed to the server in messages of 1000, so lists
    /// of any length are never held in memory. Decisions come back in input order; the
    /// summary counts allowed, denied and contacts per deciding rule.
    ///
    /// Example: consent-ledger screen --purpose email_marketing --channel email --input campaign.txt > decisions.jsonl
    Screen {
        #[command(flatten)]
        target: TargetArgs,
        /// File of contact ids; `-` or nothing reads standard input.
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// Decisions with the contact, outcome, rule and regime only (no reasons or
        /// evidence): for lists of millions; `check` one contact for its explanation.
        #[arg(long)]
        brief: bool,
        #[command(flatten)]
        server: Server,
    },
    /// Policy packs: check one offline, activate one, show or list those activated.
    ///
    /// Example: consent-ledger policy check deploy/policy/conservative.toml
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check a configuration file without starting the server: every key, the files it
    /// names (callers, policy, keys, TLS) parsed; prints the effective configuration
    /// (file, then environment overrides, then defaults), secrets masked.
    ///
    /// Example: consent-ledger config check deploy/consent-ledger.toml
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Take an online, consistent backup into a new directory on the server while appends
    /// continue (role admin). Keys are not copied: back up the master key and the signing
    /// key apart.
    ///
    /// Example: consent-ledger backup --to /var/backups/consent-ledger/2026-11-25
    Backup {
        /// Absolute path of a new directory on the server's filesystem.
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        server: Server,
    },
    /// Restore a backup into a new data directory, offline, and prove it: the checkpoint
    /// signed at backup time, the consistency proof from the backup's tree to it, the
    /// restored root, and a full re-verification. Exits 1 if anything fails.
    ///
    /// Example: consent-ledger restore --from /var/backups/consent-ledger/2026-11-25 --data-dir ./data-restored --key ledger.vkey
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
        /// The new data directory (must not exist, or be empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// The ledger's verifier key (text or file); without it, the key the backup names.
        #[arg(long)]
        key: Option<String>,
    },
    /// Print a shell completion script.
    ///
    /// Example: consent-ledger completions bash > /etc/bash_completion.d/consent-ledger
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Ask a server whether it is serving (gRPC health); exits 0 if it is, 1 if not. For
    /// container health checks.
    ///
    /// Example: consent-ledger health --server http://127.0.0.1:50051
    Health {
        #[command(flatten)]
        server: Server,
    },
    /// Import acquired contacts from a CSV (a data vendor's export, an event's list).
    ///
    /// Each row becomes a contact with its country, an acquisition record (when, from
    /// whom) and the legal basis given, and stays do-not-email until a rule allows it.
    /// Rows with a bad country, a missing email, a duplicate email, or an identity
    /// suppressed by an erasure are not imported and go to the rejects file with the
    /// reason. Generated contact ids go to the ids file, which a rerun reads back: a rerun
    /// of the same file imports nothing twice. Columns: email, country (required); id,
    /// name, phone, region, audience, acquired_at, source_reference (optional), renamed
    /// with --mapping (a TOML `[columns]` table, e.g. `email = "E-Mail"`).
    ///
    /// Example: consent-ledger import leads.csv --source data_vendor --supplier "Acme Data" --basis legitimate_interests --purpose storage --justification "LIA-2026-07"
    Import {
        /// The CSV file (with a header row).
        file: PathBuf,
        /// How the contacts were acquired.
        #[arg(long, value_enum)]
        source: SourceArg,
        /// Who supplied them (required for purchased_list and data_vendor).
        #[arg(long)]
        supplier: Option<String>,
        /// Form, list or campaign id for rows without a source_reference column
        /// [default: the file's name].
        #[arg(long)]
        source_reference: Option<String>,
        /// The lawful basis recorded for --purpose.
        #[arg(long, value_enum)]
        basis: BasisArg,
        /// The purpose the basis is for, e.g. storage.
        #[arg(long)]
        purpose: String,
        /// Why the basis holds, e.g. the legitimate-interest assessment's reference.
        #[arg(long)]
        justification: Option<String>,
        /// B2B or B2C for rows without an audience column.
        #[arg(long, value_enum, default_value = "b2b")]
        audience: AudienceArg,
        /// Acquisition time for rows without an acquired_at column (RFC 3339)
        /// [default: now].
        #[arg(long)]
        acquired_at: Option<chrono::DateTime<chrono::Utc>>,
        /// Column names (TOML `[columns]` table).
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Email → contact id of every id generated [default: FILE.ids.csv].
        #[arg(long)]
        ids: Option<PathBuf>,
        /// Rows not imported, with the reason [default: FILE.rejects.csv].
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// Rows per AppendBatch (three events each).
        #[arg(long, default_value_t = 500)]
        batch_rows: usize,
        #[command(flatten)]
        server: Server,
    },
    /// Data-subject requests, for DPOs: open one, record each step, list what is due.
    ///
    /// Deadlines are computed by the server from the regime. A step the law or the
    /// request's lifecycle does not allow is refused with the rule it breaks.
    ///
    /// Example: consent-ledger requests list --overdue
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Export everything held on a contact as one JSON document (GDPR Art. 15): every
    /// entry with its personal data decrypted, the current state with its requests, and a
    /// bundle that `audit verify` checks offline. With --portability, only the data the
    /// person provided (Art. 20).
    ///
    /// Example: consent-ledger export crm-1 -o crm-1-access.json
    Export {
        /// The contact id.
        contact_id: String,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Only what the person provided, without the integrity bundle (Art. 20).
        #[arg(long)]
        portability: bool,
        #[command(flatten)]
        server: Server,
    },
    /// Erase a contact's personal data for good (GDPR Art. 17): its data key and sealed
    /// records are destroyed and purged from the storage files, its email and phone are
    /// suppressed against re-registration, and the ledger records the erasure. The
    /// entries stay, so the ledger still verifies.
    ///
    /// Example: consent-ledger erase crm-1 --reason "Art. 17 request" --request dsr-0a1b2c3d4e5f60718293
    Erase {
        /// The contact id.
        contact_id: String,
        /// Why the data is erased.
        #[arg(long)]
        reason: String,
        /// The erasure request this fulfils (complete it afterwards with `requests complete`).
        #[arg(long)]
        request: Option<String>,
        /// Makes a retry safe.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// Print the verifier key of the checkpoint signing key kept on this machine, in
    /// signed-note form (`name+keyid+base64`). Give it to auditors.
    ///
    /// Example: consent-ledger public-key --data-dir ./data > ledger.vkey
    PublicKey {
        /// The server's data directory (holds checkpoint-signing.key).
        #[arg(long, env = "CONSENT_LEDGER_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// The signing key file, if it is not in the data directory.
        #[arg(long, env = "CONSENT_LEDGER_CHECKPOINT_KEY")]
        key_file: Option<PathBuf>,
    },
    /// Rewrite every table file of the ledger with the current storage settings, and print
    /// the size of the table files before and after.
    ///
    /// Ledgers written before entries were compressed keep their existing files as they
    /// are (compaction moves entries down unchanged); this compresses them, typically to
    /// two fifths. It reads and writes the whole ledger once and needs free space for a
    /// copy of it. By default the running server does it while serving (role admin); with
    /// --data-dir it runs on a stopped server's data directory instead.
    ///
    /// Example: consent-ledger compact --server http://127.0.0.1:50051
    Compact {
        /// Compact this data directory offline (the server must be stopped: it locks it).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print a signed checkpoint (the note itself, to save in a file).
    ///
    /// Example: consent-ledger audit checkpoint --fresh > checkpoint-2026-11-25.txt
    Checkpoint {
        /// Sign the current tree first if the latest checkpoint is older.
        #[arg(long)]
        fresh: bool,
        /// The checkpoint of exactly this tree size instead of the latest.
        #[arg(long)]
        tree_size: Option<u64>,
        #[command(flatten)]
        server: Server,
    },
    /// List every checkpoint issued, one JSON object per line.
    ///
    /// Example: consent-ledger audit checkpoints --from-size 1000
    Checkpoints {
        /// Checkpoints of at least this tree size.
        #[arg(long, default_value_t = 0)]
        from_size: u64,
        #[command(flatten)]
        server: Server,
    },
    /// Fetch an entry's receipt proof (a checkpoint and the inclusion proof against it),
    /// check it with the verifier key, and print it as JSON to keep as evidence.
    ///
    /// Example: consent-ledger audit inclusion 42 --verifier-key ledger.vkey > receipt-42.json
    Inclusion {
        /// Global sequence number of the entry.
        seq: u64,
        /// Verifier key, or a file holding it.
        #[arg(long, env = "CONSENT_LEDGER_VERIFIER_KEY")]
        verifier_key: String,
        #[command(flatten)]
        server: Server,
    },
    /// Prove that nothing was rewritten since an old checkpoint: check both signatures,
    /// fetch the consistency proof and check it. Without NEW, uses a fresh checkpoint.
    ///
    /// Example: consent-ledger audit consistency old.txt new.txt --verifier-key ledger.vkey
    Consistency {
        /// A checkpoint saved earlier.
        old: PathBuf,
        /// A later checkpoint; omitted, the server signs the current tree.
        new: Option<PathBuf>,
        /// Verifier key, or a file holding it.
        #[arg(long, env = "CONSENT_LEDGER_VERIFIER_KEY")]
        verifier_key: String,
        #[command(flatten)]
        server: Server,
    },
    /// Re-hash and re-link the whole ledger on the server; progress on stderr, the
    /// result as JSON on stdout; exits 1 if anything is damaged.
    ///
    /// Example: consent-ledger audit verify-ledger --trusted-checkpoint old.txt
    VerifyLedger {
        /// A checkpoint saved earlier that the ledger must still contain.
        #[arg(long)]
        trusted_checkpoint: Option<PathBuf>,
        #[command(flatten)]
        server: Server,
    },
    /// Export one contact's entries with inclusion proofs against one signed checkpoint.
    ///
    /// Example: consent-ledger audit bundle crm-1 -o crm-1.bundle.json
    Bundle {
        /// The contact id.
        contact_id: String,
        /// Where to write the bundle (JSON).
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        server: Server,
    },
    /// Verify a bundle offline: no server, no data directory. Exits 1 if it fails.
    ///
    /// Example: consent-ledger audit verify crm-1.bundle.json --key ledger.vkey
    Verify {
        /// The bundle file.
        bundle: PathBuf,
        /// Verifier key, or a file holding it (also --verifier-key).
        #[arg(
            long = "key",
            visible_alias = "verifier-key",
            env = "CONSENT_LEDGER_VERIFIER_KEY"
        )]
        verifier_key: String,
    },
}

/// What an eligibility question is about: a purpose on a channel, now or at a time.
#[derive(Debug, Args)]
struct TargetArgs {
    /// A purpose of the active policy, e.g. email_marketing.
    #[arg(long)]
    purpose: String,
    /// A channel the policy decides the purpose on, e.g. email.
    #[arg(long)]
    channel: String,
    /// Decide for this past time (RFC 3339) instead of now, from every fact that had
    /// happened by then, under the policy then in force.
    #[arg(long)]
    at: Option<chrono::DateTime<chrono::Utc>>,
    /// With --at: decide only from what the ledger had recorded by then ("what would we
    /// have answered at that time?").
    #[arg(long, requires = "at")]
    recorded: bool,
}

impl TargetArgs {
    fn target(self) -> cli::eligibility::Target {
        cli::eligibility::Target {
            purpose: self.purpose,
            channel: self.channel,
            at: self.at,
            recorded: self.recorded,
            brief: false,
        }
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and print the effective configuration.
    ///
    /// Example: consent-ledger config check /etc/consent-ledger/consent-ledger.toml
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RequestsCommand {
    /// Open a request; prints it with the id and deadlines the server assigned.
    ///
    /// Example: consent-ledger requests open crm-1 --kind erasure --regime gdpr --requester-email jane@example.com
    Open {
        /// The contact the request is about.
        contact_id: String,
        /// The right exercised.
        #[arg(long, value_enum)]
        kind: RequestKindArg,
        /// The law whose deadlines apply.
        #[arg(long, value_enum)]
        regime: RegimeArg,
        /// When it was received (RFC 3339); default now.
        #[arg(long)]
        received_at: Option<chrono::DateTime<chrono::Utc>>,
        /// How it arrived: email, web_form, letter, phone, in_person or other.
        #[arg(long, default_value = "email")]
        channel: String,
        /// The requester's email (sealed; erased with the contact).
        #[arg(long)]
        requester_email: Option<String>,
        /// The requester's name (sealed; erased with the contact).
        #[arg(long)]
        requester_name: Option<String>,
        /// Objection requests: direct_marketing, profiling, or purpose (with --objection-purpose).
        #[arg(long, value_enum)]
        objection_scope: Option<ObjectionScopeArg>,
        /// Objection requests with --objection-scope purpose: the purpose.
        #[arg(long)]
        objection_purpose: Option<String>,
        /// Restriction requests: the Art. 18(1) ground.
        #[arg(long, value_enum)]
        restriction_ground: Option<RestrictionGroundArg>,
        /// Makes a retry safe: the same key opens the same request once.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// List requests: open ones in due-date order by default.
    ///
    /// Example: consent-ledger requests list --overdue
    List {
        /// Only open requests past their due date.
        #[arg(long)]
        overdue: bool,
        /// Only open requests due within this many days.
        #[arg(long, value_name = "DAYS")]
        due_within: Option<u32>,
        /// Closed (completed or rejected) requests instead of open ones.
        #[arg(long, conflicts_with = "all")]
        closed: bool,
        /// Every request, open or closed.
        #[arg(long)]
        all: bool,
        /// Only this kind.
        #[arg(long, value_enum)]
        kind: Option<RequestKindArg>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: Server,
    },
    /// Show one request.
    ///
    /// Example: consent-ledger requests get dsr-2d9d99192f593cbb20e0
    Get {
        /// The request id.
        request_id: String,
        #[command(flatten)]
        server: Server,
    },
    /// Record that the requester's identity was verified.
    ///
    /// Example: consent-ledger requests verify dsr-… --method "reply from the registered address"
    Verify {
        /// The request id.
        request_id: String,
        /// How the identity was verified.
        #[arg(long)]
        method: String,
        #[command(flatten)]
        server: Server,
    },
    /// Record that receipt was confirmed to the requester.
    ///
    /// Example: consent-ledger requests acknowledge dsr-2d9d99192f593cbb20e0
    Acknowledge {
        /// The request id.
        request_id: String,
        #[command(flatten)]
        server: Server,
    },
    /// Extend the response period (once, and only if the subject was told within the
    /// first period).
    ///
    /// Example: consent-ledger requests extend dsr-… --reason "records in 4 systems" --notified-on 2026-11-25
    Extend {
        /// The request id.
        request_id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// The day the subject was told (YYYY-MM-DD).
        #[arg(long)]
        notified_on: chrono::NaiveDate,
        #[command(flatten)]
        server: Server,
    },
    /// Refuse the request, with the reason given to the subject.
    ///
    /// Example: consent-ledger requests reject dsr-… --reason "identity could not be verified"
    Reject {
        /// The request id.
        request_id: String,
        /// The reason.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: Server,
    },
    /// Record that the request was fulfilled.
    ///
    /// Example: consent-ledger requests complete dsr-… --outcome "export sent by secure link"
    Complete {
        /// The request id.
        request_id: String,
        /// What was done.
        #[arg(long)]
        outcome: String,
        #[command(flatten)]
        server: Server,
    },
}

/// How imported contacts were acquired.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum SourceArg {
    WebForm,
    Event,
    PurchasedList,
    DataVendor,
    Referral,
    Import,
    Other,
}

impl SourceArg {
    fn proto(self) -> pb::SourceKind {
        match self {
            Self::WebForm => pb::SourceKind::WebForm,
            Self::Event => pb::SourceKind::Event,
            Self::PurchasedList => pb::SourceKind::PurchasedList,
            Self::DataVendor => pb::SourceKind::DataVendorExport,
            Self::Referral => pb::SourceKind::Referral,
            Self::Import => pb::SourceKind::Import,
            Self::Other => pb::SourceKind::Other,
        }
    }
}

/// A lawful basis (GDPR Art. 6(1)).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum BasisArg {
    Consent,
    Contract,
    LegalObligation,
    VitalInterests,
    PublicTask,
    LegitimateInterests,
}

impl BasisArg {
    fn proto(self) -> pb::LegalBasis {
        match self {
            Self::Consent => pb::LegalBasis::Consent,
            Self::Contract => pb::LegalBasis::Contract,
            Self::LegalObligation => pb::LegalBasis::LegalObligation,
            Self::VitalInterests => pb::LegalBasis::VitalInterests,
            Self::PublicTask => pb::LegalBasis::PublicTask,
            Self::LegitimateInterests => pb::LegalBasis::LegitimateInterests,
        }
    }
}

/// Business or consumer.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum AudienceArg {
    B2b,
    B2c,
}

/// The right a request exercises.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum RequestKindArg {
    Access,
    Rectification,
    Erasure,
    Restriction,
    Portability,
    Objection,
}

impl RequestKindArg {
    fn proto(self) -> pb::RequestKind {
        match self {
            Self::Access => pb::RequestKind::Access,
            Self::Rectification => pb::RequestKind::Rectification,
            Self::Erasure => pb::RequestKind::Erasure,
            Self::Restriction => pb::RequestKind::Restriction,
            Self::Portability => pb::RequestKind::Portability,
            Self::Objection => pb::RequestKind::Objection,
        }
    }
}

/// The law whose deadlines apply.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum RegimeArg {
    Gdpr,
    UkGdpr,
    Ccpa,
    Lgpd,
}

impl RegimeArg {
    fn proto(self) -> pb::RequestRegime {
        match self {
            Self::Gdpr => pb::RequestRegime::Gdpr,
            Self::UkGdpr => pb::RequestRegime::UkGdpr,
            Self::Ccpa => pb::RequestRegime::Ccpa,
            Self::Lgpd => pb::RequestRegime::Lgpd,
        }
    }
}

/// What an objection covers.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum ObjectionScopeArg {
    DirectMarketing,
    Profiling,
    Purpose,
}

impl ObjectionScopeArg {
    fn proto(self) -> pb::ObjectionScope {
        match self {
            Self::DirectMarketing => pb::ObjectionScope::DirectMarketing,
            Self::Profiling => pb::ObjectionScope::Profiling,
            Self::Purpose => pb::ObjectionScope::Purpose,
        }
    }
}

/// The Art. 18(1) ground of a restriction.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum RestrictionGroundArg {
    AccuracyContested,
    UnlawfulProcessing,
    LegalClaims,
    ObjectionPending,
}

impl RestrictionGroundArg {
    fn proto(self) -> pb::RestrictionGround {
        match self {
            Self::AccuracyContested => pb::RestrictionGround::AccuracyContested,
            Self::UnlawfulProcessing => pb::RestrictionGround::UnlawfulProcessing,
            Self::LegalClaims => pb::RestrictionGround::LegalClaims,
            Self::ObjectionPending => pb::RestrictionGround::ObjectionPending,
        }
    }
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy pack offline, without a server.
    ///
    /// Prints its version, SHA-256, purposes, countries and the regime for countries it
    /// does not list; or `FILE:line N: problem` on stderr, and exits 1.
    ///
    /// Example: consent-ledger policy check deploy/policy/per-country.toml
    Check {
        /// The policy pack (TOML).
        file: PathBuf,
    },
    /// Make a policy pack the active one on the server, and print the activation as JSON.
    ///
    /// The activation is recorded in the ledger. A pack the server refuses (malformed or
    /// contradictory: the error names the line) is not activated, and the running one
    /// stays.
    ///
    /// Example: consent-ledger policy activate deploy/policy/conservative.toml
    Activate {
        /// The policy pack (TOML), sent exactly as it is.
        file: PathBuf,
        #[command(flatten)]
        server: Server,
    },
    /// Print a policy pack's text exactly as activated.
    ///
    /// The active pack, the latest activation of --version, or the pack in force --at a
    /// time. The text goes to stdout; its version, SHA-256 and activation to stderr.
    ///
    /// Example: consent-ledger policy show --at 2026-11-01T00:00:00Z > policy-then.toml
    Show {
        /// The latest activation of this version.
        #[arg(long, conflicts_with = "at")]
        version: Option<String>,
        /// The pack in force at this time (RFC 3339).
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        server: Server,
    },
    /// List every policy pack activated, oldest first, as JSON (without their texts).
    ///
    /// Example: consent-ledger policy list
    List {
        #[command(flatten)]
        server: Server,
    },
}

/// The contacts an eligibility benchmark asks about.
#[derive(Debug, Args)]
struct PopulationArgs {
    /// Contacts to seed (or, with --no-seed, seeded by an earlier run) and ask about.
    #[arg(long, default_value_t = 10_000)]
    contacts: usize,
    /// Do not seed: use the contacts PREFIX-0 to PREFIX-(contacts-1) seeded by an earlier
    /// run with --contact-prefix PREFIX.
    #[arg(long, requires = "contact_prefix")]
    no_seed: bool,
    /// Contact ids are PREFIX-0, PREFIX-1, ...; default: a new prefix for each run
    /// (printed after seeding).
    #[arg(long)]
    contact_prefix: Option<String>,
    /// When seeding, erase every N-th contact afterwards through EraseContact, as a DPO
    /// would (0: none).
    #[arg(long, default_value_t = 1000)]
    erase_every: usize,
}

impl PopulationArgs {
    fn population(self) -> cli::bench::Population {
        cli::bench::Population {
            contacts: self.contacts,
            prefix: self.contact_prefix,
            seed: !self.no_seed,
            erase_every: self.erase_every,
        }
    }
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new random token once, and the entry to add to the callers file (which
    /// holds only the token's SHA-256 digest).
    ///
    /// Example: consent-ledger token create --name crm-sync --role writer
    Create {
        /// The caller's name, recorded as the actor of what it appends.
        #[arg(long)]
        name: String,
        /// A role: writer, reader, dpo, auditor or admin. Repeat for several.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// When the token stops working (RFC 3339), if ever.
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

fn parse_role(name: &str) -> Result<Role, String> {
    Role::parse(name)
        .ok_or_else(|| format!("unknown role {name:?}: use writer, reader, dpo, auditor or admin"))
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Durable appends at fixed concurrency: `Append` with --batch 1, `AppendBatch` above.
    ///
    /// Example: consent-ledger bench append --concurrency 64 --connections 4 --duration 10
    Append {
        #[command(flatten)]
        load: ClosedLoad,
        /// Events per request (1 = unary Append).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Distinct contacts per in-flight request.
        #[arg(long, default_value_t = 100)]
        contacts_per_worker: usize,
        /// Print the result as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: Server,
    },
    /// The transport's ceiling: the gRPC health check, a unary call with no work behind
    /// it, at fixed concurrency. No unary `Append` or `Check` can run faster on this
    /// server, machine and connection count.
    ///
    /// Example: consent-ledger bench ping --concurrency 64 --connections 4 --duration 10
    Ping {
        #[command(flatten)]
        load: ClosedLoad,
        /// Print the result as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: Server,
    },
    /// Full verification of the ledger (VerifyLedger) next to raw SHA-256 of the same
    /// bytes here, and the latency of random inclusion and consistency proofs.
    ///
    /// Example: consent-ledger bench verify --proofs 1000
    Verify {
        /// Proofs of each kind to sample.
        #[arg(long, default_value_t = 1000)]
        proofs: usize,
        /// Print the result as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: Server,
    },
    /// Eligibility checks: `Check` of email_marketing on email for random seeded contacts.
    ///
    /// First seeds --contacts contacts with realistic histories (5-30 entries each, in the
    /// 21 countries of the per-country pack and two it does not list), unless --no-seed.
    /// Runs at fixed concurrency or, with --rate, at a fixed rate with latency measured
    /// from each request's intended send time.
    ///
    /// Example: consent-ledger bench check --concurrency 32 --connections 2 --contacts 10000 --duration-secs 10
    Check {
        /// Requests in flight at once (at most, with --rate).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// HTTP/2 connections shared by the requests.
        #[arg(long, default_value_t = 2)]
        connections: usize,
        #[command(flatten)]
        population: PopulationArgs,
        /// Unmeasured warm-up, in seconds.
        #[arg(long, visible_alias = "warmup", default_value_t = 2)]
        warmup_secs: u64,
        /// Measured period, in seconds.
        #[arg(long, visible_alias = "duration", default_value_t = 10)]
        duration_secs: u64,
        /// Fixed-rate mode: send this many requests per second in all, at fixed intervals,
        /// and measure latency from each one's intended send time (no coordinated
        /// omission). Without it, each request in flight sends the next when it completes.
        #[arg(long)]
        rate: Option<f64>,
        /// Print the result as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: Server,
    },
    /// Seeds a realistic population and nothing else: --contacts contacts with 5-30
    /// entries each (registrations weighted over 23 countries, acquisitions, bases,
    /// consents by several routes, withdrawals, double opt-ins, objections), then erases
    /// every --erase-every-th of them. `bench check` and `bench screen` use it with
    /// --no-seed --contact-prefix.
    ///
    /// Example: consent-ledger bench seed --contacts 100000 --contact-prefix pop
    Seed {
        /// Contacts to seed.
        #[arg(long, default_value_t = 10_000)]
        contacts: usize,
        /// Contact ids are PREFIX-0, PREFIX-1, ...; default: a new prefix (printed).
        #[arg(long)]
        contact_prefix: Option<String>,
        /// Erase every N-th contact afterwards through EraseContact (0: none).
        #[arg(long, default_value_t = 1000)]
        erase_every: usize,
        /// HTTP/2 connections the seeding batches share.
        #[arg(long, default_value_t = 2)]
        connections: usize,
        /// Print the result as JSON instead of a line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: Server,
    },
    /// Campaign screening: the ids of --contacts seeded contacts streamed once through
    /// `Screen`.
    ///
    /// Seeds the contacts like `bench check` (unless --no-seed), then screens them all for
    /// email_marketing on email in one call and reports contacts/s and the total time.
    ///
    /// Example: consent-ledger bench screen --contacts 100000 --batch 1000
    Screen {
        #[command(flatten)]
        population: PopulationArgs,
        /// Contact ids per request message.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Ask for brief decisions (contact, outcome, rule, regime).
        #[arg(long)]
        brief: bool,
        /// Print the result as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: Server,
    },
    /// The eligibility decision itself, in process, without a server.
    ///
    /// Folds one contact's history of --entries entries into its state, then times
    /// `policy::decide` under the built-in per-country pack for email marketing, email
    /// tracking and profiling. Use a release build for real figures.
    ///
    /// Example: consent-ledger bench decide --entries 20 --iterations 1000000
    Decide {
        /// Entries in the contact's history (at least 8).
        #[arg(long, default_value_t = 20)]
        entries: usize,
        /// Decisions timed per purpose.
        #[arg(long, default_value_t = 1_000_000)]
        iterations: u64,
        /// Print the result as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Configuration file (TOML; see deploy/consent-ledger.toml). Flags and environment
    /// variables override its keys.
    #[arg(long, env = "CONSENT_LEDGER_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051]. Port 0 picks a free port; the
    /// address is printed on stdout.
    #[arg(long, env = "CONSENT_LEDGER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of the Prometheus metrics endpoint (GET /metrics) [default: none].
    #[arg(long, env = "CONSENT_LEDGER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// RocksDB data directory, created if missing [default: ./data].
    #[arg(long, env = "CONSENT_LEDGER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log format on stderr [default: human].
    #[arg(long, env = "CONSENT_LEDGER_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Largest request message accepted, in bytes [default: 4194304].
    #[arg(long, env = "CONSENT_LEDGER_MAX_MESSAGE_BYTES")]
    max_message_bytes: Option<usize>,
    /// Most events in one AppendBatch [default: 10000].
    #[arg(long, env = "CONSENT_LEDGER_MAX_BATCH_EVENTS")]
    max_batch_events: Option<usize>,
    /// Most concurrent HTTP/2 streams per connection [default: 256].
    #[arg(long, env = "CONSENT_LEDGER_MAX_CONCURRENT_STREAMS")]
    max_concurrent_streams: Option<u32>,
    /// Longest a request may run, and longest a streamed response (Screen, VerifyLedger,
    /// ExportContact) waits for its caller to read, in seconds [default: 30].
    #[arg(long, env = "CONSENT_LEDGER_REQUEST_TIMEOUT_SECS")]
    request_timeout_secs: Option<u64>,
    /// A connection silent for this many seconds is pinged (HTTP/2 PING), and closed when
    /// the ping is not answered within as long again [default: 60; 0 turns it off].
    #[arg(long, env = "CONSENT_LEDGER_KEEPALIVE_SECS")]
    keepalive_secs: Option<u64>,
    /// Free space to keep on the data directory's disk, in MiB: below it, appends are
    /// refused with RESOURCE_EXHAUSTED (reads and eligibility go on) until space is freed
    /// [default: 256; 0 turns the check off].
    #[arg(long, env = "CONSENT_LEDGER_MIN_FREE_DISK_MIB")]
    min_free_disk_mib: Option<u64>,
    /// Callers file: names, roles and token digests (see `token create`). Without it,
    /// authentication is off and only loopback addresses are allowed.
    #[arg(long, env = "CONSENT_LEDGER_CALLERS")]
    callers: Option<PathBuf>,
    /// Server certificate chain (PEM); with --tls-key, serves TLS.
    #[arg(long, env = "CONSENT_LEDGER_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "CONSENT_LEDGER_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) whose client certificates are accepted: makes TLS mutual; the
    /// certificate's CN or DNS name identifies the caller in the callers file.
    #[arg(long, env = "CONSENT_LEDGER_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Allow listening on a non-loopback address without authentication. Never in
    /// production: anyone who reaches the port can write to the ledger.
    #[arg(long, env = "CONSENT_LEDGER_INSECURE")]
    insecure: bool,
    /// Checkpoint signing key file (signed-note signer key). Must exist. Without it,
    /// DATA_DIR/checkpoint-signing.key is used, generated on first start.
    #[arg(long, env = "CONSENT_LEDGER_CHECKPOINT_KEY")]
    checkpoint_key: Option<PathBuf>,
    /// Origin (key name) for a signing key generated on first start, e.g.
    /// ledger.example.com/consent. Default: consent-ledger/<random>.
    #[arg(long, env = "CONSENT_LEDGER_LOG_ORIGIN")]
    log_origin: Option<String>,
    /// How often a checkpoint is signed when the tree has grown, in milliseconds
    /// [default: 1000].
    #[arg(long, env = "CONSENT_LEDGER_CHECKPOINT_INTERVAL_MS")]
    checkpoint_interval_ms: Option<u64>,
    /// RocksDB block cache, in MiB, shared by every column family. `Check` answers inline
    /// only from memory: size it to hold the contact states it reads [default: a quarter
    /// of the memory the server may use (its cgroup's limit, else the machine's), at least
    /// 64].
    #[arg(long, env = "CONSENT_LEDGER_BLOCK_CACHE_MIB")]
    block_cache_mib: Option<u64>,
    /// Decoded contact states kept in memory, in MiB (estimated): `Check` and the writer
    /// find a state there without reading the storage engine [default: an eighth of the
    /// memory the server may use, at least 32].
    #[arg(long, env = "CONSENT_LEDGER_STATE_CACHE_MIB")]
    state_cache_mib: Option<u64>,
    /// Threads serving gRPC; each takes its share of the connections and serves them
    /// alone [default: one per core].
    #[arg(long, env = "CONSENT_LEDGER_GRPC_THREADS")]
    grpc_threads: Option<u64>,
    /// Policy pack (TOML) to activate at start if it is not already the active one; the
    /// activation is recorded in the ledger. Without it the ledger's active pack stays, and
    /// a new ledger activates the built-in per-country pack.
    #[arg(long, env = "CONSENT_LEDGER_POLICY")]
    policy: Option<PathBuf>,
    /// Master key file (64 hex digits) that wraps every contact's personal-data key. Must
    /// exist. Without it (and without CONSENT_LEDGER_MASTER_KEY holding the 64 hex digits
    /// themselves), DATA_DIR/master.key is used, generated on first start.
    #[arg(long, env = "CONSENT_LEDGER_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
}

impl ServeArgs {
    /// The configuration file's settings (if any) overridden by flags and environment.
    fn settings(&self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => Settings::load(path)?,
            None => Settings::default(),
        };
        let tls =
            (self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_client_ca.is_some())
                .then(|| TlsSettings {
                    cert: self.tls_cert.clone(),
                    key: self.tls_key.clone(),
                    client_ca: self.tls_client_ca.clone(),
                });
        Ok(file.overridden_by(Settings {
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            data_dir: self.data_dir.clone(),
            log_format: self.log_format,
            callers: self.callers.clone(),
            policy: self.policy.clone(),
            master_key_file: self.master_key_file.clone(),
            checkpoint_key: self.checkpoint_key.clone(),
            log_origin: self.log_origin.clone(),
            checkpoint_interval_ms: self.checkpoint_interval_ms,
            block_cache_mib: self.block_cache_mib,
            state_cache_mib: self.state_cache_mib,
            grpc_threads: self.grpc_threads,
            insecure: self.insecure.then_some(true),
            tls,
            limits: LimitSettings {
                max_message_bytes: self.max_message_bytes,
                max_batch_events: self.max_batch_events,
                max_concurrent_streams: self.max_concurrent_streams,
                request_timeout_secs: self.request_timeout_secs,
                keepalive_secs: self.keepalive_secs,
                min_free_disk_mib: self.min_free_disk_mib,
            },
        }))
    }
}

/// A closed-loop load: how many requests in flight, over how many connections, for how
/// long.
#[derive(Debug, Args)]
struct ClosedLoad {
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections shared by the requests.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Unmeasured warm-up, in seconds.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Measured period, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

#[derive(Debug, Args)]
struct Server {
    /// URL of the server.
    #[arg(
        long,
        env = "CONSENT_LEDGER_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    server: String,
    /// Bearer token (from `token create`), sent as `authorization: Bearer <token>`.
    #[arg(
        long,
        env = "CONSENT_LEDGER_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// CA certificate (PEM) to trust for the server's certificate (use an https:// URL).
    #[arg(long, env = "CONSENT_LEDGER_CA", global = true)]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, env = "CONSENT_LEDGER_CERT", global = true)]
    cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, env = "CONSENT_LEDGER_KEY", global = true)]
    key: Option<PathBuf>,
}

impl Server {
    fn connection(&self) -> cli::Connection {
        cli::Connection {
            url: self.server.clone(),
            token: self.token.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Append events given as protobuf JSON: one object, or one per line (a batch).
    ///
    /// Example: consent-ledger ledger append '{"contactId":"crm-1","contactRegistered":{"country":"DE","relationship":{"audience":"AUDIENCE_B2C","lifecycle":"LIFECYCLE_PROSPECT"}}}'
    Append {
        /// The event(s); `-` or nothing reads standard input.
        json: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// Print one contact's history.
    ///
    /// Example: consent-ledger ledger history crm-1
    History {
        /// The contact id.
        contact_id: String,
        /// Entries per page (at most 1000).
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        #[command(flatten)]
        server: Server,
    },
    /// Print one entry by global sequence number.
    ///
    /// Example: consent-ledger ledger entry 1
    Entry {
        /// Global sequence number.
        seq: u64,
        #[command(flatten)]
        server: Server,
    },
    /// Print the size and root of the global Merkle tree.
    ///
    /// Example: consent-ledger ledger tree-head
    TreeHead {
        #[command(flatten)]
        server: Server,
    },
    /// Recompute one contact's hash chain; exits 1 if it is broken.
    ///
    /// Example: consent-ledger ledger verify crm-1
    Verify {
        /// The contact id.
        contact_id: String,
        #[command(flatten)]
        server: Server,
    },
}

/// mimalloc rather than glibc's malloc: decoding contact states and answering calls
/// allocate and free small objects on several threads at a high rate. Its `override`
/// feature makes it the process's `malloc` and C++ `operator new` too, so RocksDB
/// allocates from it as well: glibc's malloc and free were about 4% of a full
/// `Screen`'s CPU, inside RocksDB's batched reads. Built with `no_thp`: with transparent
/// huge pages, every 2 MiB page a thread's heap touched stayed resident, and a
/// million-id `Screen` beside a stalled one grew the server by 156-186 MiB rather than
/// 33 (`tests/crash.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The server's settings are read before logging starts, since they choose its format.
    let settings = match &cli.command {
        Command::Serve(args) => match args.settings() {
            Ok(settings) => Some(settings),
            Err(err) => {
                eprintln!("error: {err:#}");
                return std::process::ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings
        .as_ref()
        .and_then(|s| s.log_format)
        .unwrap_or_default()
    {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match run(cli, settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            // The reader of our output went away (`… | head`): nothing more to say.
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            match err.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {:?}: {}", status.code(), status.message()),
                None => eprintln!("error: {err:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, settings: Option<Settings>) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let settings = match settings {
                Some(settings) => settings,
                None => args.settings()?,
            };
            serve(settings).await
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let env = ServeArgs::from_arg_matches(
                &ServeArgs::augment_args(clap::Command::new("config"))
                    .try_get_matches_from(["config"])?,
            )?;
            let settings = Settings::load(&file)?.overridden_by(env.settings()?);
            let report = consent_ledger::server::check_settings(
                &settings,
                std::env::var("CONSENT_LEDGER_MASTER_KEY").ok(),
            )?;
            print!("{report}");
            Ok(())
        }
        Command::Backup { to, server } => {
            let mut admin = server.connection().admin_client().await?;
            let backup = admin
                .backup(pb::BackupRequest {
                    to_dir: to.display().to_string(),
                })
                .await?
                .into_inner();
            println!("{}", to_json("consentledger.v1.BackupResponse", &backup)?);
            Ok(())
        }
        Command::Restore {
            from,
            data_dir,
            key,
        } => {
            let key = key.as_deref().map(cli::audit::verifier_key).transpose()?;
            let report = cli::backup::restore(&from, &data_dir, key.as_ref())?;
            println!(
                "OK: restored {} entries (root {}) into {}; a prefix of the checkpoint of {} entries signed by {}{}; {} entries re-verified",
                report.manifest.tree_size,
                hex::encode(report.manifest.root),
                data_dir.display(),
                report.signed_size,
                report.manifest.verifier_key,
                if report.key_from_manifest {
                    " (the key the backup names: pass --key to check against a key you trust)"
                } else {
                    ""
                },
                report.verification.entries
            );
            eprintln!("the master key and the signing key are not in backups: put them back beside the new data directory, or configure them");
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "consent-ledger", &mut script);
            std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
            Ok(())
        }
        Command::Health { server } => {
            let channel = server.connection().channel().await?;
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await?
                .into_inner()
                .status();
            println!("{}", status.as_str_name());
            anyhow::ensure!(
                status == tonic_health::pb::health_check_response::ServingStatus::Serving,
                "the server is not serving"
            );
            Ok(())
        }
        Command::Ledger(command) => ledger(command).await,
        Command::Bench(command) => bench(command).await,
        Command::Audit(command) => audit(command).await,
        Command::Check {
            contact_id,
            target,
            server,
        } => {
            let mut client = server.connection().eligibility_client().await?;
            let decision = client
                .check(target.target().check_request(&contact_id))
                .await?
                .into_inner();
            let mut out = std::io::stdout().lock();
            cli::write_json_with_defaults(&mut out, "consentledger.v1.Decision", &decision, true)?;
            std::io::Write::write_all(&mut out, b"\n")?;
            Ok(())
        }
        Command::Screen {
            target,
            input,
            brief,
            server,
        } => {
            let input: Box<dyn std::io::BufRead + Send> = match input {
                Some(path) if path.as_os_str() != "-" => Box::new(std::io::BufReader::new(
                    std::fs::File::open(&path)
                        .with_context(|| format!("cannot open {}", path.display()))?,
                )),
                _ => Box::new(std::io::BufReader::new(std::io::stdin())),
            };
            let target = cli::eligibility::Target {
                brief,
                ..target.target()
            };
            let mut client = server.connection().eligibility_client().await?;
            let mut out = std::io::BufWriter::new(std::io::stdout());
            let summary = cli::eligibility::screen(&mut client, &target, input, &mut out).await?;
            eprintln!("{}", cli::eligibility::summary_text(&target, &summary));
            Ok(())
        }
        Command::Policy(command) => policy(command).await,
        Command::Requests(command) => requests(command).await,
        Command::Import {
            file,
            source,
            supplier,
            source_reference,
            basis,
            purpose,
            justification,
            audience,
            acquired_at,
            mapping,
            ids,
            rejects,
            batch_rows,
            server,
        } => {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let options = cli::import::ImportOptions {
                source_kind: source.proto(),
                justification: justification
                    .unwrap_or_else(|| format!("recorded at the import of {name}")),
                source_reference: source_reference.unwrap_or_else(|| name.clone()),
                supplier,
                basis: basis.proto(),
                purpose,
                audience: match audience {
                    AudienceArg::B2b => pb::Audience::B2b,
                    AudienceArg::B2c => pb::Audience::B2c,
                },
                acquired_at,
                batch_rows: batch_rows.clamp(1, 3000),
                columns: match &mapping {
                    Some(path) => cli::import::Columns::load(path)?,
                    None => cli::import::Columns::default(),
                },
            };
            let ids = ids.unwrap_or_else(|| file.with_extension("ids.csv"));
            let rejects = rejects.unwrap_or_else(|| file.with_extension("rejects.csv"));
            let mut client = server.connection().client().await?;
            let started = std::time::Instant::now();
            let summary =
                cli::import::import_file(&mut client, &options, &file, &ids, &rejects).await?;
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "{} rows in {seconds:.1} s ({:.0} rows/s): {} imported, {} already imported, {} rejected (see {})",
                summary.rows,
                summary.rows as f64 / seconds.max(1e-9),
                summary.imported,
                summary.already_imported,
                summary.rejected_total(),
                rejects.display()
            );
            for (reason, count) in &summary.rejected {
                eprintln!("  {count:>8}  {reason}");
            }
            eprintln!("contact ids of generated rows: {}", ids.display());
            Ok(())
        }
        Command::Export {
            contact_id,
            output,
            portability,
            server,
        } => {
            let kind = if portability {
                pb::ExportKind::Portability
            } else {
                pb::ExportKind::Access
            };
            let mut client = server.connection().rights_client().await?;
            let summary = match &output {
                Some(path) => {
                    // Written beside the target and renamed, so a failed export never
                    // leaves a truncated file that looks complete.
                    let partial = path.with_extension("partial");
                    let file = std::fs::File::create(&partial)
                        .with_context(|| format!("cannot create {}", partial.display()))?;
                    let mut out = std::io::BufWriter::new(file);
                    let summary =
                        cli::rights::export(&mut client, &contact_id, kind, &mut out).await?;
                    out.into_inner()?.sync_all()?;
                    std::fs::rename(&partial, path)?;
                    summary
                }
                None => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    cli::rights::export(&mut client, &contact_id, kind, &mut out).await?
                }
            };
            eprintln!(
                "exported {} entries of {contact_id} ({} with personal data){}{}",
                summary.entries,
                summary.with_personal_data,
                summary
                    .erased_at_contact_seq
                    .map(|seq| format!("; personal data erased at contact seq {seq}"))
                    .unwrap_or_default(),
                output
                    .map(|p| format!(" to {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Command::Erase {
            contact_id,
            reason,
            request,
            idempotency_key,
            server,
        } => {
            let mut client = server.connection().rights_client().await?;
            let erased = client
                .erase_contact(pb::EraseContactRequest {
                    contact_id,
                    reason,
                    request_id: request.unwrap_or_default(),
                    idempotency_key: idempotency_key.unwrap_or_default(),
                })
                .await?
                .into_inner();
            println!(
                "{}",
                to_json("consentledger.v1.EraseContactResponse", &erased)?
            );
            Ok(())
        }
        Command::Compact {
            data_dir: None,
            server,
        } => {
            let mut admin = server.connection().admin_client().await?;
            let compacted = admin.compact(pb::CompactRequest {}).await?.into_inner();
            println!(
                "{}",
                to_json("consentledger.v1.CompactResponse", &compacted)?
            );
            Ok(())
        }
        Command::Compact {
            data_dir: Some(data_dir),
            ..
        } => {
            if !data_dir.join("CURRENT").is_file() {
                bail!(
                    "{}: no ledger here (no RocksDB CURRENT file)",
                    data_dir.display()
                );
            }
            let store = consent_ledger::store::Store::open(&data_dir).with_context(|| {
                format!(
                    "opening {} (with --data-dir, compact works on a stopped server's data directory; without it, it asks the running server)",
                    data_dir.display()
                )
            })?;
            let (before, after) = store.compact_all()?;
            println!(
                "compacted {}: table files {before} bytes before, {after} bytes after",
                data_dir.display()
            );
            Ok(())
        }
        Command::PublicKey { data_dir, key_file } => {
            println!(
                "{}",
                cli::audit::local_verifier_key(&data_dir, key_file.as_deref())?
            );
            Ok(())
        }
        Command::Token(TokenCommand::Create {
            name,
            roles,
            expires_at,
        }) => {
            let (token, digest) =
                new_token().map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
            let roles: Vec<String> = roles.iter().map(|r| format!("{:?}", r.name())).collect();
            println!("# Token for {name} (shown once; give it to the caller, keep it secret):");
            println!("# {token}");
            println!("[[caller]]");
            println!("name = {name:?}");
            println!("roles = [{}]", roles.join(", "));
            println!("token_sha256 = \"{digest}\"");
            if let Some(expires_at) = expires_at {
                println!("expires_at = \"{}\"", expires_at.to_rfc3339());
            }
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let resolved = settings.resolve(std::env::var("CONSENT_LEDGER_MASTER_KEY").ok())?;
    let config = resolved.serve;
    if config.callers_file.is_none() {
        tracing::warn!(
            "authentication is off (no --callers): every caller is recorded as local-unauthenticated with every role"
        );
    } else if config.tls.is_none() && !config.listen.ip().is_loopback() {
        tracing::warn!(
            "serving plaintext on a non-loopback address: bearer tokens cross the network in the clear unless TLS is terminated in front (service mesh, proxy)"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    // One machine-readable line for scripts and tests that start the server on port 0.
    println!("listening on {}", listener.local_addr()?);
    consent_ledger::server::run(listener, config, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

async fn ledger(command: LedgerCommand) -> anyhow::Result<()> {
    match command {
        LedgerCommand::Append { json, server } => {
            let text = match json.as_deref() {
                None | Some("-") => std::io::read_to_string(std::io::stdin())?,
                Some(text) => text.to_owned(),
            };
            let events = cli::parse_events(&text)?;
            let mut client = server.connection().client().await?;
            if events.len() == 1 {
                let event = events.into_iter().next();
                let response = client
                    .append(pb::AppendRequest { event })
                    .await?
                    .into_inner();
                println!("{}", to_json("consentledger.v1.AppendResponse", &response)?);
            } else {
                let response = client
                    .append_batch(pb::AppendBatchRequest { events })
                    .await?
                    .into_inner();
                println!(
                    "{}",
                    to_json("consentledger.v1.AppendBatchResponse", &response)?
                );
            }
        }
        LedgerCommand::History {
            contact_id,
            page_size,
            server,
        } => {
            let mut client = server.connection().client().await?;
            let mut page_token = String::new();
            loop {
                let page = client
                    .get_history(pb::GetHistoryRequest {
                        contact_id: contact_id.clone(),
                        page_size,
                        page_token,
                    })
                    .await?
                    .into_inner();
                for entry in &page.entries {
                    println!("{}", to_json("consentledger.v1.Entry", entry)?);
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        LedgerCommand::Entry { seq, server } => {
            let mut client = server.connection().client().await?;
            let response = client
                .get_entry(pb::GetEntryRequest { seq })
                .await?
                .into_inner();
            println!(
                "{}",
                to_json("consentledger.v1.GetEntryResponse", &response)?
            );
        }
        LedgerCommand::TreeHead { server } => {
            let mut client = server.connection().client().await?;
            let response = client
                .get_tree_head(pb::GetTreeHeadRequest {})
                .await?
                .into_inner();
            println!(
                "{}",
                to_json("consentledger.v1.GetTreeHeadResponse", &response)?
            );
        }
        LedgerCommand::Verify { contact_id, server } => {
            let mut client = server.connection().client().await?;
            let response = client
                .verify_contact(pb::VerifyContactRequest { contact_id })
                .await?
                .into_inner();
            println!(
                "{}",
                to_json("consentledger.v1.VerifyContactResponse", &response)?
            );
            if !response.ok {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// Prints a load generator's report: as JSON, or as its human table.
fn print_report(report: &impl serde::Serialize, table: String, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{table}");
    }
    Ok(())
}

async fn bench(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Append {
            load,
            batch,
            contacts_per_worker,
            json,
            server,
        } => {
            let report = cli::bench::run_append(cli::bench::AppendBench {
                connection: server.connection(),
                concurrency: load.concurrency,
                connections: load.connections,
                batch,
                contacts_per_worker,
                warmup: Duration::from_secs(load.warmup),
                duration: Duration::from_secs(load.duration),
            })
            .await?;
            print_report(&report, report.table(), json)?;
        }
        BenchCommand::Ping { load, json, server } => {
            let report = cli::bench::run_ping(cli::bench::PingBench {
                connection: server.connection(),
                concurrency: load.concurrency,
                connections: load.connections,
                warmup: Duration::from_secs(load.warmup),
                duration: Duration::from_secs(load.duration),
            })
            .await?;
            print_report(&report, report.table(), json)?;
        }
        BenchCommand::Verify {
            proofs,
            json,
            server,
        } => {
            let report = cli::bench::run_verify(&server.connection(), proofs).await?;
            print_report(&report, report.table(), json)?;
        }
        BenchCommand::Check {
            concurrency,
            connections,
            population,
            warmup_secs,
            duration_secs,
            rate,
            json,
            server,
        } => {
            let report = cli::bench::run_check(cli::bench::CheckBench {
                connection: server.connection(),
                concurrency,
                connections,
                population: population.population(),
                warmup: Duration::from_secs(warmup_secs),
                duration: Duration::from_secs(duration_secs),
                rate,
            })
            .await?;
            print_report(&report, report.table(), json)?;
        }
        BenchCommand::Screen {
            population,
            batch,
            brief,
            json,
            server,
        } => {
            let report = cli::bench::run_screen(cli::bench::ScreenBench {
                connection: server.connection(),
                population: population.population(),
                batch,
                brief,
            })
            .await?;
            print_report(&report, report.table(), json)?;
        }
        BenchCommand::Seed {
            contacts,
            contact_prefix,
            erase_every,
            connections,
            json,
            server,
        } => {
            let population = cli::bench::Population {
                contacts,
                prefix: contact_prefix,
                seed: true,
                erase_every,
            };
            let (_, report) = population
                .prepare(&server.connection(), connections)
                .await?;
            let report = report.ok_or_else(|| anyhow::anyhow!("the population was not seeded"))?;
            print_report(&report, report.line(), json)?;
        }
        BenchCommand::Decide {
            entries,
            iterations,
            json,
        } => {
            let report = cli::bench::run_decide(cli::bench::DecideBench {
                entries,
                iterations,
            })?;
            print_report(&report, report.table(), json)?;
        }
    }
    Ok(())
}

async fn requests(command: RequestsCommand) -> anyhow::Result<()> {
    let print = |response: pb::RequestResponse| -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        cli::write_json_with_defaults(
            &mut out,
            "consentledger.v1.RequestResponse",
            &response,
            true,
        )?;
        std::io::Write::write_all(&mut out, b"\n")?;
        Ok(())
    };
    match command {
        RequestsCommand::Open {
            contact_id,
            kind,
            regime,
            received_at,
            channel,
            requester_email,
            requester_name,
            objection_scope,
            objection_purpose,
            restriction_ground,
            idempotency_key,
            server,
        } => {
            let requester =
                (requester_email.is_some() || requester_name.is_some()).then(|| pb::PersonalData {
                    email: requester_email.unwrap_or_default(),
                    name: requester_name.unwrap_or_default(),
                    ..Default::default()
                });
            let request = pb::OpenRequestRequest {
                contact_id,
                kind: kind.proto() as i32,
                regime: regime.proto() as i32,
                received_at: received_at.map(consent_ledger::service::convert::to_timestamp),
                channel,
                requester,
                objection_scope: objection_scope.map_or(0, |s| s.proto() as i32),
                objection_purpose: objection_purpose.unwrap_or_default(),
                restriction_ground: restriction_ground.map_or(0, |g| g.proto() as i32),
                idempotency_key: idempotency_key.unwrap_or_default(),
            };
            let mut client = server.connection().rights_client().await?;
            print(client.open_request(request).await?.into_inner())
        }
        RequestsCommand::List {
            overdue,
            due_within,
            closed,
            all,
            kind,
            json,
            server,
        } => {
            let filter = match (closed, all) {
                (true, _) => pb::RequestFilter::Closed,
                (_, true) => pb::RequestFilter::All,
                _ => pb::RequestFilter::OpenUnspecified,
            };
            let mut client = server.connection().rights_client().await?;
            let mut found = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_requests(pb::ListRequestsRequest {
                        filter: filter as i32,
                        kind: kind.map_or(0, |k| k.proto() as i32),
                        overdue,
                        due_within_days: due_within.unwrap_or(0),
                        page_size: 1000,
                        page_token,
                    })
                    .await?
                    .into_inner();
                found.extend(page.requests);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if json {
                let mut out = std::io::stdout().lock();
                for request in &found {
                    cli::write_json_with_defaults(
                        &mut out,
                        "consentledger.v1.DataSubjectRequest",
                        request,
                        false,
                    )?;
                    std::io::Write::write_all(&mut out, b"\n")?;
                }
            } else {
                print!("{}", cli::rights::request_table(&found));
                eprintln!("{} request(s)", found.len());
            }
            Ok(())
        }
        RequestsCommand::Get { request_id, server } => {
            let mut client = server.connection().rights_client().await?;
            print(
                client
                    .get_request(pb::GetRequestRequest { request_id })
                    .await?
                    .into_inner(),
            )
        }
        RequestsCommand::Verify {
            request_id,
            method,
            server,
        } => {
            let mut client = server.connection().rights_client().await?;
            let request = pb::VerifyRequestIdentityRequest { request_id, method };
            print(client.verify_request_identity(request).await?.into_inner())
        }
        RequestsCommand::Acknowledge { request_id, server } => {
            let mut client = server.connection().rights_client().await?;
            let request = pb::AcknowledgeRequestRequest { request_id };
            print(client.acknowledge_request(request).await?.into_inner())
        }
        RequestsCommand::Extend {
            request_id,
            reason,
            notified_on,
            server,
        } => {
            let mut client = server.connection().rights_client().await?;
            let request = pb::ExtendRequestRequest {
                request_id,
                reason,
                subject_notified_on: notified_on.to_string(),
            };
            print(client.extend_request(request).await?.into_inner())
        }
        RequestsCommand::Reject {
            request_id,
            reason,
            server,
        } => {
            let mut client = server.connection().rights_client().await?;
            let request = pb::RejectRequestRequest { request_id, reason };
            print(client.reject_request(request).await?.into_inner())
        }
        RequestsCommand::Complete {
            request_id,
            outcome,
            server,
        } => {
            let mut client = server.connection().rights_client().await?;
            let request = pb::CompleteRequestRequest {
                request_id,
                outcome,
            };
            print(client.complete_request(request).await?.into_inner())
        }
    }
}

async fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    use cli::eligibility;
    match command {
        PolicyCommand::Check { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            match consent_ledger::policy::PolicyPack::parse(&text) {
                Ok(pack) => println!("{}", eligibility::describe_pack(&pack)),
                Err(err) => {
                    eprintln!("{}", eligibility::located(&file, &err));
                    std::process::exit(1);
                }
            }
        }
        PolicyCommand::Activate { file, server } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let mut client = server.connection().eligibility_client().await?;
            let mut policy = client
                .activate_policy(pb::ActivatePolicyRequest { text })
                .await?
                .into_inner();
            policy.text.clear();
            println!("{}", to_json("consentledger.v1.Policy", &policy)?);
        }
        PolicyCommand::Show {
            version,
            at,
            server,
        } => {
            let mut client = server.connection().eligibility_client().await?;
            let policy = client
                .get_policy(pb::GetPolicyRequest {
                    version: version.unwrap_or_default(),
                    at: at.map(consent_ledger::service::convert::to_timestamp),
                })
                .await?
                .into_inner();
            eprintln!("{}", eligibility::policy_info(&policy));
            if policy.text.is_empty() {
                bail!("the server has no text for this policy pack");
            }
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            out.write_all(policy.text.as_bytes())?;
            out.flush()?;
        }
        PolicyCommand::List { server } => {
            let mut client = server.connection().eligibility_client().await?;
            let response = client
                .list_policies(pb::ListPoliciesRequest {})
                .await?
                .into_inner();
            println!(
                "{}",
                to_json("consentledger.v1.ListPoliciesResponse", &response)?
            );
        }
    }
    Ok(())
}

async fn audit(command: AuditCommand) -> anyhow::Result<()> {
    use cli::audit;
    match command {
        AuditCommand::Checkpoint {
            fresh,
            tree_size,
            server,
        } => {
            let mut client = server.connection().audit_client().await?;
            let response = client
                .get_checkpoint(pb::GetCheckpointRequest {
                    tree_size: tree_size.unwrap_or(0),
                    fresh,
                })
                .await?
                .into_inner();
            let checkpoint = response
                .checkpoint
                .context("the server sent no checkpoint")?;
            print!("{}", checkpoint.note);
        }
        AuditCommand::Checkpoints { from_size, server } => {
            let mut client = server.connection().audit_client().await?;
            let mut from_size = from_size;
            loop {
                let page = client
                    .list_checkpoints(pb::ListCheckpointsRequest {
                        from_size,
                        page_size: 1000,
                    })
                    .await?
                    .into_inner();
                for checkpoint in &page.checkpoints {
                    println!(
                        "{}",
                        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(
                            &to_json("consentledger.v1.Checkpoint", checkpoint)?
                        )?)?
                    );
                }
                if page.next_from_size == 0 {
                    break;
                }
                from_size = page.next_from_size;
            }
        }
        AuditCommand::Inclusion {
            seq,
            verifier_key,
            server,
        } => {
            let key = audit::verifier_key(&verifier_key)?;
            let mut client = server.connection().audit_client().await?;
            let response = audit::receipt_proof(&mut client, seq, &key).await?;
            eprintln!("entry {seq}: inclusion in the signed checkpoint verified");
            println!(
                "{}",
                to_json("consentledger.v1.GetReceiptProofResponse", &response)?
            );
        }
        AuditCommand::Consistency {
            old,
            new,
            verifier_key,
            server,
        } => {
            let key = audit::verifier_key(&verifier_key)?;
            let (_, old_head) = audit::read_checkpoint(&old, &key)?;
            let mut client = server.connection().audit_client().await?;
            let new_head = match new {
                Some(path) => audit::read_checkpoint(&path, &key)?.1,
                None => {
                    let response = client
                        .get_checkpoint(pb::GetCheckpointRequest {
                            tree_size: 0,
                            fresh: true,
                        })
                        .await?
                        .into_inner();
                    let note = response
                        .checkpoint
                        .context("the server sent no checkpoint")?
                        .note;
                    consent_ledger::audit::checkpoint::open_checkpoint(&note, &key)
                        .context("the server's current checkpoint")?
                }
            };
            let outcome = audit::check_consistency(&mut client, old_head, new_head).await?;
            eprintln!(
                "consistent: the log of {} entries extends the log of {} entries unchanged",
                outcome.new_size, outcome.old_size
            );
            println!("{}", serde_json::to_string_pretty(&outcome)?);
        }
        AuditCommand::VerifyLedger {
            trusted_checkpoint,
            server,
        } => {
            let trusted_checkpoint = match trusted_checkpoint {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => String::new(),
            };
            let mut client = server.connection().audit_client().await?;
            let mut stream = client
                .verify_ledger(pb::VerifyLedgerRequest { trusted_checkpoint })
                .await?
                .into_inner();
            let mut result = None;
            while let Some(message) = stream.message().await? {
                match message.update {
                    Some(pb::verify_ledger_response::Update::Progress(p)) => {
                        eprintln!("verified {} of {} entries", p.entries_done, p.entries_total)
                    }
                    Some(pb::verify_ledger_response::Update::Result(r)) => result = Some(r),
                    None => {}
                }
            }
            let result = result.context("the server ended the stream without a result")?;
            println!("{}", to_json("consentledger.v1.VerifyResult", &result)?);
            if !result.ok {
                std::process::exit(1);
            }
        }
        AuditCommand::Bundle {
            contact_id,
            output,
            server,
        } => {
            let mut client = server.connection().audit_client().await?;
            let bundle = client
                .export_bundle(pb::ExportBundleRequest { contact_id })
                .await?
                .into_inner();
            std::fs::write(&output, to_json("consentledger.v1.Bundle", &bundle)?)
                .with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!(
                "wrote {} entries and checkpoint {} to {}",
                bundle.entries.len(),
                bundle.checkpoint.map_or(0, |c| c.tree_size),
                output.display()
            );
        }
        AuditCommand::Verify {
            bundle,
            verifier_key,
        } => {
            let key = audit::verifier_key(&verifier_key)?;
            match audit::verify_bundle_file(&bundle, &key) {
                Ok(summary) => println!(
                    "OK: {} entries, contact seqs 1 to {} with no gap, each included in the checkpoint of {} entries (root {}) signed by {}",
                    summary.entries,
                    summary.entries,
                    summary.checkpoint.size,
                    hex::encode(summary.checkpoint.root),
                    key.name()
                ),
                Err(err) => {
                    eprintln!("FAILED: {err:#}");
                    std::process::exit(1);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Conflicting flag names and similar mistakes panic only when that subcommand is
    /// parsed; check every one here.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
