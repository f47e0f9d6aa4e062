//! Signed checkpoints: the C2SP `tlog-checkpoint` body (origin, tree size, base64 root)
//! inside a C2SP `signed-note` with an Ed25519 signature. Keys use the signed-note text
//! forms, so the Go `sumdb/note` and transparency-dev tools read them too:
//!
//! ```text
//! verifier key: <name>+<hex key id>+<base64(0x01 || public key)>
//! signer key:   PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>
//! key id:       SHA-256(name || 0x0A || 0x01 || public key)[..4]
//! ```
//!
//! Pure: the caller supplies the randomness for a new key and does the I/O.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SIGNATURE_LENGTH};
use sha2::{Digest, Sha256};

use crate::ledger::Hash;

/// The signed-note signature type of Ed25519.
const ED25519_TYPE: u8 = 0x01;
/// Signature lines start with an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// More signature lines than this and the note is refused (as the Go reference does).
const MAX_SIGNATURES: usize = 100;
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

/// A key, note or checkpoint that is malformed or does not verify. Says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key's text is not in the signed-note key form.
    #[error("malformed key: {0}")]
    BadKey(&'static str),
    /// A key name is empty or holds a space or '+'.
    #[error("invalid key name {0:?}: it must be non-empty, without spaces or '+'")]
    BadName(String),
    /// The note is not text, a blank line, and signature lines.
    #[error("malformed signed note: {0}")]
    BadNote(&'static str),
    /// No signature line comes from the key we trust.
    #[error("the note carries no signature by {0}")]
    NotSignedBy(String),
    /// A signature line by our key does not verify.
    #[error("the signature by {0} does not verify: the note was altered or forged")]
    BadSignature(String),
    /// The note's text is not a checkpoint.
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(String),
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::BadName(name.to_owned()));
    }
    Ok(())
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519_TYPE]);
    hasher.update(public);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// `name`, `hex id`, `base64(type || key)` from `name+id+key`, checking the id and type.
fn split_key(text: &str) -> Result<(&str, [u8; 4], [u8; 32]), NoteError> {
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(NoteError::BadKey("expected name+keyid+key"));
    };
    check_name(name)?;
    let mut id = [0u8; 4];
    hex::decode_to_slice(id_hex, &mut id)
        .map_err(|_| NoteError::BadKey("the key id is not 8 hex digits"))?;
    let raw = BASE64
        .decode(key_b64)
        .map_err(|_| NoteError::BadKey("the key is not base64"))?;
    let [kind, key @ ..] = raw.as_slice() else {
        return Err(NoteError::BadKey("the key is empty"));
    };
    if *kind != ED25519_TYPE {
        return Err(NoteError::BadKey(
            "only Ed25519 keys (type 0x01) are supported",
        ));
    }
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| NoteError::BadKey("an Ed25519 key is 32 bytes"))?;
    Ok((name, id, key))
}

/// An Ed25519 note signer with its key name.
pub struct SigningKey {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("SigningKey")
            .field("verifier", &self.verifier().to_string())
            .finish()
    }
}

impl SigningKey {
    /// A key named `name` from 32 bytes of seed (fresh randomness for a new key).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`.
    pub fn from_text(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .trim()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or(NoteError::BadKey("a signer key starts with PRIVATE+KEY+"))?;
        let (name, id, seed) = split_key(rest)?;
        let key = Self::from_seed(name, seed)?;
        if key.verifier().id != id {
            return Err(NoteError::BadKey(
                "the key id does not match the name and key",
            ));
        }
        Ok(key)
    }

    /// The signer key text, for the key file. Secret.
    pub fn to_text(&self) -> String {
        let mut raw = vec![ED25519_TYPE];
        raw.extend_from_slice(self.key.as_bytes());
        let verifier = self.verifier();
        format!(
            "{PRIVATE_PREFIX}{}+{}+{}",
            self.name,
            hex::encode(verifier.id),
            BASE64.encode(raw)
        )
    }

