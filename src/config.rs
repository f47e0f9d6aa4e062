//! Server configuration: where to listen and store, and the limits every request meets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Limits applied to every request. Each error that enforces one names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded request message accepted, in bytes (`max_message_bytes`).
    pub max_message_bytes: usize,
    /// Most events in one `AppendBatch` (`max_batch_events`).
    pub max_batch_events: usize,
    /// Most concurrent HTTP/2 streams per connection (`max_concurrent_streams`).
    pub max_concurrent_streams: u32,
    /// Longest a request may run before it is cancelled (`request_timeout`).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            max_batch_events: 10_000,
            max_concurrent_streams: 256,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The server's TLS files (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// CA whose client certificates are accepted; set, it makes TLS mutual (a client
    /// without a certificate from this CA is refused during the handshake).
    pub client_ca: Option<PathBuf>,
}

/// Everything `serve` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// RocksDB data directory (created if missing).
    pub data_dir: PathBuf,
    /// Request limits.
    pub limits: Limits,
    /// Callers allowed in, with their roles and token digests; `None` turns
    /// authentication off (loopback only).
    pub callers_file: Option<PathBuf>,
    /// How often the callers file is checked for changes.
    pub callers_reload_interval: Duration,
    /// TLS; `None` serves plaintext HTTP/2.
    pub tls: Option<TlsFiles>,
    /// Checkpoint signing key (signed-note signer key). `None` uses
    /// `<data_dir>/checkpoint-signing.key`, generated on first start; a configured file
    /// must exist.
    pub checkpoint_key: Option<PathBuf>,
    /// Origin (key name) of a newly generated signing key; `None` picks
    /// `consent-ledger/<random>`.
    pub log_origin: Option<String>,
    /// How often a checkpoint is signed when the tree has grown.
    pub checkpoint_interval: Duration,
    /// Policy pack to activate at start (if it is not already the active one). `None`
    /// keeps the ledger's active pack, or activates the default pack in a new ledger.
    pub policy_file: Option<PathBuf>,
    /// Where the master key that wraps every contact's data key comes from.
    pub master_key: MasterKeySource,
}

/// Where the master key comes from.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum MasterKeySource {
    /// `<data_dir>/master.key`, generated on first start (embedded default).
    #[default]
    DataDir,
    /// A key file (64 hex digits) that must exist.
    File(PathBuf),
    /// 64 hex digits from the environment variable `CONSENT_LEDGER_MASTER_KEY`.
    Environment(String),
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DataDir => f.write_str("DataDir"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Environment(_) => f.write_str("Environment(..)"),
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("./data"),
            limits: Limits::default(),
            callers_file: None,
            callers_reload_interval: Duration::from_secs(2),
            tls: None,
            checkpoint_key: None,
            log_origin: None,
            checkpoint_interval: Duration::from_secs(1),
            policy_file: None,
            master_key: MasterKeySource::DataDir,
        }
    }
}
