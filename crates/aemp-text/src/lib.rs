//! # aemp-text: the byte kernels of aemp's codecs that need `unsafe`
//!
//! `aemp` and the `aemp` tool forbid `unsafe`; `aemp-proto` allows it in one function
//! (`Value::write_str`, which writes a string value's two parts into place and needs the
//! value's layout to do so). The hot paths of receiving and sending text that need it live
//! here, each a few lines next to the check that makes it sound:
//!
//! * **UTF-8 validation with an ASCII fast path.** Every string a peer sends must be valid
//!   UTF-8 before it becomes a `&str` or a `String`, and the standard library's
//!   `std::str::from_utf8` is the only safe way there. It was the largest single cost of
//!   receiving: about 0.06 ns per byte on the 2-core development VM (64 us for each 1 MiB
//!   string, as much as a third of what the kernel spends copying it in) and 10 to 15 ns
//!   for every short string of a small message. Checking that every byte is below 0x80
//!   (`<[u8]>::is_ascii`, which compares a machine word at a time) costs a third of that,
//!   and ASCII is always valid UTF-8, so what most peers send needs nothing more.
//!   [`str_from_utf8`] and [`string_from_utf8`] take the unchecked conversion only when
//!   `is_ascii` has just returned `true` on exactly the bytes converted, and otherwise
//!   return what the standard library returns (the same `Ok` value or the same error with
//!   its position), so a caller cannot tell them from `std::str::from_utf8` and
//!   `String::from_utf8` except by speed. [`TextBuf`] does the same for a long string
//!   received in many reads: it checks each read's bytes while they are still in the cache,
//!   128 bytes per step with AVX2 where the CPU has it (a word at a time, the standard
//!   library's way, costs about 0.4 instructions per byte, the vector check about 0.06).
//! * **The JSON string scan with AVX2.** [`json_special_avx2`] finds the first byte of a
//!   string that JSON must escape 32 bytes per vector operation, on CPUs that have AVX2
//!   (detected at run time); the portable scan stays with the JSON codec.
//!   [`json_ascii_run`] looks at the first 64 bytes the same way and also tells whether
//!   the string before the special byte is ASCII, which spares a short string its separate
//!   UTF-8 check.
//!
//! * **Building a decoded value where it goes.** [`PushWith`] is `push` inlined, with
//!   the value made after room is made: the decoders' frame parsers are too large for the
//!   standard `push` to be inlined, and a value built on the stack and copied by it stalls
//!   the processor (its stores cannot be forwarded to the copy's wider loads).
//!   [`PushWith::push_init`] hands the new slot to a function that writes it, for values
//!   the compiler would still build on the stack first; it checks that the slot was
//!   initialized before counting it.
//!
//! One safe kernel lives here too because both the decoder and the node's kernel need it:
//! [`short_eq`], equality of short strings without a `memcmp` call.
//!
//! ```
//! assert_eq!(aemp_text::str_from_utf8(b"port"), Ok("port"));
//! assert_eq!(aemp_text::str_from_utf8("grüß".as_bytes()), Ok("grüß"));
//! let e = aemp_text::string_from_utf8(vec![b'a', 0xff]).unwrap_err();
//! assert_eq!(e.utf8_error().valid_up_to(), 1);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use std::mem::MaybeUninit;
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

/// Byte-string equality for the short strings of tags, port names and node IDs, without a
/// `memcmp` call: up to 24 bytes (the most a `CompactString` stores inline) are compared
/// with a few overlapping loads of 1, 4 or 8 bytes from each side; longer ones with `==`.
///
/// ```
/// assert!(aemp_text::short_eq(b"counter", b"counter"));
/// assert!(!aemp_text::short_eq(b"counter", b"countex"));
/// ```
#[inline(always)]
pub fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    #[inline(always)]
    fn w8(s: &[u8], at: usize) -> u64 {
        let mut x = [0u8; 8];
        x.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(x)
    }
    #[inline(always)]
    fn w4(s: &[u8], at: usize) -> u32 {
        let mut x = [0u8; 4];
        x.copy_from_slice(&s[at..at + 4]);
        u32::from_ne_bytes(x)
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        8..=16 => w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8),
        17..=24 => w8(a, 0) == w8(b, 0) && w8(a, 8) == w8(b, 8) && w8(a, n - 8) == w8(b, n - 8),
        _ => a == b,
    }
}

