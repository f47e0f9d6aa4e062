//! Server configuration: where to listen and store, and the limits every request meets;
//! and the settings a configuration file, the environment and flags give, merged in that
//! order of precedence (flags over environment over file over defaults).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits applied to every request. Each error that enforces one names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded request message accepted, in bytes (`max_message_bytes`).
    pub max_message_bytes: usize,
    /// Most events in one `AppendBatch` (`max_batch_events`).
    pub max_batch_events: usize,
    /// Most concurrent HTTP/2 streams per connection (`max_concurrent_streams`).
    pub max_concurrent_streams: u32,
    /// Longest a request may run before it is cancelled, and longest a streamed response
    /// waits for its caller to read the next message (`request_timeout`).
    pub request_timeout: Duration,
    /// A connection that sends nothing for this long is pinged, and closed when the ping
    /// is not answered within as long again (`keepalive_secs`; zero turns it off).
    pub keepalive: Duration,
    /// Free space kept on the data directory's disk: appends are refused below it, in
    /// bytes (`min_free_disk_mib`; 0 turns the check off).
    pub min_free_disk_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            max_batch_events: 10_000,
            max_concurrent_streams: 256,
            request_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(60),
            min_free_disk_bytes: 256 * MIB,
        }
    }
}

const MIB: u64 = 1024 * 1024;

/// `mib` MiB in bytes, saturating.
fn mib_to_bytes(mib: u64) -> usize {
    usize::try_from(mib.saturating_mul(MIB)).unwrap_or(usize::MAX)
}

/// More gRPC threads than this is a typo, not a machine.
const MAX_GRPC_THREADS: u64 = 1024;

/// One gRPC thread per core the process may use.
fn default_grpc_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
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
    /// Address of the Prometheus metrics endpoint (`/metrics`); `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
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
    /// RocksDB block cache shared by every column family, in bytes. `Check` answers
    /// inline only from memory, so it should hold the contact states a busy server reads.
    pub block_cache_bytes: usize,
    /// Decoded contact states kept in memory, in estimated bytes: `Check` and the writer
    /// find a state here without reading the storage engine.
    pub state_cache_bytes: usize,
    /// Threads serving gRPC, each with its own connections (see `server::run`).
    pub grpc_threads: usize,
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
            metrics_listen: None,
            data_dir: PathBuf::from("./data"),
            limits: Limits::default(),
            callers_file: None,
            callers_reload_interval: Duration::from_secs(2),
            tls: None,
            checkpoint_key: None,
            log_origin: None,
            checkpoint_interval: Duration::from_secs(1),
            block_cache_bytes: crate::store::default_block_cache_bytes(),
            state_cache_bytes: crate::store::default_state_cache_bytes(),
            grpc_threads: default_grpc_threads(),
            policy_file: None,
            master_key: MasterKeySource::DataDir,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Server settings as a configuration file, the environment or flags give them; every key
/// is optional. Files are TOML with exactly these keys (unknown keys are refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// gRPC address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Prometheus metrics address (`/metrics`); none serves no metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// RocksDB data directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Log format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Callers file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callers: Option<PathBuf>,
    /// Policy pack to activate at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PathBuf>,
    /// Master key file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<PathBuf>,
    /// Checkpoint signing key file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_key: Option<PathBuf>,
    /// Origin for a newly generated signing key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_origin: Option<String>,
    /// Checkpoint cadence, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval_ms: Option<u64>,
    /// Block cache size, in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_cache_mib: Option<u64>,
    /// Contact state cache size, in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_cache_mib: Option<u64>,
    /// Threads serving gRPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_threads: Option<u64>,
    /// Allow a non-loopback address without authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// TLS files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    /// Request limits.
    #[serde(default, skip_serializing_if = "LimitSettings::is_empty")]
    pub limits: LimitSettings,
}

/// The `[tls]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Private key (PEM).
    pub key: Option<PathBuf>,
    /// CA of accepted client certificates (mutual TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

/// The `[limits]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// `max_message_bytes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<usize>,
    /// `max_batch_events`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_events: Option<usize>,
    /// `max_concurrent_streams`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
    /// `request_timeout_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_secs: Option<u64>,
    /// `keepalive_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_secs: Option<u64>,
    /// `min_free_disk_mib`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_free_disk_mib: Option<u64>,
}

impl LimitSettings {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A configuration file that cannot be used. Names the file, and the line where the TOML
/// parser can.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected keys.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the problem (0 if unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A setting breaks a rule.
    #[error("{key}: {rule}")]
    Rule {
        /// The key, as written in the file.
        key: &'static str,
        /// The rule.
        rule: String,
    },
}

/// Everything the server needs from the settings, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// What `server::run` takes.
    pub serve: ServeConfig,
    /// Whether a non-loopback address without authentication is allowed.
    pub insecure: bool,
    /// Log format.
    pub log_format: LogFormat,
}

