//! Personal data at rest: per-contact data keys wrapped by the master key, the AEAD that
//! seals each personal-data record, and keyed digests of identities for suppression.
//! Pure: no I/O and no clock; randomness comes in as an `Entropy` value drawn by the caller.
//!
//! Every sealed value is `version (1) || nonce (24) || XChaCha20-Poly1305 ciphertext`. The
//! associated data binds a record to its contact and position (and a wrapped key to its
//! contact), so a sealed value moved elsewhere fails to open rather than decrypting as
//! someone else's data.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::model::PersonalRecord;

/// A SHA-256-sized digest or key.
pub type Digest32 = [u8; 32];

const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// A sealed value or key text that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The master key text is not 64 hex digits.
    #[error("the master key must be 64 hexadecimal digits (32 bytes)")]
    MalformedMasterKey,
    /// A sealed value is too short or of an unknown version.
    #[error("sealed value is malformed")]
    Malformed,
    /// Authentication failed: wrong key, wrong contact or position, or altered bytes.
    #[error("sealed value does not open with this key (wrong key or altered bytes)")]
    Unauthentic,
    /// The operating system gave no randomness.
    #[error("no randomness available: {0}")]
    Random(String),
}

/// The master key: wraps every contact's data key and keys the identity digests. Kept
/// only in memory and in its key file; erased from memory when dropped.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A master key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Parses the key file text: 64 hex digits, surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), key.as_mut_slice())
            .map_err(|_| CryptoError::MalformedMasterKey)?;
        Ok(Self(key))
    }

    /// A new random key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut_slice()).map_err(|e| CryptoError::Random(e.to_string()))?;
        Ok(Self(key))
    }

    /// The key file text: 64 lowercase hex digits and a newline.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}\n", hex::encode(self.0.as_slice())))
    }
}

/// One contact's data key. Erased from memory when dropped; destroyed for good by
/// deleting its wrapped form (erasure).
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl Clone for DataKey {
    fn clone(&self) -> Self {
        Self(Zeroizing::new(*self.0))
    }
}

impl DataKey {
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_slice().into())
    }
}

/// 32 random bytes drawn by the caller of an append that carries personal data, from
/// which the writer derives, deterministically, a new data key (used only if the contact
/// has none yet) and the nonces. Keeping the draw outside the writer keeps its apply step
/// a function of its inputs.
#[derive(Clone, PartialEq, Eq)]
pub struct Entropy([u8; 32]);

impl std::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entropy(..)")
    }
}

impl Entropy {
    /// Fresh randomness from the operating system.
    pub fn draw() -> Result<Self, CryptoError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| CryptoError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// Fixed bytes, for tests and replays.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes, to carry in a submission.
    pub fn into_bytes(self) -> [u8; 32] {
        self.0
    }

    fn expand<const N: usize>(&self, label: &[u8]) -> [u8; N] {
        let mut out = [0u8; N];
        Hkdf::<Sha256>::new(None, &self.0)
            .expand(label, &mut out)
            .expect("HKDF-SHA256 yields up to 8160 bytes");
        out
    }

    /// The data key a contact gets if it has none yet.
    pub fn data_key(&self) -> DataKey {
        DataKey(Zeroizing::new(self.expand(b"consent-ledger data key")))
    }

    fn record_nonce(&self) -> [u8; NONCE_LEN] {
        self.expand(b"consent-ledger record nonce")
    }

    fn wrap_nonce(&self) -> [u8; NONCE_LEN] {
        self.expand(b"consent-ledger wrap nonce")
    }
}

/// The keys derived from the master key (HKDF-SHA256, one label each).
pub struct Keyring {
    wrap: XChaCha20Poly1305,
    identity: Zeroizing<[u8; 32]>,
    fingerprint: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(..)")
    }
}

/// A keyed digest of one normalised identity (an email address or a phone number).
pub type IdentityDigest = Digest32;

impl Keyring {
    /// Derives the keyring from the master key.
    pub fn new(master: &MasterKey) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(b"consent-ledger v1"), master.0.as_slice());
        let derive = |label: &[u8]| {
            let mut key = Zeroizing::new([0u8; 32]);
            hkdf.expand(label, key.as_mut_slice())
                .expect("HKDF-SHA256 yields 32 bytes");
            key
        };
        let wrap_key = derive(b"data-key wrapping");
        Self {
            wrap: XChaCha20Poly1305::new(wrap_key.as_slice().into()),
            identity: derive(b"identity digests"),
            fingerprint: derive(b"request fingerprints"),
        }
    }

    /// Wraps `key` for `contact` with a nonce derived from `entropy`.
    pub fn wrap_data_key(&self, contact: &str, key: &DataKey, entropy: &Entropy) -> Vec<u8> {
        seal_with(
            &self.wrap,
            &wrap_aad(contact),
            entropy.wrap_nonce(),
            key.0.as_slice(),
        )
    }

    /// Unwraps the data key stored for `contact`.
    pub fn unwrap_data_key(&self, contact: &str, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        let plain = Zeroizing::new(open_with(&self.wrap, &wrap_aad(contact), wrapped)?);
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        Ok(DataKey(Zeroizing::new(bytes)))
    }

    /// Keyed digests of the identities in `record` (normalised email, normalised phone),
    /// the values a suppression list keeps instead of the identities themselves.
    pub fn identity_digests(&self, record: &PersonalRecord) -> Vec<IdentityDigest> {
        let mut digests = Vec::with_capacity(2);
        if let Some(email) = record.email.as_deref().and_then(normalise_email) {
            digests.push(self.keyed(&self.identity, b"email", email.as_bytes()));
        }
        if let Some(phone) = record.phone.as_deref().and_then(normalise_phone) {
            digests.push(self.keyed(&self.identity, b"phone", phone.as_bytes()));
        }
        digests
    }

    /// A keyed digest of request bytes that may contain personal data, so an idempotency
    /// record can recognise a retry without keeping a plain hash of the data.
    pub fn fingerprint(&self, bytes: &[u8]) -> Digest32 {
        self.keyed(&self.fingerprint, b"request", bytes)
    }

    fn keyed(&self, key: &[u8; 32], domain: &[u8], value: &[u8]) -> Digest32 {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(domain);
        mac.update(&[0]);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }
}

