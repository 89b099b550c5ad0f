//! Encryption at rest: a [`Storage`] wrapper that encrypts every file.
//!
//! The scheme is described in `docs/encryption.md`; in short:
//!
//! ```text
//!   file   := slot A (128 B) | slot B (128 B) | chunk*
//!   slot   := "EENC" | major u16 | minor u16 | db_id 16 | file_id 16 | salt 16
//!             | base_epoch u32 | cur_epoch u32 | key_check 32 | slot_tag 16
//!             | slot_nonce 8 | 0×8
//!   chunk  := plain_len u32 | epoch u32 | counter u64 | AES-256-GCM-SIV(ciphertext ‖ tag)
//! ```
//!
//! - Every file has its own key, derived from the database key and its random
//!   `file_id`, so nonces of different files never meet under one key.
//! - Files are append-only at this layer: each append becomes one or more new
//!   chunks (≤ 64 KiB); nothing is ever re-encrypted in place, so a torn write
//!   can only damage the unacknowledged tail, which is cut off as in the WAL.
//! - Nonce = `epoch ‖ counter`. The first write through a handle bumps
//!   `cur_epoch` and makes the header durable (fsync, and a directory fsync
//!   for a new file) before any chunk is sealed; `counter` counts chunks sealed
//!   in that epoch. An epoch is never reused, even after a crash, so no nonce
//!   repeats under a file key. Truncation to zero starts a new epoch and
//!   raises `base_epoch`: chunks from before it are rejected if replayed.
//! - AAD = db_id ‖ file_id ‖ logical offset ‖ epoch ‖ plain_len ‖ major, so a
//!   chunk moved within a file, between files or databases fails to verify.
//! - The header's two slots are written alternately, each authenticated by
//!   its own tag, so a torn header write leaves the other slot valid; a new
//!   file's first header write fills both. Damage is told apart from a wrong
//!   key and from a torn tail as described in `docs/encryption.md` (a
//!   damaged chunk is a torn tail only if no valid chunk follows it; the
//!   MANIFEST is never torn).

#![deny(clippy::indexing_slicing)]

use super::crypto::{Key, TAG_LEN, key_check, open, random, seal};
use super::{FileHandle, LockGuard, Storage, StorageFile};
use crate::error::{Error, Result};
use crate::manifest::MANIFEST_FILE;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Magic bytes at the start of every encrypted file.
pub const ENC_MAGIC: [u8; 4] = *b"EENC";
const MAJOR: u16 = 1;
const MINOR: u16 = 0;
const SLOT_LEN: usize = 128;
const DATA_START: u64 = 2 * SLOT_LEN as u64;
const CHUNK_HEADER: usize = 16;
/// Largest plaintext sealed as one chunk.
pub const MAX_CHUNK: usize = 64 * 1024;

/// The secret a database is encrypted with.
#[derive(Clone)]
pub enum Secret {
    /// 32 raw key bytes.
    Key([u8; 32]),
    /// A passphrase, stretched with Argon2id and the database's salt.
    Passphrase(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Secret::Key(_) => "Secret::Key(…)",
            Secret::Passphrase(_) => "Secret::Passphrase(…)",
        })
    }
}

/// One use of a nonce, reported to a [`NonceObserver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceUse {
    /// Fingerprint of the key.
    pub key: u64,
    /// The nonce.
    pub nonce: [u8; 12],
    /// Hash of the plaintext.
    pub plaintext: u64,
    /// The associated data.
    pub aad: Vec<u8>,
}

/// Called for every seal (the nonce ledger of the tests).
pub type NonceObserver = Arc<dyn Fn(NonceUse) + Send + Sync>;

/// An authentication failure, carried inside `io::Error` so that the engine
/// reports it as `Corruption` with the offset.
#[derive(Debug)]
pub struct AuthFailure {
    /// Physical file offset of the damaged header slot or chunk (the reason
    /// names the plaintext offset where there is one).
    pub offset: u64,
    /// What failed.
    pub reason: String,
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.reason, self.offset)
    }
}

impl std::error::Error for AuthFailure {}

fn auth_error(offset: u64, reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        AuthFailure {
            offset,
            reason: reason.into(),
        },
    )
}

fn other(e: String) -> io::Error {
    io::Error::other(e)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    db_id: [u8; 16],
    file_id: [u8; 16],
    salt: [u8; 16],
    base_epoch: u32,
    cur_epoch: u32,
    key_check: [u8; 32],
}