/// `push` of the value `make` returns, always inlined, with `make` called after room is
/// made: for `Vec` and `SmallVec`.
///
/// The standard library's `push` is not inlined into the decoders' large frame parsers (nor
/// is `SmallVec`'s), and its argument is built before it runs: each value pushed there was
/// built in a temporary on the stack (a byte for the variant, then its fields) and read back
/// with 16-byte loads moments later, which the processor cannot forward from those narrower
/// stores: a stall of a dozen cycles or more per value (the most sampled instructions of the
/// JSON receive path in `perf annotate`). Here the value can be made where it goes.
///
/// ```
/// use aemp_text::PushWith;
/// let mut v = vec![1];
/// v.push_with(|| 2);
/// let mut s = smallvec::SmallVec::<[u8; 1]>::new();
/// s.push_with(|| 1);
/// s.push_with(|| 2);
/// assert_eq!((v.as_slice(), s.as_slice()), (&[1, 2][..], &[1, 2][..]));
/// ```
pub trait PushWith<T> {
    /// Appends the value `make` returns.
    fn push_with(&mut self, make: impl FnOnce() -> T);

    /// Appends the value `init` writes into the new slot. `init` returns the slot it
    /// initialized (what `MaybeUninit::write` returns); returning any other place panics
    /// before the slot is counted. For values whose parts a type writes one by one, where a
    /// value built whole would be built on the stack first (see `aemp_proto`'s string
    /// values).
    ///
    /// ```
    /// use aemp_text::PushWith;
    /// let mut v = vec![1];
    /// v.push_init(|slot| slot.write(2));
    /// assert_eq!(v, [1, 2]);
    /// ```
    fn push_init(&mut self, init: impl FnOnce(&mut MaybeUninit<T>) -> &mut T);
}

/// The one body of [`PushWith`]: `Vec` and `SmallVec` have the same raw parts.
macro_rules! push_with_fn {
    ($item:ty) => {
        #[inline(always)]
        fn push_with(&mut self, make: impl FnOnce() -> $item) {
            // `make` runs after room is made (if it panics, nothing is counted). Inlined,
            // the check of `push_init` folds away: `write` returns the slot it wrote.
            self.push_init(|slot| slot.write(make()));
        }

        #[inline(always)]
        fn push_init(&mut self, init: impl FnOnce(&mut MaybeUninit<$item>) -> &mut $item) {
            if self.len() == self.capacity() {
                self.reserve(1);
            }
            let len = self.len();
            // SAFETY: `reserve` left room for at least one more element at index `len`
            // (inline or on the heap for a `SmallVec`, wherever `as_mut_ptr` points after
            // it), not covered by the length; `MaybeUninit` of it asks nothing of its
            // contents.
            let slot = unsafe { &mut *self.as_mut_ptr().add(len).cast::<MaybeUninit<$item>>() };
            let at = slot.as_ptr();
            let done: *const $item = init(slot);
            // A `&mut` to an element at the slot's address exists only if the slot holds one.
            assert!(
                std::ptr::eq(done, at),
                "push_init: another place was initialized"
            );
            // SAFETY: the slot is initialized (just checked) and lies within the capacity.
            unsafe { self.set_len(len + 1) };
        }
    };
}

impl<T> PushWith<T> for Vec<T> {
    push_with_fn!(T);
}

