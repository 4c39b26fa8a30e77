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
//! crates forbid. This crate holds those two lines, and nothing else: the functions below
//! take the unchecked conversion only when [`<[u8]>::is_ascii`] has just returned `true` on
//! exactly the bytes converted, and otherwise return what the standard library returns (the
//! same `Ok` value or the same error with its position), so a caller cannot tell them apart
//! from `std::str::from_utf8` and `String::from_utf8` except by speed.
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
}