impl Header {
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(96);
        b.extend_from_slice(&ENC_MAGIC);
        b.extend_from_slice(&MAJOR.to_le_bytes());
        b.extend_from_slice(&MINOR.to_le_bytes());
        b.extend_from_slice(&self.db_id);
        b.extend_from_slice(&self.file_id);
        b.extend_from_slice(&self.salt);
        b.extend_from_slice(&self.base_epoch.to_le_bytes());
        b.extend_from_slice(&self.cur_epoch.to_le_bytes());
        b.extend_from_slice(&self.key_check);
        b
    }

    /// Reads the fields of a slot without checking its magic, version or tag.
    fn fields(slot: &[u8]) -> Option<Self> {
        let field = |a: usize, b: usize| slot.get(a..b);
        let u32_at = |a: usize| {
            field(a, a + 4)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_le_bytes)
        };
        let arr16 = |a: usize| field(a, a + 16).and_then(|s| <[u8; 16]>::try_from(s).ok());
        Some(Header {
            db_id: arr16(8)?,
            file_id: arr16(24)?,
            salt: arr16(40)?,
            base_epoch: u32_at(56)?,
            cur_epoch: u32_at(60)?,
            key_check: field(64, 96)?.try_into().ok()?,
        })
    }
}

/// The nonce of a header slot: `FFFFFFFF ‖ 8 random bytes` stored in the
/// slot. Random rather than derived from the epoch, because a header write
/// can be lost in a crash after it was sealed, and its epoch then reused.
fn slot_nonce(suffix: &[u8]) -> [u8; 12] {
    let mut n = [0xFFu8; 12];
    if let Some(dst) = n.get_mut(4..12)
        && suffix.len() == 8
    {
        dst.copy_from_slice(suffix);
    }
    n
}

fn major_of(slot: &[u8]) -> Option<u16> {
    slot.get(4..6)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
}

/// Number of equal bytes at the same positions.
fn same_bytes(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

/// At least 3 of the 4 magic bytes: an encrypted header, possibly damaged (a
/// plaintext file starts with "EMAN", "EWAL" or "ESEG": one byte in common).
fn near_magic(slot: &[u8]) -> bool {
    slot.get(..4)
        .is_some_and(|m| same_bytes(m, &ENC_MAGIC) >= ENC_MAGIC.len() - 1)
}

/// What a header slot says under a key (the decision table is in
/// `docs/encryption.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotCheck {
    /// Never written (all zeros, or beyond the end of the file).
    Empty,
    /// Magic, major version, zero padding, key check and tag all verify.
    Valid(Header),
    /// The key check matches the key, but the slot does not verify: the key
    /// is right and the slot is damaged.
    KeyOk,
    /// Most bytes of the key check match (a wrong key matches about one of
    /// 32 by chance): the key is right and the key check is damaged.
    NearKey,
    /// Nothing matches: a wrong key, or a slot damaged beyond recognition.
    Unknown,
}

/// Bytes of the key check that must match for [`SlotCheck::NearKey`].
const NEAR_KEY_BYTES: usize = 16;

fn check_slot(key: &Key, slot: &[u8]) -> SlotCheck {
    if slot.iter().all(|b| *b == 0) {
        return SlotCheck::Empty;
    }
    let Some(h) = Header::fields(slot) else {
        return SlotCheck::Unknown;
    };
    let Ok(check) = key_check(key, &h.db_id) else {
        return SlotCheck::Unknown;
    };
    let tag_ok = || {
        let (Some(body), Some(tag), Some(suffix), Some(padding)) = (
            slot.get(..96),
            slot.get(96..96 + TAG_LEN),
            slot.get(112..120),
            slot.get(120..SLOT_LEN),
        ) else {
            return false;
        };
        let Ok(file_key) = key.derive_file_key(&h.db_id, &h.file_id) else {
            return false;
        };
        padding.iter().all(|b| *b == 0) && open(&file_key, &slot_nonce(suffix), body, tag).is_some()
    };
    if slot.starts_with(&ENC_MAGIC)
        && major_of(slot) == Some(MAJOR)
        && check == h.key_check
        && tag_ok()
    {
        SlotCheck::Valid(h)
    } else if check == h.key_check {
        SlotCheck::KeyOk
    } else if same_bytes(&check, &h.key_check) >= NEAR_KEY_BYTES {
        SlotCheck::NearKey
    } else {
        SlotCheck::Unknown
    }
}

/// The header slots of `name` (up to two; the second may be partial).
fn read_slots(inner: &dyn Storage, name: &str) -> Result<Vec<u8>> {
    let file = inner.open(name, false).map_err(Error::io(name))?;
    let len = file.len().map_err(Error::io(name))?;
    let mut slots = vec![0u8; DATA_START.min(len) as usize];
    file.read_at(0, &mut slots).map_err(Error::io(name))?;
    Ok(slots)
}

/// Database keys derived from the secret, one per salt tried.
struct Keys<'a> {
    secret: &'a Secret,
    derived: Vec<([u8; 16], Key)>,
}