    /// The key name (for checkpoints, the log's origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        let key = self.key.verifying_key();
        VerifierKey {
            id: key_id(&self.name, key.as_bytes()),
            name: self.name.clone(),
            key,
        }
    }

    /// Signs `text` (non-empty, ending in a newline, no blank line) as a signed note.
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        if text.is_empty() || !text.ends_with('\n') || text.contains("\n\n") {
            return Err(NoteError::BadNote(
                "the text must be non-empty, end with a newline and hold no blank line",
            ));
        }
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.verifier().id.to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(blob)
        ))
    }
}

/// An Ed25519 note verifier: what an auditor pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    key: ed25519_dalek::VerifyingKey,
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![ED25519_TYPE];
        raw.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            BASE64.encode(raw)
        )
    }
}

impl VerifierKey {
    /// Parses `<name>+<id>+<base64(0x01 || public key)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let (name, id, public) = split_key(text)?;
        if key_id(name, &public) != id {
            return Err(NoteError::BadKey(
                "the key id does not match the name and key",
            ));
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::BadKey("not a valid Ed25519 public key"))?;
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks `note` carries a valid signature by this key and returns the signed text.
    /// Signatures by other keys are ignored; a bad signature by this key rejects the note.
    pub fn open<'n>(&self, note: &'n str) -> Result<&'n str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::BadNote("no blank line before the signatures"))?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        if !signatures.ends_with('\n') {
            return Err(NoteError::BadNote("the last signature line has no newline"));
        }
        let lines: Vec<&str> = signatures[..signatures.len() - 1].split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(NoteError::BadNote("more than 100 signature lines"));
        }
        let mut found = false;
        for line in lines {
            let rest = line
                .strip_prefix(SIGNATURE_PREFIX)
                .ok_or(NoteError::BadNote(
                    "a signature line must start with '\u{2014} '",
                ))?;
            let (name, blob) = rest.split_once(' ').ok_or(NoteError::BadNote(
                "a signature line is '\u{2014} name signature'",
            ))?;
            let blob = BASE64
                .decode(blob)
                .map_err(|_| NoteError::BadNote("a signature is not base64"))?;
            if blob.len() < 4 {
                return Err(NoteError::BadNote("a signature is shorter than its key id"));
            }
            if name != self.name || blob[..4] != self.id {
                continue;
            }
            let signature: [u8; SIGNATURE_LENGTH] = blob[4..]
                .try_into()
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            self.key
                .verify_strict(
                    text.as_bytes(),
                    &ed25519_dalek::Signature::from_bytes(&signature),
                )
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            found = true;
        }
        if found {
            Ok(text)
        } else {
            Err(NoteError::NotSignedBy(self.to_string()))
        }
    }
}

/// A tree head as a checkpoint states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeCheckpoint {
    /// Number of entries.
    pub size: u64,
    /// RFC 9162 root hash at that size.
    pub root: Hash,
}

/// The checkpoint body: `<origin>\n<size>\n<base64 root>\n`.
pub fn checkpoint_text(origin: &str, head: TreeCheckpoint) -> String {
    format!("{origin}\n{}\n{}\n", head.size, BASE64.encode(head.root))
}

/// Signs a checkpoint of `head` with `key`; the origin is the key name.
pub fn sign_checkpoint(key: &SigningKey, head: TreeCheckpoint) -> Result<String, NoteError> {
    key.sign_note(&checkpoint_text(key.name(), head))
}

/// Verifies a signed checkpoint with `key` and returns the tree head it states. The
/// checkpoint's origin must be the key's name.
pub fn open_checkpoint(note: &str, key: &VerifierKey) -> Result<TreeCheckpoint, NoteError> {
    let (origin, head) = parse_unverified(key.open(note)?)?;
    if origin != key.name() {
        return Err(NoteError::BadCheckpoint(format!(
            "origin {origin:?} is not the log {:?} the key belongs to",
            key.name()
        )));
    }
    Ok(head)
}