impl<A: smallvec::Array> PushWith<A::Item> for smallvec::SmallVec<A> {
    push_with_fn!(A::Item);
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
        if (!self.mixed && is_ascii(rest)) || std::str::from_utf8(rest).is_ok() {
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
            if is_ascii(&self.bytes[self.ascii..]) {
                self.ascii = self.bytes.len();
            } else {
                self.mixed = true;
            }
        }
    }
}

/// Runs at least this long are checked for ASCII 128 bytes per step with AVX2 where the CPU
/// has it (what a socket read into a long string brings); shorter ones a word at a time.
const VECTOR_ASCII_MIN: usize = 256;

/// `<[u8]>::is_ascii`, for long runs about 0.06 instructions per byte instead of about 0.4
/// (the check runs over every byte of every long string received).
fn is_ascii(s: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if s.len() >= VECTOR_ASCII_MIN && std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above), the only requirement of this
            // target-feature function.
            return unsafe { avx2::is_ascii(s) };
        }
    }
    s.is_ascii()
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

/// Index of the first byte of `s` that a JSON string cannot hold as it is (`"`, `\\`, or a
/// control byte below 0x20), or `s.len()`; `None` when this CPU lacks AVX2 (the caller then
/// scans by itself).
///
/// 128 bytes per step (four 32-byte vectors): about 0.2 instructions per byte against 0.6 of
/// the portable SSE2 block scan, which matters because every byte of every JSON string is
/// scanned twice, by the sender for escapes and by the receiver for its end.
///
/// ```
/// if let Some(n) = aemp_text::json_special_avx2(&[b'a'; 100]) {
///     assert_eq!(n, 100);
/// }
/// let mut s = vec![b'a'; 100];
/// s[70] = b'"';
/// assert!(matches!(aemp_text::json_special_avx2(&s), Some(70) | None));
/// ```
pub fn json_special_avx2(s: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above), the only requirement of this
            // target-feature function.
            return Some(unsafe { avx2::json_special(s) });
        }
    }
    let _ = s;
    None
}

