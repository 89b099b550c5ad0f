//! Little-endian byte encoding shared by every on-disk structure.
//!
//! [`Encoder`] appends fixed-width little-endian integers and length-prefixed
//! byte strings to a `Vec<u8>`. [`Decoder`] reads them back and never panics:
//! every read is bounds-checked and a length read from disk is compared with
//! the bytes actually left before anything is allocated, so a corrupt length
//! yields [`Error::Corruption`] instead of a huge allocation.
#![deny(clippy::indexing_slicing)]

use crate::error::{Error, Result};

/// Appends little-endian values to a buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// A new, empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends an `i64`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends raw bytes without a length prefix.
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Appends a `u32` length followed by the bytes.
    pub fn bytes(&mut self, v: &[u8]) -> Result<&mut Self> {
        let len = u32::try_from(v.len())
            .map_err(|_| Error::InvalidArgument(format!("value of {} bytes too long", v.len())))?;
        self.u32(len);
        self.buf.extend_from_slice(v);
        Ok(self)
    }

    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> Result<&mut Self> {
        self.bytes(v.as_bytes())
    }
}

/// Reads little-endian values from a byte slice, reporting errors against a
/// file name and absolute offset.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    file: &'a str,
    base: u64,
}

impl<'a> Decoder<'a> {
    /// Decodes `buf`, which starts at byte `base` of `file`.
    pub fn new(buf: &'a [u8], file: &'a str, base: u64) -> Self {
        Self {
            buf,
            pos: 0,
            file,
            base,
        }
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// A corruption error at the current position.
    pub fn error(&self, reason: impl Into<String>) -> Error {
        Error::corruption(self.file, self.offset(), reason)
    }

    /// A corruption error at an absolute offset of the same file.
    pub fn error_at(&self, offset: u64, reason: impl Into<String>) -> Error {
        Error::corruption(self.file, offset, reason)
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| self.error(format!("needs {n} bytes, {} left", self.remaining())))?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.error("range"))?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    /// Reads a `u16`.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads an `i64`.
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Reads a `u32` length and that many bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// Reads a length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str> {
        let at = self.offset();
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| Error::corruption(self.file, at, "invalid UTF-8"))
    }

    /// Reads a `u32` element count, checking that at least `min_elem_size`
    /// bytes per element remain (so a corrupt count cannot drive allocation).
    pub fn count(&mut self, min_elem_size: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_elem_size.max(1)) > self.remaining() {
            return Err(self.error(format!("count {n} exceeds the remaining bytes")));
        }
        Ok(n)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.error(format!("{} trailing bytes", self.remaining())))
        }
    }
}