/// Distinct salts a passphrase is stretched with before giving up (Argon2 is
/// deliberately slow; only damaged headers have more than one).
const MAX_SALTS: usize = 3;

impl Keys<'_> {
    /// The key for `salt`; `None` when too many salts were tried already.
    fn get(&mut self, salt: &[u8; 16]) -> Result<Option<Key>> {
        let pass = match self.secret {
            Secret::Key(k) => return Ok(Some(Key::from_bytes(*k))),
            Secret::Passphrase(p) => p,
        };
        if let Some((_, k)) = self.derived.iter().find(|(s, _)| s == salt) {
            return Ok(Some(k.clone()));
        }
        if self.derived.len() >= MAX_SALTS {
            return Ok(None);
        }
        let key = Key::from_passphrase(pass, salt).map_err(Error::InvalidArgument)?;
        self.derived.push((*salt, key.clone()));
        Ok(Some(key))
    }
}

/// Storage whose files are encrypted (see the module docs).
pub struct EncryptedStorage {
    inner: Arc<dyn Storage>,
    key: Key,
    db_id: [u8; 16],
    salt: [u8; 16],
    key_check: [u8; 32],
    observer: Option<NonceObserver>,
}

impl fmt::Debug for EncryptedStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedStorage")
            .field("inner", &self.inner)
            .finish()
    }
}

impl EncryptedStorage {
    /// Opens the encrypted database held by `inner`, or prepares a new one
    /// when `inner` holds no files.
    ///
    /// The key is proven by the first header slot (MANIFEST first, then every
    /// other file) that authenticates under it. When none does, the slots
    /// decide between a damaged header and a wrong key (the decision table is
    /// in `docs/encryption.md`).
    ///
    /// # Errors
    /// `WrongKey` when no header slot authenticates and none shows that the
    /// key is right; `Corruption` when a slot shows that the key is right but
    /// no slot authenticates; `InvalidArgument` when the database exists but
    /// is not encrypted; `IncompatibleVersion`, `Io`.
    pub fn open(inner: Arc<dyn Storage>, secret: Secret) -> Result<Self> {
        let mut names = inner.list().map_err(Error::io("."))?;
        names.retain(|n| n != "LOCK");
        names.sort_by_key(|n| (n != MANIFEST_FILE, n.clone()));
        let mut keys = Keys {
            secret: &secret,
            derived: Vec::new(),
        };
        // Evidence gathered while no slot authenticates.
        let mut key_is_right: Option<(String, u64)> = None;
        let mut newer: Option<(String, u16)> = None;
        let mut headers_seen = false;
        let mut plain_manifest = false;
        for name in &names {
            let slots = read_slots(inner.as_ref(), name)?;
            let mut file_has_header = false;
            for (i, slot) in slots.chunks(SLOT_LEN).enumerate() {
                if !near_magic(slot) {
                    continue;
                }
                file_has_header = true;
                if let Some(major) = major_of(slot).filter(|m| *m != MAJOR)
                    && slot.starts_with(&ENC_MAGIC)
                {
                    // A newer format (or a damaged version field: another
                    // slot of the database then authenticates).
                    newer.get_or_insert((name.clone(), major));
                    continue;
                }
                let Some(h) = Header::fields(slot) else {
                    continue;
                };
                headers_seen = true;
                let Some(key) = keys.get(&h.salt)? else {
                    continue;
                };
                match check_slot(&key, slot) {
                    SlotCheck::Valid(h) => {
                        return Ok(Self {
                            inner,
                            key,
                            db_id: h.db_id,
                            salt: h.salt,
                            key_check: h.key_check,
                            observer: None,
                        });
                    }
                    SlotCheck::KeyOk | SlotCheck::NearKey => {
                        key_is_right.get_or_insert((name.clone(), (i * SLOT_LEN) as u64));
                    }
                    SlotCheck::Empty | SlotCheck::Unknown => {}
                }
            }
            if name == MANIFEST_FILE && !file_has_header && !slots.is_empty() {
                plain_manifest = true;
            }
        }
        if let Some((file, offset)) = key_is_right {
            return Err(Error::corruption(
                file,
                offset,
                "encryption header slot is damaged: its key check matches the key, \
                 but no header slot of the database authenticates",
            ));
        }
        if let Some((file, major)) = newer {
            return Err(Error::IncompatibleVersion {
                file,
                found: major.to_string(),
                supported: MAJOR,
            });
        }
        if headers_seen {
            return Err(Error::WrongKey);
        }
        if plain_manifest {
            return Err(Error::InvalidArgument(
                "this database is not encrypted; open it without a key".into(),
            ));
        }
        // A new database.
        let (mut db_id, mut salt) = ([0u8; 16], [0u8; 16]);
        random(&mut db_id)
            .and_then(|()| random(&mut salt))
            .map_err(Error::InvalidArgument)?;
        let key = keys
            .get(&salt)?
            .ok_or_else(|| Error::InvalidArgument("no key".into()))?;
        let check = key_check(&key, &db_id).map_err(Error::InvalidArgument)?;
        Ok(Self {
            inner,
            key,
            db_id,
            salt,
            key_check: check,
            observer: None,
        })
    }