/// The bytes of `s` before its first byte that JSON must escape, as a `&str`, when that
/// byte is among the first 64 and every byte before it is ASCII: the common short string of
/// a JSON text, checked for its end and for UTF-8 in one pass. `None` when that is not so,
/// or cannot be told this way (no AVX2, fewer than 32 bytes to look at): the caller then
/// scans and validates the usual way.
///
/// ```
/// let text = br#"payload", 1, "more bytes follow in the buffer, past the first 32"]"#;
/// if let Some(run) = aemp_text::json_ascii_run(text) {
///     assert_eq!(run, "payload");
/// }
/// assert_eq!(aemp_text::json_ascii_run("grüß\" padding padding padding padding".as_bytes()), None);
/// ```
#[inline]
pub fn json_ascii_run(s: &[u8]) -> Option<&str> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above), the only requirement of this
            // target-feature function.
            let n = unsafe { avx2::ascii_run(s) }?;
            let run = &s[..n];
            // SAFETY: `ascii_run` returns `n` only when every byte of `s[..n]` is below
            // 0x80, and such bytes are valid UTF-8 (each a one-byte code point).
            return Some(unsafe { std::str::from_utf8_unchecked(run) });
        }
    }
    let _ = s;
    None
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_max_epu8, _mm256_min_epu8,
        _mm256_movemask_epi8, _mm256_or_si256, _mm256_set1_epi8, _mm256_xor_si256,
    };

    /// Bit `i` set when byte `i` of `v` is special. `b ^ 2` maps `"` (0x22) to 0x20 and keeps
    /// the control bytes below 0x20, while every other byte stays above 0x20: so "a quote or
    /// a control byte" is one unsigned comparison with 0x20; the backslash needs its own.
    #[target_feature(enable = "avx2")]
    fn mask(v: __m256i) -> u32 {
        let x = _mm256_xor_si256(v, _mm256_set1_epi8(2));
        let limit = _mm256_set1_epi8(0x20);
        let low = _mm256_cmpeq_epi8(_mm256_max_epu8(x, limit), limit);
        let backslash = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
        _mm256_movemask_epi8(_mm256_or_si256(low, backslash)) as u32
    }

    /// `part`, exactly 32 bytes, as a vector (zeros for any other length, which callers
    /// never pass).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn load32(part: &[u8]) -> __m256i {
        let bytes: &[u8; 32] = part.try_into().unwrap_or(&[0; 32]);
        // SAFETY: `bytes` is 32 readable bytes, and the load has no alignment requirement.
        unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
    }

    /// See [`super::is_ascii`]: the or of every byte of a block has its top bit clear.
    #[target_feature(enable = "avx2")]
    pub(super) fn is_ascii(s: &[u8]) -> bool {
        let blocks = s.chunks_exact(128);
        let tail = blocks.remainder();
        for block in blocks {
            let mut any = _mm256_set1_epi8(0);
            for part in block.chunks_exact(32) {
                any = _mm256_or_si256(any, load32(part));
            }
            if _mm256_movemask_epi8(any) != 0 {
                return false;
            }
        }
        tail.is_ascii()
    }

    /// See [`super::json_ascii_run`]: the position of the first special byte when it is in
    /// the first 64 bytes and no byte before it has its top bit set.
    #[target_feature(enable = "avx2")]
    pub(super) fn ascii_run(s: &[u8]) -> Option<usize> {
        let mut i = 0;
        for _ in 0..2 {
            let v = load32(s.get(i..i + 32)?);
            let special = mask(v);
            let high = _mm256_movemask_epi8(v) as u32;
            if special != 0 {
                let n = special.trailing_zeros();
                // n <= 31: the bits of the bytes before the special one.
                let before = (1u32 << n) - 1;
                return (high & before == 0).then_some(i + n as usize);
            }
            if high != 0 {
                return None;
            }
            i += 32;
        }
        None
    }

    /// See [`super::json_special_avx2`].
    #[target_feature(enable = "avx2")]
    pub(super) fn json_special(s: &[u8]) -> usize {
        let load = |at: usize| load32(&s[at..at + 32]);
        let two = _mm256_set1_epi8(2);
        let limit = _mm256_set1_epi8(0x20);
        let backslash = _mm256_set1_epi8(b'\\' as i8);
        let mut i = 0;
        // Most strings are short and end in the first vector (the caller passes the rest of
        // its buffer, so there usually are 32 bytes to load): test it exactly first.
        for _ in 0..2 {
            if i + 32 > s.len() {
                break;
            }
            let m = mask(load(i));
            if m != 0 {
                return i + m.trailing_zeros() as usize;
            }
            i += 32;
        }
        // Long runs 128 bytes per turn with one test: the smallest `b ^ 2` of each lane and
        // the or of the backslash compares (about 0.2 instructions per byte against 0.38
        // with the exact mask of every 64 bytes); the exact loops below find the byte.
        for block in s[i..].chunks_exact(128) {
            let (mut low, mut bs) = (_mm256_set1_epi8(-1), _mm256_set1_epi8(0));
            for part in block.chunks_exact(32) {
                let v = load32(part);
                low = _mm256_min_epu8(low, _mm256_xor_si256(v, two));
                bs = _mm256_or_si256(bs, _mm256_cmpeq_epi8(v, backslash));
            }
            let hit = _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_max_epu8(low, limit), limit), bs);
            if _mm256_movemask_epi8(hit) != 0 {
                break;
            }
            i += 128;
        }
        while i + 64 <= s.len() {
            let m = u64::from(mask(load(i))) | (u64::from(mask(load(i + 32))) << 32);
            if m != 0 {
                return i + m.trailing_zeros() as usize;
            }
            i += 64;
        }
        while i + 32 <= s.len() {
            let m = mask(load(i));
            if m != 0 {
                return i + m.trailing_zeros() as usize;
            }
            i += 32;
        }
        if i < s.len() && s.len() >= 32 {
            // The last bytes: one load of the last 32, ignoring those tested already.
            let start = s.len() - 32;
            let m = mask(load(start)) & (u32::MAX << (i - start));
            return start
                + if m != 0 {
                    m.trailing_zeros() as usize
                } else {
                    32
                };
        }
        i + s[i..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .unwrap_or(s.len() - i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_init_counts_only_the_slot_it_was_handed() {
        let mut v = smallvec::SmallVec::<[String; 1]>::new();
        v.push_init(|slot| slot.write("inline".into()));
        v.push_init(|slot| slot.write("spilled".into()));
        assert_eq!(v.as_slice(), ["inline", "spilled"]);
        // A `&mut` to anything else is refused before the length covers the slot.
        let elsewhere = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            v.push_init(|_| Box::leak(Box::new(String::from("elsewhere"))));
        }));
        assert!(elsewhere.is_err());
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn short_eq_matches_slice_eq() {
        let words = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "abc",
            "abd",
            "xbc",
            "abcd",
            "abce",
            "abcdefg",
            "abcdefh",
            "abcdefgh",
            "abcdefgi",
            "bbcdefgh",
            "abcdefghijklmnop",
            "abcdefghijklmnoq",
            "abcdefghijklmnopq",
            "abcdefghijklmnopr",
            "msg",
            "msh",
        ];
        for a in words {
            for b in words {
                assert_eq!(
                    short_eq(a.as_bytes(), b.as_bytes()),
                    a == b,
                    "{a:?} vs {b:?}"
                );
            }
        }
        // 1..=3 bytes: every position must matter.
        assert!(!short_eq(b"abc", b"aXc"));
        // 17..=24 bytes: a difference in any of the three words counts.
        let base = *b"abcdefghijklmnopqrstuvwx";
        for n in 17..=24 {
            for at in 0..n {
                let mut other = base;
                other[at] = b'#';
                assert!(!short_eq(&base[..n], &other[..n]), "{n} {at}");
            }
            let same = base;
            assert!(short_eq(&base[..n], &same[..n]));
        }
    }

    /// `b` becomes the same string as `String::from_utf8(bytes)`, or fails at the same
    /// place with the same bytes given back.
    fn assert_string_as_std(b: TextBuf, bytes: &[u8], context: &str) {
        let ours = b
            .into_string()
            .map_err(|e| (e.utf8_error(), e.into_bytes()));
        let std = String::from_utf8(bytes.to_vec()).map_err(|e| (e.utf8_error(), e.into_bytes()));
        assert_eq!(ours, std, "{bytes:?} {context}");
    }

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
                    assert_string_as_std(b, &s, &format!("piece {piece} how {how}"));
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

    /// The vector ASCII check agrees with std's at every position of a non-ASCII byte in
    /// runs around the block size, and on all-ASCII runs.
    #[test]
    fn is_ascii_matches_std() {
        for len in (0..600).chain([4096, 65_537]) {
            let clean = vec![0x7fu8; len];
            assert!(is_ascii(&clean), "{len}");
            for pos in (0..len).filter(|p| *p < 300 || p % 61 == 0 || *p + 3 >= len) {
                for bad in [0x80u8, 0xc3, 0xff] {
                    let mut s = clean.clone();
                    s[pos] = bad;
                    assert_eq!(is_ascii(&s), s.is_ascii(), "{len} {pos} {bad:#x}");
                    assert!(!is_ascii(&s[pos..]));
                }
            }
        }
    }

    /// The ASCII run agrees with a byte-by-byte search: the run before the first special
    /// byte when that is among the first 64 and all before it is ASCII, else nothing.
    #[test]
    fn json_ascii_run_matches_bytewise_search() {
        if json_special_avx2(b"").is_none() {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        for len in 0..140 {
            for pos in 0..=len {
                for high in (0..=len).filter(|h| *h < 8 || h % 7 == 0 || h + 2 >= len) {
                    let mut v = vec![b'a'; len];
                    if pos < len {
                        v[pos] = b'"';
                    }
                    if high < len && high != pos {
                        v[high] = 0xc3;
                    }
                    let end = v.iter().position(|&b| special(b));
                    let want = match end {
                        Some(e) if e < 64 && len >= 32 && v[..e].is_ascii() => {
                            // Only where the vector loads that reach the byte fit in `v`.
                            (e < 32 || len >= 64).then(|| std::str::from_utf8(&v[..e]).unwrap())
                        }
                        _ => None,
                    };
                    assert_eq!(
                        json_ascii_run(&v),
                        want,
                        "len {len} quote {pos} high {high}"
                    );
                }
            }
        }
    }

    /// The AVX2 scan agrees with a byte-by-byte search for every special byte at every
    /// position of strings around the vector sizes, with every kind of other byte around it.
    #[test]
    fn json_special_matches_bytewise_search() {
        let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        if json_special_avx2(b"").is_none() {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        for len in (0..200).chain([1000, 4099]) {
            for pos in (0..=len).filter(|p| *p < 200 || p % 97 == 0 || *p + 2 >= len) {
                for (fill, hit) in [
                    (b'a', b'"'),
                    (0xe9, b'\\'),
                    (0x7f, 0x1f),
                    (0x80, 0x00),
                    (b' ', b'!'),
                    (0x21, 0x23),
                ] {
                    let mut v = vec![fill; len];
                    if pos < len {
                        v[pos] = hit;
                    }
                    let want = v.iter().position(|&b| special(b)).unwrap_or(len);
                    assert_eq!(
                        json_special_avx2(&v),
                        Some(want),
                        "{len} {pos} {fill:02x} {hit:02x}"
                    );
                }
            }
        }
        // Every byte value alone, at every position of a 64-byte run and past it.
        for b in 0..=255u8 {
            for pos in [0, 31, 32, 63, 64, 65, 100] {
                let mut v = vec![b'a'; 101];
                v[pos] = b;
                let want = if special(b) { pos } else { 101 };
                assert_eq!(json_special_avx2(&v), Some(want), "{b:02x} at {pos}");
            }
        }
    }

    /// Random sequences of every operation, against a plain `Vec<u8>` and
    /// `String::from_utf8`: the bytes and the conversion always agree.
    #[test]
    fn text_buf_random_operations() {
        use bytes::BufMut;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let pieces: [&[u8]; 6] = [
            b"abc",
            "é".as_bytes(),
            &[0xe2, 0x82],
            &[0xac],
            &[0xff],
            b"0123456789abcdef0123456789abcdef",
        ];
        for _ in 0..3000 {
            let (mut b, mut model) = (TextBuf::with_capacity(next(40) as usize), Vec::new());
            for _ in 0..next(12) {
                let piece = pieces[next(pieces.len() as u64) as usize];
                match next(6) {
                    0 => {
                        b.extend_from_slice(piece);
                        model.extend_from_slice(piece);
                    }
                    1 => {
                        b.put_slice(piece);
                        model.extend_from_slice(piece);
                    }
                    2 => {
                        let len = b.len();
                        let extra = next(4) as usize;
                        b.zeroed_room(piece.len() + extra)[..piece.len()].copy_from_slice(piece);
                        b.truncate(len + piece.len() + extra / 2);
                        model.extend_from_slice(piece);
                        model.resize(len + piece.len() + extra / 2, 0);
                    }
                    3 => {
                        assert_eq!(b.pop(), model.pop());
                    }
                    4 => {
                        let at = next(model.len() as u64 + 2) as usize;
                        let rest = model.split_off(at.min(model.len()));
                        assert_eq!(b.split_off(at), rest);
                    }
                    _ => {
                        let len = next(model.len() as u64 + 2) as usize;
                        b.truncate(len);
                        model.truncate(len);
                    }
                }
                assert_eq!(b.as_bytes(), &model[..]);
            }
            assert_string_as_std(b, &model, "");
        }
    }
}
