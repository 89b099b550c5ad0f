//! The cryptographic primitives of the encrypted backend, in one place:
//! AES-256-GCM-SIV sealing, per-file key derivation (HKDF-SHA256),
//! passphrase stretching (Argon2id) and the key-check value.

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use std::fmt;

/// Bytes of an authentication tag.
pub const TAG_LEN: usize = 16;

/// A 256-bit key. Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub(crate) [u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key stretched from a passphrase with Argon2id and `salt`.
    pub fn from_passphrase(passphrase: &str, salt: &[u8]) -> Result<Self, String> {
        let mut out = [0u8; 32];
        argon2::Argon2::default()
            .hash_password_into(passphrase.as_bytes(), salt, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(Self(out))
    }

    /// The key of one file: HKDF-SHA256(ikm = this key, salt = database id,
    /// info = "entidb file key" ‖ file id). Distinct files never share a
    /// key, so their nonce spaces are independent.
    pub fn derive_file_key(&self, db_id: &[u8; 16], file_id: &[u8; 16]) -> Result<Self, String> {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(db_id), &self.0);
        let mut info = b"entidb file key".to_vec();
        info.extend_from_slice(file_id);
        let mut out = [0u8; 32];
        hk.expand(&info, &mut out).map_err(|e| e.to_string())?;
        Ok(Self(out))
    }

    /// A short fingerprint (for the nonce ledger in tests; not secret-safe
    /// for anything else).
    pub fn fingerprint(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.0)
    }

    fn cipher(&self) -> Result<Aes256GcmSiv, String> {
        Aes256GcmSiv::new_from_slice(&self.0).map_err(|e| e.to_string())
    }
}

/// Encrypts `msg` under `key`, `nonce` and `aad`: ciphertext ‖ tag.
pub fn seal(key: &Key, nonce: &[u8; 12], aad: &[u8], msg: &[u8]) -> Result<Vec<u8>, String> {
    key.cipher()?
        .encrypt(&Nonce::from(*nonce), Payload { msg, aad })
        .map_err(|_| "encryption failed".to_string())
}

/// Decrypts and authenticates; `None` when the tag does not verify.
pub fn open(key: &Key, nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    key.cipher()
        .ok()?
        .decrypt(&Nonce::from(*nonce), Payload { msg: sealed, aad })
        .ok()
}

/// The key-check value stored in every file header: a known plaintext sealed
/// under the database key with a fixed nonce and the database id as AAD.
/// Deterministic, so a wrong key is recognised before any data is read.
pub fn key_check(key: &Key, db_id: &[u8; 16]) -> Result<[u8; 32], String> {
    let sealed = seal(key, &[0u8; 12], db_id, b"entidb key check")?;
    sealed
        .try_into()
        .map_err(|_| "key check has the wrong length".to_string())
}

/// Fills `buf` with random bytes from the operating system.
pub fn random(buf: &mut [u8]) -> Result<(), String> {
    getrandom::fill(buf).map_err(|e| e.to_string())
}