    /// Reports every nonce use to `observer` (the tests' nonce ledger).
    pub fn with_observer(mut self, observer: NonceObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    fn new_header(&self) -> io::Result<Header> {
        let mut file_id = [0u8; 16];
        random(&mut file_id).map_err(other)?;
        Ok(Header {
            db_id: self.db_id,
            file_id,
            salt: self.salt,
            base_epoch: 1,
            cur_epoch: 0,
            key_check: self.key_check,
        })
    }
}

/// Mutable state of one encrypted file handle.
#[derive(Debug)]
struct FileState {
    header: Header,
    file_key: Key,
    active_slot: usize,
    /// `(logical offset, physical offset, plain length)` of every live chunk.
    chunks: Vec<(u64, u64, u32)>,
    logical_len: u64,
    /// Physical end of the live chunks (bytes after it are torn or stale).
    phys_end: u64,
    /// Whether this handle already started its own epoch.
    epoch_started: bool,
    /// The file has no valid header yet: the first header write fills both
    /// slots, so that every file holds two copies of its header.
    fresh: bool,
    counter: u64,
}

struct EncFile {
    inner: FileHandle,
    name: String,
    /// A new file whose directory entry must be made durable together with
    /// its first header.
    created: AtomicBool,
    storage_inner: Arc<dyn Storage>,
    observer: Option<NonceObserver>,
    state: Mutex<FileState>,
}

impl fmt::Debug for EncFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncFile").field("name", &self.name).finish()
    }
}

impl EncFile {
    fn lock(&self) -> io::Result<MutexGuard<'_, FileState>> {
        self.state
            .lock()
            .map_err(|_| other("encrypted file lock poisoned".into()))
    }

    fn aad(h: &Header, offset: u64, epoch: u32, len: u32) -> Vec<u8> {
        let mut aad = Vec::with_capacity(54);
        aad.extend_from_slice(&h.db_id);
        aad.extend_from_slice(&h.file_id);
        aad.extend_from_slice(&offset.to_le_bytes());
        aad.extend_from_slice(&epoch.to_le_bytes());
        aad.extend_from_slice(&len.to_le_bytes());
        aad.extend_from_slice(&MAJOR.to_le_bytes());
        aad
    }

    fn seal_observed(
        &self,
        key: &Key,
        nonce: &[u8; 12],
        aad: &[u8],
        msg: &[u8],
    ) -> io::Result<Vec<u8>> {
        if let Some(obs) = &self.observer {
            obs(NonceUse {
                key: key.fingerprint(),
                nonce: *nonce,
                plaintext: xxhash_rust::xxh3::xxh3_64(msg),
                aad: aad.to_vec(),
            });
        }
        seal(key, nonce, aad, msg).map_err(other)
    }

    /// One header slot for `h`, sealed under a fresh random slot nonce.
    fn slot_bytes(&self, st: &FileState, h: &Header) -> io::Result<Vec<u8>> {
        let body = h.body();
        let mut suffix = [0u8; 8];
        random(&mut suffix).map_err(other)?;
        let tag = self.seal_observed(&st.file_key, &slot_nonce(&suffix), &body, &[])?;
        let mut bytes = body;
        bytes.extend_from_slice(tag.get(..TAG_LEN).unwrap_or(&[0u8; TAG_LEN]));
        bytes.extend_from_slice(&suffix);
        bytes.resize(SLOT_LEN, 0);
        Ok(bytes)
    }

    /// Starts a new epoch for this handle: durable before any chunk uses it.
    fn start_epoch(&self, st: &mut FileState, truncate: bool) -> io::Result<()> {
        let mut h = st.header;
        h.cur_epoch = h
            .cur_epoch
            .checked_add(1)
            .filter(|e| *e < u32::MAX)
            .ok_or_else(|| other("epoch space exhausted".into()))?;
        if truncate {
            h.base_epoch = h.cur_epoch;
        }
        let slot = if st.fresh {
            // No valid header yet: write both slots in one sector, so that
            // a damaged slot is never the only copy of the header.
            let mut bytes = self.slot_bytes(st, &h)?;
            bytes.extend(self.slot_bytes(st, &h)?);
            self.inner.write_at(0, &bytes)?;
            0
        } else {
            let slot = st.active_slot ^ 1;
            let bytes = self.slot_bytes(st, &h)?;
            self.inner.write_at((slot * SLOT_LEN) as u64, &bytes)?;
            slot
        };
        self.inner.sync()?;
        if self.created.swap(false, Ordering::SeqCst) {
            self.storage_inner.sync_dir()?;
        }
        st.header = h;
        st.active_slot = slot;
        st.epoch_started = true;
        st.fresh = false;
        st.counter = 0;
        Ok(())
    }

    fn append_locked(&self, st: &mut FileState, data: &[u8]) -> io::Result<u64> {
        if !st.epoch_started {
            self.start_epoch(st, false)?;
        }
        let start = st.logical_len;
        let mut out = Vec::with_capacity(
            data.len() + (data.len() / MAX_CHUNK + 1) * (CHUNK_HEADER + TAG_LEN),
        );
        let mut pieces = Vec::new();
        let mut logical = start;
        for piece in data.chunks(MAX_CHUNK) {
            let len = piece.len() as u32;
            let epoch = st.header.cur_epoch;
            let mut nonce = [0u8; 12];
            let mut parts = epoch
                .to_le_bytes()
                .into_iter()
                .chain(st.counter.to_le_bytes());
            nonce.fill_with(|| parts.next().unwrap_or(0));
            st.counter += 1;
            let aad = Self::aad(&st.header, logical, epoch, len);
            let sealed = self.seal_observed(&st.file_key, &nonce, &aad, piece)?;
            pieces.push((logical, st.phys_end + out.len() as u64, len));
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&sealed);
            logical += u64::from(len);
        }
        let phys_len = self.inner.len()?;
        if phys_len > st.phys_end {
            // Torn or stale bytes after the live chunks: cut them first.
            self.inner.truncate(st.phys_end)?;
        }
        self.inner.write_at(st.phys_end, &out)?;
        st.phys_end += out.len() as u64;
        st.chunks.extend(pieces);
        st.logical_len = logical;
        Ok(start)
    }
}

