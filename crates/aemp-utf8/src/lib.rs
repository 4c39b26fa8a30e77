//! # aemp-utf8: UTF-8 validation with an ASCII fast path
//!
//! Every string a peer sends must be valid UTF-8 before it becomes a `&str` or a `String`,
//! and the standard library's `std::str::from_utf8` is the only safe way there. It is also
//! the largest single cost of receiving: about 0.06 ns per byte on the 2-core development VM
//! (64 us for each 1 MiB string, as much as a third of what the kernel spends copying it in)
//! and 10 to 15 ns for every short string of a small message. Checking that every byte is
//! below 0x80 (`<[u8]>::is_ascii`, which compares a machine word at a time) costs a third of
//! that, and ASCII is always valid UTF-8, so what most peers send needs nothing more.
//!
//! Skipping the standard validation after that check needs `unsafe`, which the other aemp
//! crates forbid. This crate holds those few lines, and nothing else: the functions below
//! take the unchecked conversion only when [`<[u8]>::is_ascii`] has just returned `true` on
//! exactly the bytes converted, and otherwise return what the standard library returns (the
//! same `Ok` value or the same error with its position), so a caller cannot tell them apart
//! from `std::str::from_utf8` and `String::from_utf8` except by speed. [`TextBuf`] does the
//! same for a long string received in many reads: it checks each read's bytes while they are
//! still in the cache.
//!
//! ```
//! assert_eq!(aemp_utf8::str_from_utf8(b"port"), Ok("port"));
//! assert_eq!(aemp_utf8::str_from_utf8("grüß".as_bytes()), Ok("grüß"));
//! let e = aemp_utf8::string_from_utf8(vec![b'a', 0xff]).unwrap_err();
//! assert_eq!(e.utf8_error().valid_up_to(), 1);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use std::str::Utf8Error;
use std::string::FromUtf8Error;

/// `std::str::from_utf8`, faster when `bytes` is all ASCII.
#[inline]
pub fn str_from_utf8(bytes: &[u8]) -> Result<&str, Utf8Error> {
    if bytes.is_ascii() {
        // SAFETY: every byte is below 0x80 (checked just above on this very slice), and a
        // sequence of such bytes is valid UTF-8: each is a one-byte code point.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes)
    }
}

/// `String::from_utf8`, faster when `bytes` is all ASCII; never copies.
#[inline]
pub fn string_from_utf8(bytes: Vec<u8>) -> Result<String, FromUtf8Error> {
    if bytes.is_ascii() {
        // SAFETY: as in `str_from_utf8`: all of `bytes` was just checked to be ASCII.
        Ok(unsafe { String::from_utf8_unchecked(bytes) })
    } else {
        String::from_utf8(bytes)
    }
}

/// A growing byte buffer for one string, checked as it fills.
///
/// A long string arrives in many reads, each straight into this buffer. Checking only at
/// the end reads the whole string back from memory (for 1 MiB, about 57 us on the
/// development VM, 8% of a receiver's time); checking each read's bytes right after they
/// arrived, while they are still in the CPU's cache, costs a third of that.
/// [`TextBuf::into_string`] then only validates what was not found to be ASCII.
///
/// The buffer hands out mutable access only to bytes beyond its length (the spare capacity
/// through [`bytes::BufMut`], the room [`TextBuf::zeroed_room`] adds), never to bytes it has
/// checked, so the checked prefix stays ASCII until the buffer is turned into a `String`.
#[derive(Debug, Default)]
pub struct TextBuf {
    bytes: Vec<u8>,
    /// `bytes[..ascii]` is ASCII.
    ascii: usize,
    /// A byte at or after `ascii` was not ASCII when last checked: stop checking (only
    /// `into_string` validates the rest, once, so a long non-ASCII string is not scanned
    /// again at every read).
    mixed: bool,
}

impl TextBuf {
    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> TextBuf {
        TextBuf {
            bytes: Vec::with_capacity(capacity),
            ascii: 0,
            mixed: false,
        }
    }

    /// The bytes so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of bytes so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes the buffer holds without reallocating.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Appends `src`.
    pub fn extend_from_slice(&mut self, src: &[u8]) {
        self.bytes.extend_from_slice(src);
        self.check();
    }

    /// Appends `n` zero bytes and returns them to be written over (then
    /// [`TextBuf::truncate`] to what was written, which checks it).
    pub fn zeroed_room(&mut self, n: usize) -> &mut [u8] {
        let old = self.bytes.len();
        self.bytes.resize(old + n, 0);
        // Invariant: self.ascii <= old, so the checked prefix is not lent out.
        &mut self.bytes[old..]
    }

    /// Keeps the first `len` bytes (no effect if there are fewer).
    pub fn truncate(&mut self, len: usize) {
        self.bytes.truncate(len);
        if self.bytes.len() <= self.ascii {
            self.ascii = self.bytes.len();
            self.mixed = false;
        } else {
            self.check();
        }
    }

    /// Removes and returns the last byte.
    pub fn pop(&mut self) -> Option<u8> {
        let last = self.bytes.pop();
        self.truncate(self.bytes.len());
        last
    }

    /// Splits off and returns the bytes from `at` on (all of them if `at` is past the end).
    pub fn split_off(&mut self, at: usize) -> Vec<u8> {
        let rest = self.bytes.split_off(at.min(self.bytes.len()));
        self.truncate(self.bytes.len());
        rest
    }