impl Settings {
    /// Parses a configuration file's text; `path` names it in errors.
    pub fn from_toml(path: &str, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            line: e.span().map_or(0, |span| {
                text[..span.start.min(text.len())].matches('\n').count() + 1
            }),
            message: e.message().to_owned(),
        })
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&path.display().to_string(), &text)
    }

    /// These settings with every key `over` sets taken from `over` (flags and environment
    /// over the file).
    pub fn overridden_by(self, over: Settings) -> Settings {
        Settings {
            listen: over.listen.or(self.listen),
            metrics_listen: over.metrics_listen.or(self.metrics_listen),
            data_dir: over.data_dir.or(self.data_dir),
            log_format: over.log_format.or(self.log_format),
            callers: over.callers.or(self.callers),
            policy: over.policy.or(self.policy),
            master_key_file: over.master_key_file.or(self.master_key_file),
            checkpoint_key: over.checkpoint_key.or(self.checkpoint_key),
            log_origin: over.log_origin.or(self.log_origin),
            checkpoint_interval_ms: over.checkpoint_interval_ms.or(self.checkpoint_interval_ms),
            block_cache_mib: over.block_cache_mib.or(self.block_cache_mib),
            state_cache_mib: over.state_cache_mib.or(self.state_cache_mib),
            grpc_threads: over.grpc_threads.or(self.grpc_threads),
            insecure: over.insecure.or(self.insecure),
            tls: match (self.tls, over.tls) {
                (Some(file), Some(over)) => Some(TlsSettings {
                    cert: over.cert.or(file.cert),
                    key: over.key.or(file.key),
                    client_ca: over.client_ca.or(file.client_ca),
                }),
                (file, over) => over.or(file),
            },
            limits: LimitSettings {
                max_message_bytes: over
                    .limits
                    .max_message_bytes
                    .or(self.limits.max_message_bytes),
                max_batch_events: over
                    .limits
                    .max_batch_events
                    .or(self.limits.max_batch_events),
                max_concurrent_streams: over
                    .limits
                    .max_concurrent_streams
                    .or(self.limits.max_concurrent_streams),
                request_timeout_secs: over
                    .limits
                    .request_timeout_secs
                    .or(self.limits.request_timeout_secs),
                keepalive_secs: over.limits.keepalive_secs.or(self.limits.keepalive_secs),
                min_free_disk_mib: over
                    .limits
                    .min_free_disk_mib
                    .or(self.limits.min_free_disk_mib),
            },
        }
    }

    /// Applies the defaults and checks the rules that span keys. `master_key_env` is the
    /// value of `CONSENT_LEDGER_MASTER_KEY`, used when no master key file is set.
    pub fn resolve(&self, master_key_env: Option<String>) -> Result<Resolved, ConfigError> {
        let defaults = ServeConfig::default();
        let limits = Limits::default();
        let tls = match &self.tls {
            None => None,
            Some(TlsSettings {
                cert: Some(cert),
                key: Some(key),
                client_ca,
            }) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: client_ca.clone(),
            }),
            Some(_) => {
                return Err(ConfigError::Rule {
                    key: "tls",
                    rule: "cert and key are both required to serve TLS".into(),
                })
            }
        };
        if tls.as_ref().is_some_and(|t| t.client_ca.is_some()) && self.callers.is_none() {
            return Err(ConfigError::Rule {
                key: "tls.client_ca",
                rule: "mutual TLS identifies callers by the callers file: set callers too".into(),
            });
        }
        let listen = self.listen.unwrap_or(defaults.listen);
        let insecure = self.insecure.unwrap_or(false);
        if !listen.ip().is_loopback() && self.callers.is_none() && !insecure {
            return Err(ConfigError::Rule {
                key: "listen",
                rule: format!(
                    "refusing to listen on {listen} without authentication; listen on loopback, set callers, or set insecure"
                ),
            });
        }
        if self
            .metrics_listen
            .is_some_and(|m| m.port() != 0 && m == listen)
        {
            return Err(ConfigError::Rule {
                key: "metrics_listen",
                rule: "must differ from listen".into(),
            });
        }
        let positive = |key: &'static str, value: Option<u64>| match value {
            Some(0) => Err(ConfigError::Rule {
                key,
                rule: "must be at least 1".into(),
            }),
            _ => Ok(()),
        };
        positive("checkpoint_interval_ms", self.checkpoint_interval_ms)?;
        positive("block_cache_mib", self.block_cache_mib)?;
        positive("state_cache_mib", self.state_cache_mib)?;
        positive("grpc_threads", self.grpc_threads)?;
        if self.grpc_threads.is_some_and(|n| n > MAX_GRPC_THREADS) {
            return Err(ConfigError::Rule {
                key: "grpc_threads",
                rule: format!("must be at most {MAX_GRPC_THREADS}"),
            });
        }
        positive(
            "limits.max_message_bytes",
            self.limits.max_message_bytes.map(|v| v as u64),
        )?;
        positive(
            "limits.max_batch_events",
            self.limits.max_batch_events.map(|v| v as u64),
        )?;
        positive(
            "limits.max_concurrent_streams",
            self.limits.max_concurrent_streams.map(u64::from),
        )?;
        positive(
            "limits.request_timeout_secs",
            self.limits.request_timeout_secs,
        )?;
        Ok(Resolved {
            serve: ServeConfig {
                listen,
                metrics_listen: self.metrics_listen,
                data_dir: self.data_dir.clone().unwrap_or(defaults.data_dir),
                limits: Limits {
                    max_message_bytes: self
                        .limits
                        .max_message_bytes
                        .unwrap_or(limits.max_message_bytes),
                    max_batch_events: self
                        .limits
                        .max_batch_events
                        .unwrap_or(limits.max_batch_events),
                    max_concurrent_streams: self
                        .limits
                        .max_concurrent_streams
                        .unwrap_or(limits.max_concurrent_streams),
                    request_timeout: self
                        .limits
                        .request_timeout_secs
                        .map_or(limits.request_timeout, Duration::from_secs),
                    keepalive: self
                        .limits
                        .keepalive_secs
                        .map_or(limits.keepalive, Duration::from_secs),
                    min_free_disk_bytes: self
                        .limits
                        .min_free_disk_mib
                        .map_or(limits.min_free_disk_bytes, |mib| mib.saturating_mul(MIB)),
                },
                callers_file: self.callers.clone(),
                tls,
                checkpoint_key: self.checkpoint_key.clone(),
                log_origin: self.log_origin.clone(),
                checkpoint_interval: self
                    .checkpoint_interval_ms
                    .map_or(defaults.checkpoint_interval, Duration::from_millis),
                block_cache_bytes: self
                    .block_cache_mib
                    .map_or(defaults.block_cache_bytes, mib_to_bytes),
                state_cache_bytes: self
                    .state_cache_mib
                    .map_or(defaults.state_cache_bytes, mib_to_bytes),
                grpc_threads: self
                    .grpc_threads
                    .map_or(defaults.grpc_threads, |n| n as usize),
                policy_file: self.policy.clone(),
                master_key: match (&self.master_key_file, master_key_env) {
                    (Some(path), _) => MasterKeySource::File(path.clone()),
                    (None, Some(hex)) => MasterKeySource::Environment(hex),
                    (None, None) => MasterKeySource::DataDir,
                },
                ..defaults
            },
            insecure,
            log_format: self.log_format.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_overridden_and_resolved() {
        let file = Settings::from_toml(
            "c.toml",
            "listen = \"127.0.0.1:7000\"\nmetrics_listen = \"127.0.0.1:9464\"\ndata_dir = \"/var/lib/x\"\nlog_format = \"json\"\nblock_cache_mib = 512\ngrpc_threads = 3\n[limits]\nmax_batch_events = 50\nmin_free_disk_mib = 64\n",
        )
        .unwrap();
        let flags = Settings {
            listen: Some("127.0.0.1:7001".parse().unwrap()),
            ..Settings::default()
        };
        let resolved = file.overridden_by(flags).resolve(None).unwrap();
        assert_eq!(resolved.serve.listen.port(), 7001);
        assert_eq!(resolved.serve.metrics_listen.map(|a| a.port()), Some(9464));
        assert_eq!(resolved.serve.data_dir, PathBuf::from("/var/lib/x"));
        assert_eq!(resolved.serve.limits.max_batch_events, 50);
        assert_eq!(resolved.serve.limits.max_message_bytes, 4 * 1024 * 1024);
        assert_eq!(resolved.serve.limits.min_free_disk_bytes, 64 * MIB);
        assert_eq!(resolved.serve.block_cache_bytes, 512 << 20);
        assert_eq!(resolved.serve.grpc_threads, 3);
        assert_eq!(resolved.log_format, LogFormat::Json);
        assert_eq!(resolved.serve.master_key, MasterKeySource::DataDir);
    }

    #[test]
    fn bad_files_and_rules_name_the_line_or_key() {
        let err = Settings::from_toml("c.toml", "listen = \"127.0.0.1:7000\"\nlisten_port = 3\n")
            .unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { line: 2, message, .. } if message.contains("listen_port")),
            "{err}"
        );
        let err = Settings::from_toml("c.toml", "listen = \"nowhere\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { line: 1, .. }), "{err}");
        let open = Settings {
            listen: Some("0.0.0.0:50051".parse().unwrap()),
            ..Settings::default()
        };
        assert!(matches!(
            open.resolve(None),
            Err(ConfigError::Rule { key: "listen", .. })
        ));
        let half_tls = Settings {
            tls: Some(TlsSettings {
                cert: Some("c.pem".into()),
                ..TlsSettings::default()
            }),
            ..Settings::default()
        };
        assert!(matches!(
            half_tls.resolve(None),
            Err(ConfigError::Rule { key: "tls", .. })
        ));
        let zero = Settings {
            checkpoint_interval_ms: Some(0),
            ..Settings::default()
        };
        assert!(matches!(
            zero.resolve(None),
            Err(ConfigError::Rule {
                key: "checkpoint_interval_ms",
                ..
            })
        ));
        for threads in [0, MAX_GRPC_THREADS + 1] {
            let threads = Settings {
                grpc_threads: Some(threads),
                ..Settings::default()
            };
            assert!(matches!(
                threads.resolve(None),
                Err(ConfigError::Rule {
                    key: "grpc_threads",
                    ..
                })
            ));
        }
    }
}