/// Reads and decrypts live chunk `index` of `file`.
fn read_chunk(file: &FileHandle, st: &FileState, index: usize) -> io::Result<Vec<u8>> {
    let phys = st.chunks.get(index).map_or(0, |c| c.1);
    try_read_chunk(file, st, index)?.ok_or_else(|| {
        let logical = st.chunks.get(index).map_or(0, |c| c.0);
        auth_error(
            phys,
            &format!("encrypted chunk failed authentication (plaintext offset {logical})"),
        )
    })
}

/// Like [`read_chunk`], but a chunk that fails authentication is `Ok(None)`
/// and only an I/O failure is an error (an EIO is never taken for damage).
fn try_read_chunk(file: &FileHandle, st: &FileState, index: usize) -> io::Result<Option<Vec<u8>>> {
    let Some(&(logical, phys, len)) = st.chunks.get(index) else {
        return Err(auth_error(0, "chunk index out of range"));
    };
    let mut buf = vec![0u8; CHUNK_HEADER + len as usize + TAG_LEN];
    file.read_at(phys, &mut buf)?;
    Ok(decrypt_chunk(
        &st.header,
        &st.file_key,
        logical,
        &buf,
        st.header.cur_epoch,
    ))
}

/// Parses and decrypts one physical chunk found at `logical`, accepting
/// epochs `base_epoch ..= max_epoch`.
fn decrypt_chunk(
    h: &Header,
    key: &Key,
    logical: u64,
    buf: &[u8],
    max_epoch: u32,
) -> Option<Vec<u8>> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
    let nonce: [u8; 12] = buf.get(4..16)?.try_into().ok()?;
    let epoch = u32::from_le_bytes(nonce.get(..4)?.try_into().ok()?);
    if epoch < h.base_epoch || epoch > max_epoch {
        return None;
    }
    let sealed = buf.get(CHUNK_HEADER..CHUNK_HEADER + len as usize + TAG_LEN)?;
    open(key, &nonce, &EncFile::aad(h, logical, epoch, len), sealed)
}