    /// Gives back unused capacity.
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
    }

    /// The bytes, as a vector.
    pub fn into_vec(self) -> Vec<u8> {
        self.bytes
    }

    /// The bytes as a `String` if they are valid UTF-8 (what `String::from_utf8` returns,
    /// without validating the part already found to be ASCII); never copies.
    pub fn into_string(self) -> Result<String, FromUtf8Error> {
        let rest = &self.bytes[self.ascii..];
        if (!self.mixed && rest.is_ascii()) || std::str::from_utf8(rest).is_ok() {
            // SAFETY: `bytes[..ascii]` is ASCII: checked when those bytes were added, and
            // never lent out mutably since (see the type's documentation). The rest was
            // just checked to be ASCII or valid UTF-8. An ASCII prefix ends on a character
            // boundary, so the whole is valid UTF-8.
            Ok(unsafe { String::from_utf8_unchecked(self.bytes) })
        } else {
            String::from_utf8(self.bytes)
        }
    }

    /// Extends the checked prefix over bytes added since.
    fn check(&mut self) {
        if !self.mixed && self.ascii < self.bytes.len() {
            if self.bytes[self.ascii..].is_ascii() {
                self.ascii = self.bytes.len();
            } else {
                self.mixed = true;
            }
        }
    }
}

// SAFETY: every method delegates to `Vec<u8>`'s implementation, which upholds the trait's
// contract; `advance_mut` then only reads the bytes the caller has just declared
// initialized.
unsafe impl bytes::BufMut for TextBuf {
    fn remaining_mut(&self) -> usize {
        self.bytes.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller guarantees that the next `cnt` bytes of `chunk_mut` were
        // initialized, which is `Vec`'s contract too.
        unsafe { self.bytes.advance_mut(cnt) };
        self.check();
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        // Only spare capacity, beyond the length (and so beyond the checked prefix).
        self.bytes.chunk_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte strings covering ASCII, multi-byte code points, and every kind of invalid
    /// sequence at the start, middle and end, at lengths around the word size.
    fn samples() -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = vec![
            vec![],
            b"a".to_vec(),
            b"msg".to_vec(),
            vec![0x7f; 17],
            "é".as_bytes().to_vec(),
            "€uro 😀".as_bytes().to_vec(),
            vec![0x80],
            vec![0xff],
            vec![0xc3],                   // truncated two-byte sequence
            vec![0xe2, 0x82],             // truncated three-byte sequence
            vec![0xed, 0xa0, 0x80],       // surrogate
            vec![0xc0, 0x80],             // overlong
            vec![0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
        ];
        let extra: Vec<Vec<u8>> = out.clone();
        for e in &extra {
            for len in [0usize, 1, 7, 8, 15, 16, 31, 63, 64, 65, 200] {
                let mut a = vec![b'x'; len];
                a.extend_from_slice(e);
                let mut b = e.clone();
                b.resize(b.len() + len, b'y');
                out.push(a);
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn same_answers_as_std() {
        for s in samples() {
            assert_eq!(str_from_utf8(&s), std::str::from_utf8(&s), "{s:?}");
            let ours = string_from_utf8(s.clone()).map_err(|e| (e.utf8_error(), e.into_bytes()));
            let std = String::from_utf8(s.clone()).map_err(|e| (e.utf8_error(), e.into_bytes()));
            assert_eq!(ours, std, "{s:?}");
        }
    }

    #[test]
    fn keeps_the_buffer() {
        let mut v = Vec::with_capacity(1000);
        v.extend_from_slice(b"abc");
        let p = v.as_ptr();
        let s = string_from_utf8(v).unwrap();
        assert_eq!(s.as_ptr(), p);
        assert_eq!(s.capacity(), 1000);
    }

    /// Every way of filling a `TextBuf` gives what `String::from_utf8` gives for the same
    /// bytes, in pieces of every size, including pieces that split a multi-byte character.
    #[test]
    fn text_buf_matches_std() {
        use bytes::BufMut;
        for s in samples() {
            for piece in [1usize, 2, 3, 8, 64, 1000] {
                for how in 0..3 {
                    let mut b = TextBuf::with_capacity(4);
                    for part in s.chunks(piece) {
                        match how {
                            0 => b.extend_from_slice(part),
                            1 => b.put_slice(part),
                            _ => {
                                let len = b.len();
                                b.zeroed_room(part.len() + 5)[..part.len()].copy_from_slice(part);
                                b.truncate(len + part.len());
                            }
                        }
                    }
                    assert_eq!(b.as_bytes(), &s[..]);
                    let ours = b
                        .into_string()
                        .map_err(|e| (e.utf8_error(), e.into_bytes()));
                    let std =
                        String::from_utf8(s.clone()).map_err(|e| (e.utf8_error(), e.into_bytes()));
                    assert_eq!(ours, std, "{s:?} piece {piece} how {how}");
                }
            }
        }
    }

    /// Removing bytes, non-ASCII ones included, leaves a buffer that converts like the
    /// bytes it still holds.
    #[test]
    fn text_buf_after_removal() {
        let mut b = TextBuf::default();
        b.extend_from_slice(b"abc");
        b.extend_from_slice("é".as_bytes());
        b.extend_from_slice(b"d");
        assert_eq!(b.split_off(3), "éd".as_bytes());
        b.extend_from_slice(b"\"");
        assert_eq!(b.pop(), Some(b'"'));
        assert_eq!(b.into_string().unwrap(), "abc");

        let mut b = TextBuf::default();
        b.extend_from_slice(b"ab");
        b.extend_from_slice(&[0xff]);
        b.truncate(2);
        b.extend_from_slice(&[0xc3]);
        assert!(b.into_string().is_err());
    }
}
