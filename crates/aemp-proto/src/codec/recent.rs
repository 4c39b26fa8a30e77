//! The port name and tag of the frames decoded last, reused when the next frame repeats them.
//!
//! A stream of messages mostly goes to one port and carries one tag (`["msg", i, ...]` to
//! the same port, thousands of times a second). Building each of those two strings anew
//! means checking its bytes for UTF-8 and copying them into a fresh string: about 80
//! instructions per string (callgrind, R1 receiver). When the bytes equal those of the
//! string kept from before, a clone is enough: for a string short enough to be stored
//! inline (the only kind kept here) that is a copy of its 24 bytes, with no allocation.
//! Long strings are not kept, since their clone allocates anyway.

use crate::value::Str;

/// The last port name and the last tag (the first message element, when a string) that
/// were short enough to be stored inline.
#[derive(Debug, Default)]
pub(super) struct Recent {
    /// The last port name.
    pub(super) port: Kept,
    /// The last tag.
    pub(super) tag: Kept,
    /// How many elements the last JSON frame's message had: the capacity the next one
    /// starts with when that is more than a message stores inline (a JSON array does not
    /// say how long it is, and growing the inline storage into an allocation on the third
    /// element costs a second copy).
    pub(super) elements: usize,
}

/// One kept string, with a copy of its bytes beside it: comparing with those needs no
/// look at the string's representation.
#[derive(Debug, Default)]
pub(super) struct Kept {
    len: usize,
    bytes: [u8; INLINE],
    s: Str,
}

/// The longest string a [`Str`] stores inline.
const INLINE: usize = std::mem::size_of::<Str>();

impl Kept {
    /// The kept string's clone when it is `bytes`, else the string of `bytes` (kept when it
    /// is stored inline).
    #[inline(always)]
    pub(super) fn reuse(&mut self, bytes: &[u8]) -> Option<Str> {
        if self.matches(bytes) {
            return Some(self.s.clone());
        }
        self.replace(bytes)
    }

    /// Whether `bytes` are the kept string's (then the string is [`Kept::get`]).
    #[inline(always)]
    pub(super) fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() == self.len && aemp_text::short_eq(&self.bytes[..self.len], bytes)
    }

    /// In JSON, where a kept string's bytes never need escaping (it was kept from a run
    /// without escapes): how many bytes of `rest` (what follows an opening quote) the kept
    /// string takes when `rest` starts with its bytes and the closing quote (then no scan for
    /// the string's end is needed; the string is [`Kept::get`]); 0 when it does not.
    #[inline(always)]
    pub(super) fn quoted(&self, rest: &[u8]) -> usize {
        let n = self.len;
        if rest.get(n) == Some(&b'"') && aemp_text::short_eq(&self.bytes[..n], &rest[..n]) {
            return n + 1;
        }
        0
    }

    /// The kept string.
    ///
    /// Callers build it where it goes (a message element, a frame's port name), not in an
    /// `Option` or `Result` first: those keep their variant in the string's last byte, and
    /// the compiler then copies the string as 23 bytes and one, which a processor cannot
    /// forward from the stores of the clone just before (a store-forwarding stall of a dozen
    /// cycles or more, measured as most of the JSON frame parser's time in `perf annotate`).
    #[inline(always)]
    pub(super) fn get(&self) -> Str {
        self.s.clone()
    }

    /// The string of `bytes` (kept when it is stored inline); `None` when they are not
    /// UTF-8.
    #[inline(never)]
    pub(super) fn replace(&mut self, bytes: &[u8]) -> Option<Str> {
        let s = Str::from(aemp_text::str_from_utf8(bytes).ok()?);
        if !s.is_heap_allocated() && bytes.len() <= INLINE {
            self.bytes[..bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len();
            self.s = s.clone();
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_come_back_equal_and_new_bytes_replace_the_kept_string() {
        let mut r = Recent::default();
        assert_eq!(r.port.reuse(b"").as_deref(), Some(""));
        assert_eq!(r.port.reuse(b"counter").as_deref(), Some("counter"));
        assert_eq!(r.port.reuse(b"counter").as_deref(), Some("counter"));
        assert_eq!(r.tag.reuse(b"counter").as_deref(), Some("counter"));
        assert_eq!(r.port.reuse(b"other").as_deref(), Some("other"));
        assert_eq!(r.port.s.as_str(), "other");
        // Not UTF-8: no string, and the kept one stays.
        assert_eq!(r.port.reuse(b"\xff"), None);
        assert_eq!(r.port.s.as_str(), "other");
        // Long strings are returned but not kept.
        let long = "x".repeat(40);
        assert_eq!(r.tag.reuse(long.as_bytes()).as_deref(), Some(long.as_str()));
        assert_eq!(r.tag.s.as_str(), "counter");
    }

    #[test]
    fn quoted_takes_the_kept_string_only_when_the_closing_quote_follows() {
        let mut k = Kept::default();
        // The empty string is kept from the start.
        assert_eq!((k.quoted(b"\",1]"), k.get()), (1, Str::default()));
        assert_eq!(k.reuse(b"msg").as_deref(), Some("msg"));
        assert_eq!((k.quoted(b"msg\",1]"), k.get()), (4, Str::from("msg")));
        assert_eq!(k.quoted(b"msgx\",1]"), 0);
        assert_eq!(k.quoted(b"ms\",1]"), 0);
        assert_eq!(k.quoted(b"msh\",1]"), 0);
        assert_eq!(k.quoted(b"msg"), 0);
    }
}