impl StorageFile for EncFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let st = self.lock()?;
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|e| *e <= st.logical_len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file"))?;
        let first = st
            .chunks
            .partition_point(|(l, _, n)| l + u64::from(*n) <= offset);
        let mut i = first;
        while let Some(&(logical, phys, len)) = st.chunks.get(i) {
            if logical >= end {
                break;
            }
            let plain = read_chunk(&self.inner, &st, i)?;
            let from = offset.max(logical);
            let to = end.min(logical + u64::from(len));
            let src = plain
                .get((from - logical) as usize..(to - logical) as usize)
                .ok_or_else(|| auth_error(phys, "chunk shorter than its header says"))?;
            if let Some(dst) = buf.get_mut((from - offset) as usize..(to - offset) as usize) {
                dst.copy_from_slice(src);
            }
            i += 1;
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.lock()?;
        if offset != st.logical_len {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "encrypted files are append-only: writes must start at the end",
            ));
        }
        self.append_locked(&mut st, data).map(|_| ())
    }

    fn append(&self, data: &[u8]) -> io::Result<u64> {
        let mut st = self.lock()?;
        self.append_locked(&mut st, data)
    }

    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut st = self.lock()?;
        if len == st.logical_len {
            return Ok(());
        }
        if len == 0 {
            self.start_epoch(&mut st, true)?;
            self.inner.truncate(DATA_START)?;
            st.chunks.clear();
            st.logical_len = 0;
            st.phys_end = DATA_START;
            return Ok(());
        }
        let Some(i) = st.chunks.iter().position(|(l, _, _)| *l == len) else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "encrypted files can only be truncated at a write boundary",
            ));
        };
        let phys = st.chunks.get(i).map_or(st.phys_end, |c| c.1);
        self.inner.truncate(phys)?;
        st.chunks.truncate(i);
        st.logical_len = len;
        st.phys_end = phys;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.lock()?.logical_len)
    }
}

impl EncryptedStorage {
    fn open_file(&self, name: &str, create: bool) -> io::Result<EncFile> {
        let existed = self.inner.exists(name)?;
        let inner = self.inner.open(name, create)?;
        let phys_len = inner.len()?;
        let mut file = EncFile {
            inner,
            name: name.to_string(),
            created: AtomicBool::new(!existed),
            storage_inner: self.inner.clone(),
            observer: self.observer.clone(),
            state: Mutex::new(FileState {
                header: self.new_header()?,
                file_key: Key::from_bytes([0; 32]),
                active_slot: 1,
                chunks: Vec::new(),
                logical_len: 0,
                phys_end: DATA_START,
                epoch_started: false,
                fresh: phys_len == 0,
                counter: 0,
            }),
        };
        let st = file
            .state
            .get_mut()
            .map_err(|_| other("lock poisoned".into()))?;
        if phys_len == 0 {
            st.file_key = self.file_key(&st.header)?;
        } else {
            self.load(&file.inner, st, name, phys_len, name == MANIFEST_FILE)?;
        }
        Ok(file)
    }

    /// [`Storage::verify`]: loads `name` as strictly as `MANIFEST` (no
    /// damaged header slot, no torn tail) and authenticates every chunk.
    fn verify_file(&self, name: &str) -> io::Result<()> {
        let mut file = self.open_file(name, false)?;
        let phys_len = file.inner.len()?;
        if phys_len == 0 {
            return Ok(());
        }
        let st = file
            .state
            .get_mut()
            .map_err(|_| other("lock poisoned".into()))?;
        st.chunks.clear();
        self.load(&file.inner, st, name, phys_len, true)
            .map_err(
                |e| match e.get_ref().and_then(|r| r.downcast_ref::<AuthFailure>()) {
                    // A torn header write or a torn tail after a crash look
                    // like this too, until the next write replaces them.
                    Some(a) if name != MANIFEST_FILE => auth_error(
                        a.offset,
                        &format!("{} (a write torn by a crash looks the same)", a.reason),
                    ),
                    _ => e,
                },
            )?;
        for i in 0..st.chunks.len() {
            read_chunk(&file.inner, st, i)?;
        }
        Ok(())
    }

    fn file_key(&self, h: &Header) -> io::Result<Key> {
        self.key
            .derive_file_key(&h.db_id, &h.file_id)
            .map_err(other)
    }

    /// Reads the header slots and the chunk index of an existing file.
    ///
    /// `MANIFEST` is strict: it is only ever created by renaming a complete,
    /// synced file, so it can hold no torn header write and no torn tail;
    /// any damage is corruption. Other files may end in a torn tail (see
    /// [`Self::load_chunks`]).
    fn load(
        &self,
        file: &FileHandle,
        st: &mut FileState,
        name: &str,
        phys_len: u64,
        strict: bool,
    ) -> io::Result<()> {
        let mut slots = vec![0u8; DATA_START.min(phys_len) as usize];
        file.read_at(0, &mut slots)?;
        let mut best: Option<(Header, usize)> = None;
        let mut damaged: Option<usize> = None;
        for i in 0..2 {
            let slot = slots
                .get(i * SLOT_LEN..slots.len().min((i + 1) * SLOT_LEN))
                .unwrap_or_default();
            match check_slot(&self.key, slot) {
                SlotCheck::Empty => {}
                SlotCheck::Valid(h) if h.db_id != self.db_id => {
                    return Err(auth_error(
                        (i * SLOT_LEN) as u64,
                        &format!("{name} belongs to another database"),
                    ));
                }
                SlotCheck::Valid(h) => {
                    if best.is_none_or(|(b, _)| h.cur_epoch > b.cur_epoch) {
                        best = Some((h, i));
                    }
                }
                SlotCheck::KeyOk | SlotCheck::NearKey | SlotCheck::Unknown => {
                    damaged.get_or_insert(i);
                }
            }
        }
        let Some((header, slot)) = best else {
            if phys_len <= DATA_START && !strict {
                // The header of a new file was torn before any chunk was
                // written: the file is empty.
                st.file_key = self.file_key(&st.header)?;
                st.fresh = true;
                return Ok(());
            }
            let at = damaged.unwrap_or(0) * SLOT_LEN;
            return Err(auth_error(
                at as u64,
                &format!("{name} has no valid encryption header slot (both are damaged)"),
            ));
        };
        if strict && let Some(i) = damaged {
            return Err(auth_error(
                (i * SLOT_LEN) as u64,
                &format!("encryption header slot {i} of {name} is damaged"),
            ));
        }
        st.file_key = self.file_key(&header)?;
        st.header = header;
        st.active_slot = slot;
        Self::load_chunks(file, st, name, phys_len, strict)
    }

