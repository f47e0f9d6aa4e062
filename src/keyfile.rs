//! Key files kept beside the ledger: read them, or create them on first start for the
//! embedded default. A new key is written with mode 0600 and synced before it is used,
//! so nothing is ever signed with a key that a crash could lose.

use std::io::Write as _;
use std::path::Path;

use crate::audit::checkpoint::{NoteError, SigningKey};
use crate::crypto::{CryptoError, MasterKey};

/// The checkpoint signing key's file name in the data directory.
pub const CHECKPOINT_KEY_FILE: &str = "checkpoint-signing.key";

/// The master key's file name in the data directory (embedded default only).
pub const MASTER_KEY_FILE: &str = "master.key";

/// A key file that cannot be read, parsed or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not hold a signer key.
    #[error("key file {path}: {source}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        source: NoteError,
    },
    /// No randomness for a new key.
    #[error("cannot generate a key: {0}")]
    Random(String),
    /// The file or variable does not hold a master key.
    #[error("master key {source_name}: {source}")]
    MalformedMasterKey {
        /// The file, or the environment variable.
        source_name: String,
        /// What is wrong.
        source: CryptoError,
    },
}

/// Reads the master key from `path`. If it does not exist and `create` is set, generates
/// one, writes it (mode 0600, synced) and says loudly where: whoever holds this file and
/// a copy of the data directory can read every personal record not yet erased.
pub fn load_or_create_master_key(path: &Path, create: bool) -> Result<MasterKey, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = zeroize::Zeroizing::new(text);
            MasterKey::from_hex(&text).map_err(|source| KeyFileError::MalformedMasterKey {
                source_name: path.display().to_string(),
                source,
            })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && create => {
            let key = MasterKey::generate().map_err(|e| KeyFileError::Random(e.to_string()))?;
            write_secret(path, key.to_hex().as_bytes()).map_err(io)?;
            tracing::warn!(
                path = %path.display(),
                "GENERATED A NEW MASTER KEY for personal data: back it up apart from the data directory and move it out of it in production (--master-key-file); without it no personal record can be read"
            );
            Ok(key)
        }
        Err(err) => Err(io(err)),
    }
}

/// Reads the checkpoint signing key from `path`. If it does not exist and `create` is
/// set, generates one named `origin` (or `consent-ledger/<random>`), writes it, and
/// says so loudly. Returns the key and whether it was created.
pub fn load_or_create_signing_key(
    path: &Path,
    create: bool,
    origin: Option<&str>,
) -> Result<(SigningKey, bool), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = SigningKey::from_text(&text).map_err(|source| KeyFileError::Malformed {
                path: path.display().to_string(),
                source,
            })?;
            Ok((key, false))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && create => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
            let name = match origin {
                Some(origin) => origin.to_owned(),
                None => {
                    let mut tag = [0u8; 6];
                    getrandom::fill(&mut tag).map_err(|e| KeyFileError::Random(e.to_string()))?;
                    format!("consent-ledger/{}", hex::encode(tag))
                }
            };
            let key =
                SigningKey::from_seed(&name, seed).map_err(|source| KeyFileError::Malformed {
                    path: path.display().to_string(),
                    source,
                })?;
            write_secret(path, format!("{}\n", key.to_text()).as_bytes()).map_err(io)?;
            tracing::warn!(
                path = %path.display(),
                verifier_key = %key.verifier(),
                "generated a new checkpoint signing key; back it up and give auditors the verifier key"
            );
            Ok((key, true))
        }
        Err(err) => Err(io(err)),
    }
}

/// Creates `path` (never overwriting) with mode 0600, writes `bytes`, and syncs the file
/// and its directory.
fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_is_created_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        assert!(load_or_create_master_key(&path, false).is_err());
        let key = load_or_create_master_key(&path, true).unwrap();
        let again = load_or_create_master_key(&path, true).unwrap();
        assert_eq!(*key.to_hex(), *again.to_hex());
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(
            load_or_create_master_key(&path, true),
            Err(KeyFileError::MalformedMasterKey { .. })
        ));
    }

    #[test]
    fn creates_once_then_reads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_KEY_FILE);
        assert!(load_or_create_signing_key(&path, false, None).is_err());
        let (key, created) =
            load_or_create_signing_key(&path, true, Some("ledger.test/a")).unwrap();
        assert!(created);
        assert_eq!(key.name(), "ledger.test/a");
        let (again, created) = load_or_create_signing_key(&path, true, None).unwrap();
        assert!(!created);
        assert_eq!(again.verifier(), key.verifier());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            load_or_create_signing_key(&path, true, None),
            Err(KeyFileError::Malformed { .. })
        ));
    }
}