/// Reads the origin and tree head of a checkpoint without checking its signature: for
/// the server's own stored checkpoints and for picking the key to check it with.
pub fn parse_unverified(note: &str) -> Result<(&str, TreeCheckpoint), NoteError> {
    let bad = |what: &str| NoteError::BadCheckpoint(what.to_owned());
    let mut lines = note.lines();
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| bad("no origin line"))?;
    let size = lines
        .next()
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or_else(|| bad("the second line is not a tree size"))?;
    let root = lines
        .next()
        .and_then(|l| BASE64.decode(l).ok())
        .and_then(|r| <Hash>::try_from(r).ok())
        .ok_or_else(|| bad("the third line is not a base64 SHA-256 root hash"))?;
    Ok((origin, TreeCheckpoint { size, root }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of golang.org/x/mod/sumdb/note.
    const GO_SIGNER: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_NOTE_SIGNATURE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn signs_and_verifies_the_go_reference_note_byte_for_byte() {
        let signer = SigningKey::from_text(GO_SIGNER).unwrap();
        assert_eq!(signer.to_text(), GO_SIGNER);
        assert_eq!(signer.verifier().to_string(), GO_VERIFIER);
        let note = signer.sign_note(GO_TEXT).unwrap();
        assert_eq!(note, format!("{GO_TEXT}\n{GO_NOTE_SIGNATURE}"));
        let verifier = VerifierKey::parse(GO_VERIFIER).unwrap();
        assert_eq!(verifier.open(&note).unwrap(), GO_TEXT);
    }

    #[test]
    fn altered_forged_or_foreign_notes_are_refused() {
        let verifier = VerifierKey::parse(GO_VERIFIER).unwrap();
        let note = format!("{GO_TEXT}\n{GO_NOTE_SIGNATURE}");
        let altered = note.replacen("problem", "pr0blem", 1);
        assert!(matches!(
            verifier.open(&altered),
            Err(NoteError::BadSignature(_))
        ));
        let other = SigningKey::from_seed("PeterNeumann", [7; 32]).unwrap();
        let forged = other.sign_note(GO_TEXT).unwrap();
        assert!(matches!(
            verifier.open(&forged),
            Err(NoteError::NotSignedBy(_))
        ));
        assert!(verifier.open(GO_TEXT).is_err());
        // A co-signature from an unknown key is ignored.
        let cosigned = format!(
            "{note}{}",
            other
                .sign_note(GO_TEXT)
                .unwrap()
                .split_at(GO_TEXT.len() + 1)
                .1
        );
        assert_eq!(verifier.open(&cosigned).unwrap(), GO_TEXT);
    }

    #[test]
    fn keys_reject_bad_text() {
        assert!(VerifierKey::parse(
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )
        .is_err());
        assert!(VerifierKey::parse("PeterNeumann+c74f20a3").is_err());
        assert!(SigningKey::from_text(GO_VERIFIER).is_err());
        assert!(SigningKey::from_seed("has space", [1; 32]).is_err());
        assert!(SigningKey::from_seed("a+b", [1; 32]).is_err());
    }

    #[test]
    fn checkpoints_round_trip_and_bind_the_origin() {
        let key = SigningKey::from_seed("ledger.example/consent", [3; 32]).unwrap();
        let head = TreeCheckpoint {
            size: 1234,
            root: [0xab; 32],
        };
        let note = sign_checkpoint(&key, head).unwrap();
        assert!(note.starts_with("ledger.example/consent\n1234\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\n\u{2014} ledger.example/consent "));
        assert_eq!(open_checkpoint(&note, &key.verifier()).unwrap(), head);
        assert_eq!(
            parse_unverified(&note).unwrap(),
            ("ledger.example/consent", head)
        );
        let tampered = note.replacen("1234", "1235", 1);
        assert!(open_checkpoint(&tampered, &key.verifier()).is_err());
    }
}