    /// Walks the chunks of a file whose header is loaded.
    ///
    /// The walk stops at the first chunk that cannot be live (cut short, a
    /// length out of range, an epoch no header records), or drops the last
    /// chunk if it fails authentication. What follows is a torn tail — an
    /// interrupted append, cut from the logical end like a torn WAL record —
    /// only if no valid chunk starts anywhere after that point; otherwise the
    /// file is damaged and the error names the physical offset. (Chunks in
    /// the middle are authenticated when read.)
    fn load_chunks(
        file: &FileHandle,
        st: &mut FileState,
        name: &str,
        phys_len: u64,
        strict: bool,
    ) -> io::Result<()> {
        let header = st.header;
        let mut phys = DATA_START;
        let mut logical = 0u64;
        let mut stop = "damaged bytes";
        while phys < phys_len {
            if phys + MIN_CHUNK > phys_len {
                stop = "a chunk cut short";
                break;
            }
            let mut head = [0u8; CHUNK_HEADER];
            file.read_at(phys, &mut head)?;
            let (len, epoch, _) = parse_chunk_header(&head);
            let size = (CHUNK_HEADER + TAG_LEN) as u64 + u64::from(len);
            if len == 0 || len as usize > MAX_CHUNK {
                stop = "a chunk length out of range";
                break;
            }
            if phys + size > phys_len {
                stop = "a chunk running past the end of the file";
                break;
            }
            if epoch > header.cur_epoch {
                stop = "a chunk of an epoch no valid header slot records";
                break;
            }
            if epoch < header.base_epoch {
                if st.chunks.is_empty() {
                    // A truncation to zero whose physical cut was lost: the
                    // rest is stale.
                    stop = "stale chunks of an older epoch";
                    break;
                }
                return Err(auth_error(phys, "chunk from an older epoch (replay)"));
            }
            st.chunks.push((logical, phys, len));
            logical += u64::from(len);
            phys += size;
        }
        st.logical_len = logical;
        st.phys_end = phys;
        // The last chunk may be a torn write: verify it, drop it if damaged.
        if let Some(last) = st.chunks.len().checked_sub(1)
            && try_read_chunk(file, st, last)?.is_none()
            && let Some((l, p, _)) = st.chunks.pop()
        {
            st.logical_len = l;
            st.phys_end = p;
            stop = "a chunk failing authentication";
        }
        let at = st.phys_end;
        if at >= phys_len {
            return Ok(());
        }
        if strict {
            return Err(auth_error(
                at,
                &format!("{stop} at offset {at} of {name}, which is never torn"),
            ));
        }
        match find_later_chunk(file, st, phys_len)? {
            Later::Nothing => Ok(()), // a torn tail
            Later::Found(next) => Err(auth_error(
                at,
                &format!(
                    "{stop} at offset {at} of {name}, followed by a valid chunk at offset {next}"
                ),
            )),
            Later::Undecided(next) => Err(auth_error(
                at,
                &format!(
                    "{stop} at offset {at} of {name}, followed by too many chunk-like \
                     headers to rule out a valid chunk (searched up to offset {next})"
                ),
            )),
        }
    }
}

/// Smallest physical chunk: header, one byte, tag.
const MIN_CHUNK: u64 = (CHUNK_HEADER + 1 + TAG_LEN) as u64;