/// Seals the personal-data record at `contact_seq` of `contact` under the contact's key.
pub fn seal_record(
    key: &DataKey,
    contact: &str,
    contact_seq: u64,
    entropy: &Entropy,
    plaintext: &[u8],
) -> Vec<u8> {
    seal_with(
        &key.cipher(),
        &record_aad(contact, contact_seq),
        entropy.record_nonce(),
        plaintext,
    )
}

/// Opens a record sealed by [`seal_record`] for the same contact and position.
pub fn open_record(
    key: &DataKey,
    contact: &str,
    contact_seq: u64,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    open_with(&key.cipher(), &record_aad(contact, contact_seq), sealed).map(Zeroizing::new)
}

/// Lower case, surrounding whitespace removed; `None` if it is not `local@domain`.
pub fn normalise_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then_some(email)
}

/// Digits only, with a leading `+` kept; `None` if fewer than 5 digits remain.
pub fn normalise_phone(phone: &str) -> Option<String> {
    let phone = phone.trim();
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 5 {
        return None;
    }
    Some(if phone.starts_with('+') {
        format!("+{digits}")
    } else {
        digits
    })
}

fn wrap_aad(contact: &str) -> Vec<u8> {
    let mut aad = b"consent-ledger data key v1\0".to_vec();
    aad.extend_from_slice(contact.as_bytes());
    aad
}

fn record_aad(contact: &str, contact_seq: u64) -> Vec<u8> {
    let mut aad = b"consent-ledger personal record v1\0".to_vec();
    aad.extend_from_slice(contact.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&contact_seq.to_be_bytes());
    aad
}

fn seal_with(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Vec<u8> {
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

fn open_with(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEALED_VERSION {
        return Err(CryptoError::Malformed);
    }
    let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Unauthentic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(byte: u8) -> Keyring {
        Keyring::new(&MasterKey::from_bytes([byte; 32]))
    }

    #[test]
    fn records_open_only_with_their_key_contact_and_position() {
        let entropy = Entropy::from_bytes([9; 32]);
        let key = entropy.data_key();
        let sealed = seal_record(&key, "crm-1", 3, &entropy, b"{\"email\":\"a@b.example\"}");
        assert!(!sealed
            .windows(b"a@b.example".len())
            .any(|w| w == b"a@b.example"));
        assert_eq!(
            open_record(&key, "crm-1", 3, &sealed).unwrap().as_slice(),
            b"{\"email\":\"a@b.example\"}"
        );
        let other = Entropy::from_bytes([8; 32]).data_key();
        for (key, contact, seq) in [(&other, "crm-1", 3), (&key, "crm-2", 3), (&key, "crm-1", 4)] {
            assert_eq!(
                open_record(key, contact, seq, &sealed).unwrap_err(),
                CryptoError::Unauthentic
            );
        }
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(
            open_record(&key, "crm-1", 3, &altered).unwrap_err(),
            CryptoError::Unauthentic
        );
        assert_eq!(
            open_record(&key, "crm-1", 3, &sealed[..20]).unwrap_err(),
            CryptoError::Malformed
        );
    }

    #[test]
    fn data_keys_unwrap_only_with_the_master_key_they_were_wrapped_with() {
        let entropy = Entropy::from_bytes([1; 32]);
        let key = entropy.data_key();
        let wrapped = keyring(5).wrap_data_key("crm-1", &key, &entropy);
        let unwrapped = keyring(5).unwrap_data_key("crm-1", &wrapped).unwrap();
        assert_eq!(*unwrapped.0, *key.0);
        assert_eq!(
            keyring(6).unwrap_data_key("crm-1", &wrapped).unwrap_err(),
            CryptoError::Unauthentic
        );
        assert_eq!(
            keyring(5).unwrap_data_key("crm-2", &wrapped).unwrap_err(),
            CryptoError::Unauthentic
        );
    }

    #[test]
    fn identity_digests_follow_the_normalised_identity_and_the_key() {
        let record = |email: &str, phone: Option<&str>| PersonalRecord {
            email: Some(email.into()),
            phone: phone.map(Into::into),
            ..PersonalRecord::default()
        };
        let ring = keyring(1);
        let a = ring.identity_digests(&record(" Ada@Example.COM ", Some("+49 30 1234-567")));
        let b = ring.identity_digests(&record("ada@example.com", Some("+4930 1234567")));
        assert_eq!(a.len(), 2);
        assert_eq!(a, b);
        assert_ne!(
            ring.identity_digests(&record("ada2@example.com", None))[0],
            a[0]
        );
        assert_ne!(
            keyring(2).identity_digests(&record("ada@example.com", None))[0],
            a[0]
        );
        assert!(ring
            .identity_digests(&record("not-an-email", Some("12")))
            .is_empty());
    }

    #[test]
    fn master_key_text_round_trips_and_rejects_garbage() {
        let key = MasterKey::from_bytes([0xab; 32]);
        let again = MasterKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(*again.0, [0xab; 32]);
        assert_eq!(
            MasterKey::from_hex("abc").unwrap_err(),
            CryptoError::MalformedMasterKey
        );
    }
}