/// `(plain_len, epoch, counter)` of a chunk header.
fn parse_chunk_header(head: &[u8]) -> (u32, u32, u64) {
    let word = |at: usize| {
        head.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    let counter = head
        .get(8..16)
        .and_then(|b| b.try_into().ok())
        .map_or(u64::MAX, u64::from_le_bytes);
    (word(0), word(4), counter)
}

/// What [`find_later_chunk`] found after the live chunks.
enum Later {
    /// No valid chunk: the bytes are a torn tail.
    Nothing,
    /// A chunk authenticates at this physical offset.
    Found(u64),
    /// The attempt budget ran out at this offset (never seen in a real
    /// torn tail, whose bytes are a cut chunk, zeros or garbage).
    Undecided(u64),
}

/// Decryption attempts [`find_later_chunk`] may spend.
const SEARCH_BUDGET: usize = 4096;
/// Bytes [`find_later_chunk`] reads at a time.
const SEARCH_WINDOW: u64 = 1 << 20;

/// Looks for a chunk that authenticates anywhere at or after `st.phys_end`
/// (the end of the live chunks).
///
/// Chunks are contiguous and each has 32 bytes of overhead, so a chunk with
/// index `i` at physical offset `p` has logical offset `p - 256 - 32 i`. The
/// live chunks fix the index `k` of the chunk at `phys_end`; a chunk at
/// `p > phys_end` has an index in `k + 1 ..= k + (p - phys_end) / 33`, and
/// within one epoch counters grow with the index, which bounds it further
/// and gives the likely index first. Candidates are the offsets whose bytes
/// look like a chunk header (length in range, epoch between `base_epoch` and
/// one past `cur_epoch` — a chunk of an epoch whose header slot is damaged —
/// counter below 2^32), which random bytes almost never are.
fn find_later_chunk(file: &FileHandle, st: &FileState, phys_len: u64) -> io::Result<Later> {
    let from = st.phys_end;
    let k = st.chunks.len() as u64;
    let (base, top) = (st.header.base_epoch, st.header.cur_epoch.saturating_add(1));
    // The last live chunk, if it authenticates: its (epoch, counter).
    let anchor = match st.chunks.len().checked_sub(1) {
        Some(last) if try_read_chunk(file, st, last)?.is_some() => {
            let mut head = [0u8; CHUNK_HEADER];
            let phys = st.chunks.get(last).map_or(DATA_START, |c| c.1);
            file.read_at(phys, &mut head)?;
            let (_, epoch, counter) = parse_chunk_header(&head);
            Some((epoch, counter))
        }
        _ => None,
    };
    let mut budget = SEARCH_BUDGET;
    let mut pos = from;
    while pos + MIN_CHUNK <= phys_len {
        let scan_to = phys_len.min(pos + SEARCH_WINDOW);
        let end = phys_len.min(scan_to + CHUNK_HEADER as u64);
        let mut buf = vec![0u8; (end - pos) as usize];
        file.read_at(pos, &mut buf)?;
        for p in pos..scan_to {
            let off = (p - pos) as usize;
            let Some(head) = buf.get(off..off + CHUNK_HEADER) else {
                break;
            };
            let (len, epoch, counter) = parse_chunk_header(head);
            let size = (CHUNK_HEADER + TAG_LEN) as u64 + u64::from(len);
            if len == 0
                || len as usize > MAX_CHUNK
                || counter >> 32 != 0
                || epoch < base
                || epoch > top
                || p + size > phys_len
            {
                continue;
            }
            let lo = if p == from { k } else { k + 1 };
            let mut hi = (k + (p - from) / MIN_CHUNK).min((p - DATA_START) / 32);
            let mut likely = k + 1;
            if let Some((e, c)) = anchor
                && e == epoch
                && counter > c
            {
                // Same epoch: `counter - c` chunks were sealed since the
                // anchor (index k - 1); truncations only remove chunks.
                hi = hi.min(k - 1 + (counter - c));
                likely = k - 1 + (counter - c);
            }
            if lo > hi {
                continue;
            }
            let mut chunk = vec![0u8; size as usize];
            file.read_at(p, &mut chunk)?;
            let likely = Some(likely).filter(|i| (lo..=hi).contains(i));
            let others = (lo..=hi).filter(|i| Some(*i) != likely);
            for i in likely.into_iter().chain(others) {
                if budget == 0 {
                    return Ok(Later::Undecided(p));
                }
                budget -= 1;
                let logical = p - DATA_START - 32 * i;
                if decrypt_chunk(&st.header, &st.file_key, logical, &chunk, top).is_some() {
                    return Ok(Later::Found(p));
                }
            }
        }
        pos = scan_to;
    }
    Ok(Later::Nothing)
}

impl Storage for EncryptedStorage {
    fn open(&self, name: &str, create: bool) -> io::Result<FileHandle> {
        Ok(Arc::new(self.open_file(name, create)?))
    }

    fn verify(&self, name: &str) -> io::Result<()> {
        self.verify_file(name)
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        self.inner.exists(name)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }

    fn lock(&self) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.inner.lock()
    }

    fn describe(&self) -> String {
        format!("{} (encrypted)", self.inner.describe())
    }
}
