//! JSON (RFC 8259) framing, as Perl `JSON::XS` writes and reads it.
//!
//! Decoding is strict RFC 8259 (no comments, no trailing commas, no raw control characters
//! in strings, UTF-8 only). Integer literals become [`Value::Int`]/[`Value::UInt`] when
//! they fit, anything with a fraction or exponent (or out of the 64-bit range) a
//! [`Value::Float`].
//!
//! Encoding is compact with non-ASCII written as raw UTF-8. Floats use the shortest text
//! that round-trips (ryu), which always contains a `.` or an exponent so they re-decode as
//! floats; NaN and ±Infinity have no JSON form and are written as `null`.
//! [`Value::Bytes`] is written as a string of Latin-1 code points, like a Perl byte string.

use super::{recent::Kept, recent::Recent, DecodeError, Fail, Framing, Limits, PushValue};
use crate::value::{Msg, MsgVec, Str, Value};

#[inline]
pub(super) fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn syntax(offset: u64, reason: &'static str) -> DecodeError {
    DecodeError::Syntax {
        framing: Framing::Json,
        offset,
        reason,
    }
}

/// Parses one JSON text at the start of `buf`; `base` is the stream offset of `buf[0]`.
///
/// A number that runs up to the end of `buf` is incomplete: more digits might follow.
pub(super) fn parse(buf: &[u8], base: u64, limits: &Limits) -> Result<(Value, usize), Fail> {
    let mut p = Parser::new(buf, base, limits);
    let v = p.value(0)?;
    Ok((v, p.pos))
}

/// Parses one frame `[port, msg...]` at the start of `buf` straight into its parts and
/// appends them to `out` (see `cbor::parse_frame`); `None` (nothing appended) sends the
/// caller to the general path (a port name that is not a string, not an array).
pub(super) fn parse_frame(
    buf: &[u8],
    base: u64,
    limits: &Limits,
    recent: &mut Recent,
    out: &mut Vec<(Str, Msg)>,
) -> Result<Option<usize>, Fail> {
    let mut p = Parser::new(buf, base, limits);
    p.skip_ws();
    if p.peek()? != b'[' {
        return Ok(None);
    }
    let depth = p.enter(0)?;
    p.pos += 1;
    p.skip_ws();
    match p.peek()? {
        b']' => {
            p.pos += 1;
            out.push((Str::default(), Msg::new()));
            return Ok(Some(p.pos));
        }
        b'"' => {}
        _ => return Ok(None),
    }
    // The frame goes into `out` before its elements are parsed, and they are built in
    // place: a finished message moved into `out` would be read back while its stores are
    // still in flight, with loads of other sizes (see `Kept::get`).
    if p.kept_string(&recent.port) {
        aemp_text::PushWith::push_with(out, || (recent.port.get(), Msg::new()));
    } else {
        let port = p.string_kept_anew(&mut recent.port)?;
        aemp_text::PushWith::push_with(out, || (port, Msg::new()));
    }
    let i = out.len() - 1;
    // A JSON array does not say how many elements follow: the last message's count is
    // the guess for the capacity (see `Recent::elements`).
    let items = &mut out[i].1 .0;
    crate::value::reserve_new(items, recent.elements);
    let parsed = p.elements(depth, items, recent);
    if let Err(e) = parsed {
        out.pop();
        return Err(e);
    }
    // Capped: one huge message must not make every later one allocate as much.
    recent.elements = out[i].1.len().min(32);
    Ok(Some(p.pos))
}

/// Parses `prefix`, a frame up to and including the opening quote of its last element, a
/// string (`["port",elem,...,"`): the port name and the elements before that string.
/// Errors are where the bytes are not such a prefix.
pub(super) fn frame_prefix(
    prefix: &[u8],
    base: u64,
    limits: &Limits,
) -> Result<(Str, MsgVec), Fail> {
    let mut p = Parser::new(prefix, base, limits);
    let quote = prefix.len().checked_sub(1);
    p.skip_ws();
    if p.peek()? != b'[' {
        return Err(p.err(p.pos, "expected a frame"));
    }
    let depth = p.enter(0)?;
    p.pos += 1;
    p.skip_ws();
    if p.peek()? != b'"' || Some(p.pos) == quote {
        return Err(p.err(p.pos, "expected a port name"));
    }
    let port = p.string()?;
    let mut items = MsgVec::new();
    loop {
        p.skip_ws();
        if p.peek()? != b',' {
            return Err(p.err(p.pos, "expected ','"));
        }
        p.pos += 1;
        p.skip_ws();
        if Some(p.pos) == quote && p.peek()? == b'"' {
            return Ok((port, items));
        }
        p.element(depth, &mut items)?;
    }
}

/// Builds the frame whose start is `prefix` (see [`frame_prefix`]) and whose last string's
/// contents, which need no unescaping, are `body`, and appends it to `out`. The body
/// becomes the string without a copy.
pub(super) fn frame_with_tail(
    prefix: &[u8],
    base: u64,
    limits: &Limits,
    body: aemp_text::TextBuf,
    out: &mut Vec<(Str, Msg)>,
) -> Result<(), Fail> {
    let (port, mut items) = frame_prefix(prefix, base, limits)?;
    let s = body.into_string().map_err(|e| {
        Fail::Error(DecodeError::InvalidUtf8 {
            offset: base + (prefix.len() + e.utf8_error().valid_up_to()) as u64,
        })
    })?;
    items.push(Value::Str(Str::from_string_buffer(s)));
    out.push((port, Msg(items)));
    Ok(())
}

/// Index of the first byte in `s` that ends a plain run of string contents (`"`, `\`, or a
/// control byte), or `s.len()`.
pub(super) fn plain_len(s: &[u8]) -> usize {
    find_special(s)
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    max_depth: usize,
}

impl<'a> Parser<'a> {
    fn new(buf: &'a [u8], base: u64, limits: &Limits) -> Parser<'a> {
        Parser {
            buf,
            pos: 0,
            base,
            max_depth: limits.depth(),
        }
    }

    fn err(&self, at: usize, reason: &'static str) -> Fail {
        Fail::Error(syntax(self.base + at as u64, reason))
    }

    #[inline]
    fn skip_ws(&mut self) {
        while self.buf.get(self.pos).is_some_and(|&b| is_whitespace(b)) {
            self.pos += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Result<u8, Fail> {
        self.buf.get(self.pos).copied().ok_or(Fail::Incomplete)
    }

    /// The elements of a frame after its port name, up to and including the closing `]`.
    #[inline(always)]
    fn elements(
        &mut self,
        depth: usize,
        out: &mut impl PushValue,
        recent: &mut Recent,
    ) -> Result<(), Fail> {
        let mut first = true;
        loop {
            self.skip_ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    if first {
                        first = false;
                        self.tag_element(depth, out, recent)?;
                    } else {
                        self.element(depth, out)?;
                    }
                }
                b']' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err(self.pos, "expected ',' or ']'")),
            }
        }
    }

    /// [`Parser::element`] for a message's first element, the tag: a string without escapes
    /// is taken from `recent` when it repeats the last frame's.
    #[inline(always)]
    fn tag_element(
        &mut self,
        depth: usize,
        out: &mut impl PushValue,
        recent: &mut Recent,
    ) -> Result<(), Fail> {
        self.skip_ws();
        if self.peek()? == b'"' {
            let kept = &mut recent.tag;
            if self.kept_string(kept) {
                out.push_str_with(|| kept.get());
                return Ok(());
            }
            let s = self.string_kept_anew(kept)?;
            out.push_value(Value::Str(s));
            return Ok(());
        }
        self.element(depth, out)
    }

    /// Appends the next value to `out`, strings inline (see `cbor::Parser::element`).
    #[inline(always)]
    fn element(&mut self, depth: usize, out: &mut impl PushValue) -> Result<(), Fail> {
        self.skip_ws();
        match self.peek()? {
            b'"' => return self.string_into(out),
            b'1'..=b'9' => {
                if let Some(n) = self.short_uint() {
                    out.push_with(|| Value::Int(n));
                    return Ok(());
                }
            }
            _ => {}
        }
        let v = self.value(depth)?;
        out.push_value(v);
        Ok(())
    }

    /// [`Parser::number`]'s result in one pass for the common number: a positive integer
    /// of at most 18 digits (so it cannot overflow) without a leading zero, followed by a
    /// byte that ends it (the caller has seen a first digit of 1 to 9). `None` (nothing
    /// consumed) for anything else, which `number` then parses or reports.
    #[inline(always)]
    fn short_uint(&mut self) -> Option<i64> {
        let rest = &self.buf[self.pos..];
        let mut acc = 0u64;
        let mut n = 0;
        while let Some(&b) = rest.get(n) {
            let d = b.wrapping_sub(b'0');
            if d > 9 || n == 18 {
                break;
            }
            acc = acc * 10 + u64::from(d);
            n += 1;
        }
        match rest.get(n) {
            // A number touching the end of the buffer may still grow; 19 digits or more,
            // a fraction or an exponent take the general path.
            None | Some(b'0'..=b'9' | b'.' | b'e' | b'E') => None,
            Some(_) => {
                self.pos += n;
                // Invariant: at most 18 digits, below 10^18 < i64::MAX.
                Some(acc as i64)
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Fail> {
        self.skip_ws();
        match self.peek()? {
            b'"' => self.string().map(Value::Str),
            b'[' => self.array(depth),
            b'{' => self.object(depth),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'n' => self.literal(b"null", Value::Null),
            _ => Err(self.err(self.pos, "unexpected byte")),
        }
    }

    fn enter(&self, depth: usize) -> Result<usize, Fail> {
        if depth >= self.max_depth {
            return Err(Fail::Error(DecodeError::TooDeep {
                offset: self.base + self.pos as u64,
                max_depth: self.max_depth,
            }));
        }
        Ok(depth + 1)
    }

    // Containers stay out of line so `value`, which recurses per element, keeps a small
    // stack frame and cheap prologue.
    #[inline(never)]
    fn array(&mut self, depth: usize) -> Result<Value, Fail> {
        let depth = self.enter(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(Value::List(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(Value::List(items));
                }
                _ => return Err(self.err(self.pos, "expected ',' or ']'")),
            }
        }
    }

    #[inline(never)]
    fn object(&mut self, depth: usize) -> Result<Value, Fail> {
        let depth = self.enter(depth)?;
        self.pos += 1;
        let mut entries = Vec::new();
        self.skip_ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(Value::Map(entries));
        }
        loop {
            self.skip_ws();
            if self.peek()? != b'"' {
                return Err(self.err(self.pos, "expected a string key"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek()? != b':' {
                return Err(self.err(self.pos, "expected ':'"));
            }
            self.pos += 1;
            entries.push((key, self.value(depth)?));
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(Value::Map(entries));
                }
                _ => return Err(self.err(self.pos, "expected ',' or '}'")),
            }
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> Result<Value, Fail> {
        let rest = &self.buf[self.pos..];
        if rest.len() < word.len() {
            return if word.starts_with(rest) {
                Err(Fail::Incomplete)
            } else {
                Err(self.err(self.pos, "invalid literal"))
            };
        }
        if &rest[..word.len()] != word {
            return Err(self.err(self.pos, "invalid literal"));
        }
        self.pos += word.len();
        Ok(v)
    }

    /// Validates `self.buf[start..end]` as UTF-8.
    fn utf8(&self, start: usize, end: usize) -> Result<&str, Fail> {
        aemp_text::str_from_utf8(&self.buf[start..end]).map_err(|e| {
            Fail::Error(DecodeError::InvalidUtf8 {
                offset: self.base + (start + e.valid_up_to()) as u64,
            })
        })
    }

    /// Index of the first `"`, `\` or control byte at or after `i`.
    #[inline]
    fn plain_run(&self, i: usize) -> Result<usize, Fail> {
        let rest = self.buf.get(i..).unwrap_or_default();
        let n = find_special(rest);
        if n == rest.len() {
            return Err(Fail::Incomplete);
        }
        Ok(i + n)
    }

    /// A string that often repeats (a port name, a tag) when `kept` is not the next one
    /// (see `Kept::quoted`): the string parsed, and kept when it has no escapes.
    #[inline(never)]
    fn string_kept_anew(&mut self, kept: &mut Kept) -> Result<Str, Fail> {
        let start = self.pos + 1;
        let end = self.plain_run(start)?;
        if self.buf[end] == b'"' {
            // None: not UTF-8, which the regular parse reports.
            if let Some(s) = kept.reuse(&self.buf[start..end]) {
                self.pos = end + 1;
                return Ok(s);
            }
        }
        // Escapes, a control byte or bytes that are not UTF-8: not the common case either.
        self.string_other()
    }

    /// At an opening quote: when the kept string and its closing quote follow, moves past
    /// them and returns true (the string is `kept.get()`, see `Kept::quoted`).
    #[inline(always)]
    fn kept_string(&mut self, kept: &Kept) -> bool {
        let used = kept.quoted(&self.buf[self.pos + 1..]);
        if used == 0 {
            return false;
        }
        self.pos += 1 + used;
        true
    }

    /// At an opening quote: the common string (ASCII, no escapes, ending within the first
    /// 64 bytes, see `aemp_text::json_ascii_run`), moved past; `None`, nothing consumed,
    /// for any other.
    #[inline(always)]
    fn ascii_string(&mut self) -> Option<&'a str> {
        let start = self.pos + 1;
        let run = aemp_text::json_ascii_run(&self.buf[start..])?;
        // The byte after the run is a special one, so it is in the buffer.
        let end = start + run.len();
        if self.buf[end] != b'"' {
            return None;
        }
        self.pos = end + 1;
        Some(run)
    }

    /// Appends the string that starts here to `out`; the common string built in place (see
    /// [`Kept::get`] on why not through a `Result`).
    #[inline(always)]
    fn string_into(&mut self, out: &mut impl PushValue) -> Result<(), Fail> {
        if let Some(run) = self.ascii_string() {
            out.push_str_with(|| Str::from(run));
            return Ok(());
        }
        let s = self.string_other()?;
        out.push_value(Value::Str(s));
        Ok(())
    }

    fn string(&mut self) -> Result<Str, Fail> {
        match self.ascii_string() {
            Some(run) => Ok(Str::from(run)),
            None => self.string_other(),
        }
    }

    /// [`Parser::string`] past its common case ([`Parser::ascii_string`]).
    fn string_other(&mut self) -> Result<Str, Fail> {
        let start = self.pos + 1;
        let mut i = self.plain_run(start)?;
        if self.buf[i] == b'"' {
            // Fast path: no escape, borrow straight from the buffer.
            let s = Str::from(self.utf8(start, i)?);
            self.pos = i + 1;
            return Ok(s);
        }
        let mut out = String::with_capacity(i - start + 16);
        out.push_str(self.utf8(start, i)?);
        loop {
            match self.buf[i] {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(Str::from(out));
                }
                b'\\' => {
                    let e = *self.buf.get(i + 1).ok_or(Fail::Incomplete)?;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let (c, len) = self.unicode_escape(i)?;
                            out.push(c);
                            i += len;
                            let run = self.plain_run(i)?;
                            out.push_str(self.utf8(i, run)?);
                            i = run;
                            continue;
                        }
                        _ => return Err(self.err(i, "invalid escape")),
                    };
                    out.push(c);
                    i += 2;
                }
                _ => return Err(self.err(i, "control character in string")),
            }
            let run = self.plain_run(i)?;
            out.push_str(self.utf8(i, run)?);
            i = run;
        }
    }

    fn hex4(&self, at: usize) -> Result<u32, Fail> {
        let digits = self.buf.get(at..at + 4);
        let Some(digits) = digits else {
            // Incomplete only if what is there could still become hex digits.
            return if self.buf[at.min(self.buf.len())..]
                .iter()
                .all(u8::is_ascii_hexdigit)
            {
                Err(Fail::Incomplete)
            } else {
                Err(self.err(at, "invalid \\u escape"))
            };
        };
        digits.iter().try_fold(0u32, |acc, &d| {
            let v = char::from(d)
                .to_digit(16)
                .ok_or_else(|| self.err(at, "invalid \\u escape"))?;
            Ok(acc * 16 + v)
        })
    }

    /// Decodes `\uXXXX` (or a surrogate pair `\uD8xx\uDCxx`) at `i`: the char and the
    /// number of bytes used.
    fn unicode_escape(&self, i: usize) -> Result<(char, usize), Fail> {
        let hi = self.hex4(i + 2)?;
        match hi {
            0xd800..=0xdbff => {
                match self.buf.get(i + 6..i + 8) {
                    Some(b"\\u") => {}
                    Some(_) => return Err(self.err(i, "lone surrogate in \\u escape")),
                    None => {
                        let rest = &self.buf[(i + 6).min(self.buf.len())..];
                        return if b"\\u".starts_with(rest) {
                            Err(Fail::Incomplete)
                        } else {
                            Err(self.err(i, "lone surrogate in \\u escape"))
                        };
                    }
                }
                let lo = self.hex4(i + 8)?;
                if !(0xdc00..=0xdfff).contains(&lo) {
                    return Err(self.err(i, "lone surrogate in \\u escape"));
                }
                let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                char::from_u32(c)
                    .map(|c| (c, 12))
                    .ok_or_else(|| self.err(i, "invalid \\u escape"))
            }
            0xdc00..=0xdfff => Err(self.err(i, "lone surrogate in \\u escape")),
            _ => char::from_u32(hi)
                .map(|c| (c, 6))
                .ok_or_else(|| self.err(i, "invalid \\u escape")),
        }
    }

    fn digits(&self, mut i: usize) -> Result<usize, Fail> {
        let first = i;
        while self.buf.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == self.buf.len() {
            return Err(Fail::Incomplete);
        }
        if i == first {
            return Err(self.err(i, "expected a digit"));
        }
        Ok(i)
    }

    fn number(&mut self) -> Result<Value, Fail> {
        let start = self.pos;
        let neg = self.buf[start] == b'-';
        let int_start = start + usize::from(neg);
        let mut i = match self.buf.get(int_start) {
            None => return Err(Fail::Incomplete),
            Some(b'0') => int_start + 1,
            Some(b'1'..=b'9') => self.digits(int_start)?,
            Some(_) => return Err(self.err(int_start, "expected a digit")),
        };
        let int_end = i;
        let mut is_float = false;
        if self.buf.get(i) == Some(&b'.') {
            i = self.digits(i + 1)?;
            is_float = true;
        }
        if matches!(self.buf.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(self.buf.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            i = self.digits(i)?;
            is_float = true;
        }
        // A number touching the end of the buffer may still grow.
        if i >= self.buf.len() {
            return Err(Fail::Incomplete);
        }
        self.pos = i;
        if !is_float {
            if let Some(v) = exact_integer(&self.buf[int_start..int_end], neg) {
                return Ok(v);
            }
        }
        // Invariant: the bytes are ASCII digits, sign, '.', 'e' (checked above).
        std::str::from_utf8(&self.buf[start..i])
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map(Value::Float)
            .ok_or_else(|| self.err(start, "invalid number"))
    }
}

/// The integer of a digit string if it fits `i64` (negative) or `u64` (positive).
#[inline]
fn exact_integer(digits: &[u8], neg: bool) -> Option<Value> {
    if neg {
        let mut acc: i64 = 0;
        for &d in digits {
            acc = acc.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
        }
        Some(Value::Int(acc))
    } else {
        let mut acc: u64 = 0;
        for &d in digits {
            acc = acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        Some(Value::from(acc))
    }
}

/// True if some byte of `block` is a `"`, `\` or control byte.
///
/// Written so that the compiler turns it into vector operations (16 bytes per instruction
/// with the baseline SSE2): no early exit, two reductions over the whole block. `b ^ 2`
/// maps `"` (0x22) to 0x20 and the control bytes 0x00..=0x1f onto themselves, and every
/// other byte above 0x20, so "a quote or a control byte" is one unsigned minimum at most
/// 0x20 (`pxor` and `pminub` per 16 bytes); only the backslash needs a compare. About a
/// third fewer instructions than or-ing three compares, and 1.4x the bytes per second
/// on a 32 KiB string in cache (see `find_special`).
#[inline(always)]
fn block_has_special(block: &[u8; BLOCK]) -> bool {
    let (min, backslash) = block.iter().fold((u8::MAX, 0u8), |(min, bs), &b| {
        (min.min(b ^ 2), bs | u8::from(b == b'\\'))
    });
    min <= 0x20 || backslash != 0
}

/// Bytes per step of [`find_special`]'s vector loop.
const BLOCK: usize = 128;

/// Index of the first `"`, `\` or control byte (< 0x20) in `s`, or `s.len()`.
///
/// Strings dominate message bytes, so after the first [`HEAD`] bytes long runs are skipped
/// a [`BLOCK`] at a time with vector operations (callgrind: about 0.52 instructions per
/// byte of a string in cache, 0.70 with three or'ed compares per byte and 1.1 with the word
/// loop alone); the block with a hit, the
/// head and the remainder go through 8 bytes per step: with the classic SWAR tests,
/// `(v - 0x01..01) & !v & 0x80..80` is non-zero exactly when some byte of `v` is zero (and
/// the same with 0x20..20 when some byte is below 0x20).
#[inline]
fn find_special(s: &[u8]) -> usize {
    if let Some(n) = find_special_avx2(s) {
        return n;
    }
    find_special_portable(s)
}

/// [`find_special`] with AVX2, for strings of 32 bytes or more where the CPU has it (32
/// bytes per test from the start; callgrind, aemp-bench R1 --framing json: see the commit
/// that added it); `None` otherwise.
#[inline(always)]
fn find_special_avx2(s: &[u8]) -> Option<usize> {
    if s.len() >= 32 {
        aemp_text::json_special_avx2(s)
    } else {
        None
    }
}

/// [`find_special`] without vector extensions beyond SSE2.
fn find_special_portable(s: &[u8]) -> usize {
    // Most strings are short, and the parser passes the rest of the buffer (many frames):
    // the word loop finds their end in the first bytes. Only a longer run goes on to the
    // block loop.
    let head = s.len().min(HEAD);
    let n = find_special_words(&s[..head]);
    if n < head {
        return n;
    }
    head + find_special_blocks(&s[head..])
}

/// Bytes [`find_special_portable`] looks at a word at a time before it switches to blocks.
const HEAD: usize = 64;

/// [`find_special`] for strings of a [`BLOCK`] or more.
#[inline(never)]
fn find_special_blocks(s: &[u8]) -> usize {
    let mut blocks = s.chunks_exact(BLOCK);
    let mut start = 0;
    for block in blocks.by_ref() {
        // chunks_exact yields exactly BLOCK bytes (were it not so, the zeros would send
        // this block to the word loop, which is exact anyway).
        let block: &[u8; BLOCK] = block.try_into().unwrap_or(&[0; BLOCK]);
        if block_has_special(block) {
            return start + find_special_words(&block[..]);
        }
        start += BLOCK;
    }
    start + find_special_words(blocks.remainder())
}

/// [`find_special`] a word at a time.
#[inline]
fn find_special_words(s: &[u8]) -> usize {
    let hits = special_bytes;
    #[inline(always)]
    fn word(s: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    }
    let mut i = 0;
    // Long runs (large strings) 32 bytes per turn: one branch for four words.
    while i + 32 <= s.len() {
        if hits(word(s, i)) | hits(word(s, i + 8)) | hits(word(s, i + 16)) | hits(word(s, i + 24))
            != 0
        {
            break;
        }
        i += 32;
    }
    while i + 8 <= s.len() {
        if hits(word(s, i)) != 0 {
            break;
        }
        i += 8;
    }
    while let Some(&b) = s.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// Resumable completeness scan of one JSON text that did not fit the buffered bytes.
///
/// Containers and strings are tracked by nesting depth, string and escape state only; the
/// parser validates the text once it is complete. The scan remembers where it stopped, so
/// each byte is looked at once however the text is split.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Offset (from the text start) of the next byte to look at.
    off: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Offset of the opening quote of the string the scan is in (or was in last).
    str_start: usize,
    /// False once that string has shown an escape or a control byte.
    str_plain: bool,
}

impl Scan {
    /// Scans on through `buf` (the buffered bytes of this text, from its first
    /// non-whitespace byte). Returns the text's length once it is complete.
    pub(super) fn advance(
        &mut self,
        buf: &[u8],
        base: u64,
        limits: &Limits,
    ) -> Result<Option<usize>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let max_depth = limits.depth();
        match first {
            b'[' | b'{' | b'"' => {}
            // Top-level scalars: literals have a fixed length, numbers end at the first
            // byte that cannot belong to them.
            b't' | b'n' | b'f' => {
                let len = if first == b'f' { 5 } else { 4 };
                return Ok((buf.len() >= len).then_some(len));
            }
            b'-' | b'0'..=b'9' => {
                let mut i = self.off;
                while buf
                    .get(i)
                    .is_some_and(|&b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    i += 1;
                }
                self.off = i;
                return if i < buf.len() {
                    Ok(Some(i))
                } else {
                    self.need_more(buf, limits)
                };
            }
            _ => return Err(syntax(base, "unexpected byte")),
        }
        let mut i = self.off;
        while i < buf.len() {
            if self.in_string {
                // String contents: only quotes and backslashes matter; jump between them.
                while i < buf.len() {
                    if self.escaped {
                        self.escaped = false;
                        i += 1;
                        continue;
                    }
                    i += find_special(&buf[i..]);
                    let Some(&b) = buf.get(i) else { break };
                    i += 1;
                    if b == b'\\' {
                        self.escaped = true;
                        self.str_plain = false;
                    } else if b == b'"' {
                        self.in_string = false;
                        break;
                    } else {
                        // A control byte: the parser will refuse it.
                        self.str_plain = false;
                    }
                }
                if !self.in_string && self.depth == 0 {
                    return Ok(Some(i));
                }
                continue;
            }
            match buf[i] {
                b'[' | b'{' => {
                    if self.depth >= max_depth {
                        return Err(DecodeError::TooDeep {
                            offset: base + i as u64,
                            max_depth,
                        });
                    }
                    self.depth += 1;
                }
                b']' | b'}' => {
                    // Invariant: depth >= 1 here, since the text started with '[' or '{'
                    // and returns as soon as depth drops back to 0.
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Ok(Some(i + 1));
                    }
                }
                b'"' => {
                    self.in_string = true;
                    self.str_start = i;
                    self.str_plain = true;
                }
                _ => {}
            }
            i += 1;
        }
        self.off = i;
        self.need_more(buf, limits)
    }

    /// Where the scan stopped inside a string element of the outermost container that has
    /// no escape or control byte so far: the offset of its opening quote.
    pub(super) fn open_plain_string(&self) -> Option<usize> {
        (self.in_string && self.depth == 1 && self.str_plain && !self.escaped)
            .then_some(self.str_start)
    }

    fn need_more(&self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, DecodeError> {
        if buf.len() > limits.max_message {
            return Err(DecodeError::TooLarge {
                size: buf.len() as u64,
                max_message: limits.max_message,
            });
        }
        Ok(None)
    }
}

/// Escape table: 0 = copy the byte, otherwise the character after the backslash (`u` for
/// the `\u00XX` form).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

#[inline]
fn write_escape(b: u8, esc: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if esc == b'u' {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', esc]);
    }
}

/// The JSON form of a string that needed no escaping, kept to be copied when the next frame
/// repeats it: a stream of messages mostly goes to one port with one tag, and a copy of the
/// kept bytes spares their scan for bytes to escape (callgrind, R1 json sender: about 80
/// instructions per string).
#[derive(Debug, Default)]
pub(super) struct KeptStr {
    /// `"…"`, the string with its quotes; empty while nothing is kept.
    quoted: Vec<u8>,
}

/// Longer strings are not kept: comparing them costs about what scanning them does.
const KEEP_MAX: usize = 64;

impl KeptStr {
    /// Writes `s` like [`write_str`], from the kept form when it is the kept string.
    #[inline(always)]
    fn write(&mut self, s: &str, out: &mut Vec<u8>) {
        let b = s.as_bytes();
        let q = &self.quoted;
        if q.len() == b.len() + 2 && aemp_text::short_eq(&q[1..q.len() - 1], b) {
            out.extend_from_slice(q);
            return;
        }
        self.write_new(s, out);
    }

    #[inline(never)]
    fn write_new(&mut self, s: &str, out: &mut Vec<u8>) {
        let start = out.len();
        write_str(s, out);
        // The same length as `s` plus the quotes: nothing was escaped.
        if s.len() <= KEEP_MAX && out.len() - start == s.len() + 2 {
            self.quoted.clear();
            self.quoted.extend_from_slice(&out[start..]);
        }
    }
}

#[inline]
fn write_str(s: &str, out: &mut Vec<u8>) {
    let mut rest = s.as_bytes();
    out.reserve(rest.len() + 2);
    out.push(b'"');
    // Runs without anything to escape are copied whole (`plain_run` looks for exactly
    // the bytes that ESCAPE marks).
    loop {
        let n = plain_run(rest);
        out.extend_from_slice(&rest[..n]);
        let Some(&b) = rest.get(n) else { break };
        write_escape(b, ESCAPE[usize::from(b)], out);
        rest = &rest[n + 1..];
    }
    out.push(b'"');
}

/// [`find_special`] for the encoder, whose strings are mostly short (port names, tags, a
/// few dozen bytes of payload): strings of 32 bytes or more take the AVX2 scan where the
/// CPU has it; otherwise up to [`HEAD`] bytes are scanned 8 at a time, and the index of the
/// first special byte is read off the word's hit mask instead of scanning the word again
/// byte by byte, and longer strings go to the portable block loop.
/// (Callgrind, the R1 frame `["port","msg",i,"<48 bytes>"]`, three strings: about 240
/// instructions less per frame than with [`find_special`].)
#[inline]
fn plain_run(s: &[u8]) -> usize {
    if let Some(n) = find_special_avx2(s) {
        return n;
    }
    if s.len() > HEAD {
        return find_special_portable(s);
    }
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for w in words.by_ref() {
        let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        let hit = special_bytes(w);
        if hit != 0 {
            // The lowest marked byte is a true hit (a borrow only runs upwards from one).
            return at + hit.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    at + words
        .remainder()
        .iter()
        .position(|&b| ESCAPE[usize::from(b)] != 0)
        .unwrap_or(words.remainder().len())
}

/// The high bit of each byte of `x` (little-endian) that is `"`, `\` or below 0x20, and
/// possibly of bytes above such a byte (the classic SWAR tests: `(v - 0x01..01) & !v &
/// 0x80..80` marks the zero bytes of `v`, exactly up to the first).
#[inline(always)]
fn special_bytes(x: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let q = x ^ (LO * u64::from(b'"'));
    let b = x ^ (LO * u64::from(b'\\'));
    ((q.wrapping_sub(LO) & !q) | (b.wrapping_sub(LO) & !b) | (x.wrapping_sub(LO * 0x20) & !x)) & HI
}

/// True when `s` can be written between quotes as it is (nothing to escape).
pub(super) fn is_plain(s: &str) -> bool {
    find_special(s.as_bytes()) == s.len()
}

/// A byte string as Perl's JSON::XS writes it: one code point per byte.
fn write_latin1(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in bytes {
        let esc = ESCAPE[usize::from(b)];
        if esc != 0 {
            write_escape(b, esc, out);
        } else if b < 0x80 {
            out.push(b);
        } else {
            out.extend_from_slice(&[0xc0 | (b >> 6), 0x80 | (b & 0x3f)]);
        }
    }
    out.push(b'"');
}

pub(super) fn encode_frame(port: &str, msg: &[Value], out: &mut Vec<u8>) {
    out.push(b'[');
    write_str(port, out);
    for v in msg {
        out.push(b',');
        encode_value(v, out);
    }
    out.push(b']');
}

/// [`encode_frame`] into an outbox, with top-level strings of at least
/// [`ZERO_COPY_MIN`](super::ZERO_COPY_MIN) bytes that need no escaping moved out of `msg`
/// (see [`encode_frame_owned`](super::encode_frame_owned)).
pub(super) fn encode_frame_owned(port: &str, msg: &mut [Value], out: &mut super::Outbox) {
    out.bytes.push(b'[');
    out.json_port.write(port, &mut out.bytes);
    for (i, v) in msg.iter_mut().enumerate() {
        out.bytes.push(b',');
        match v {
            Value::Str(s) if i == 0 => out.json_tag.write(s, &mut out.bytes),
            // Deciding costs a scan of the long string: done once.
            Value::Str(s) if s.len() >= super::ZERO_COPY_MIN && is_plain(s) => {
                out.bytes.push(b'"');
                out.push_big(std::mem::take(s));
                out.bytes.push(b'"');
            }
            v => encode_value(v, &mut out.bytes),
        }
    }
    out.bytes.push(b']');
}

#[inline]
pub(super) fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::List(_) | Value::Map(_) => encode_bounded(v, out, super::RECURSION_BUDGET),
        scalar => encode_scalar(scalar, out),
    }
}

/// Writes `v` recursively (the fast way) for up to `budget` more levels of nesting, and
/// anything nested deeper with an explicit stack (`nested::encode_nested`).
fn encode_bounded(v: &Value, out: &mut Vec<u8>, budget: usize) {
    match v {
        Value::List(_) | Value::Map(_) if budget == 0 => {
            super::nested::encode_nested::<JsonNesting>(v, out)
        }
        Value::List(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode_bounded(v, out, budget - 1);
            }
            out.push(b']');
        }
        Value::Map(entries) => {
            out.push(b'{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                encode_bounded(v, out, budget - 1);
            }
            out.push(b'}');
        }
        scalar => encode_scalar(scalar, out),
    }
}

/// Writes a value that is not a container.
#[inline(always)]
fn encode_scalar(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::UInt(u) => out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes()),
        Value::Float(f) if f.is_finite() => {
            // ryu always writes a '.' or an exponent ("3.0", "1e300"), so the text
            // re-decodes as a float, and it is the shortest text that round-trips.
            out.extend_from_slice(ryu::Buffer::new().format_finite(*f).as_bytes());
        }
        // JSON has no NaN or Infinity.
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::Str(s) => write_str(s, out),
        Value::Bytes(b) => write_latin1(b, out),
        // Containers go through `encode_bounded`.
        Value::List(_) | Value::Map(_) => {}
    }
}

/// JSON around nested values: brackets, commas, `key:`.
pub(super) struct JsonNesting;

impl super::nested::Nesting for JsonNesting {
    fn open_list(_: usize, out: &mut Vec<u8>) {
        out.push(b'[');
    }
    fn open_map(_: usize, out: &mut Vec<u8>) {
        out.push(b'{');
    }
    fn scalar(v: &Value, out: &mut Vec<u8>) {
        encode_scalar(v, out);
    }
    fn separator(out: &mut Vec<u8>) {
        out.push(b',');
    }
    fn key(k: &str, out: &mut Vec<u8>) {
        write_str(k, out);
        out.push(b':');
    }
    fn close_list(out: &mut Vec<u8>) {
        out.push(b']');
    }
    fn close_map(out: &mut Vec<u8>) {
        out.push(b'}');
    }
}

/// Length of what [`write_str`] writes for `s`, quotes included.
pub(super) fn str_len(s: &str) -> usize {
    let mut rest = s.as_bytes();
    let mut n = 2;
    loop {
        let plain = find_special(rest);
        n += plain;
        let Some(&b) = rest.get(plain) else { break };
        n += escape_len(ESCAPE[usize::from(b)]);
        rest = &rest[plain + 1..];
    }
    n
}

/// Length of what [`write_latin1`] writes for `bytes`, quotes included.
pub(super) fn latin1_len(bytes: &[u8]) -> usize {
    2 + bytes
        .iter()
        .map(|&b| match ESCAPE[usize::from(b)] {
            0 if b < 0x80 => 1,
            0 => 2,
            esc => escape_len(esc),
        })
        .sum::<usize>()
}

/// Length of what [`write_escape`] writes.
#[inline]
fn escape_len(esc: u8) -> usize {
    if esc == b'u' {
        6
    } else {
        2
    }
}

/// The most bytes [`write_str`] or [`write_latin1`] write per byte of input (`\u00XX`).
pub(super) const MAX_EXPANSION: usize = 6;

/// The most bytes a number takes (`-9223372036854775808` is 20, and ryu writes at most
/// 24).
pub(super) const MAX_NUMBER: usize = 24;

/// Exact length of what [`encode_scalar`] writes; for a list or map, of its brackets.
pub(super) fn scalar_len(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Int(i) => itoa::Buffer::new().format(*i).len(),
        Value::UInt(u) => itoa::Buffer::new().format(*u).len(),
        Value::Float(f) if f.is_finite() => ryu::Buffer::new().format_finite(*f).len(),
        Value::Float(_) => 4,
        Value::Str(s) => str_len(s),
        Value::Bytes(b) => latin1_len(b),
        Value::List(_) | Value::Map(_) => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list;

    fn dec(text: &[u8]) -> Result<(Value, usize), Fail> {
        parse(text, 0, &Limits::default())
    }

    /// Decodes a complete text (a trailing space terminates top-level numbers).
    fn one(text: &str) -> Value {
        let padded = format!("{text} ");
        match dec(padded.as_bytes()) {
            Ok((v, n)) if n == text.len() => v,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn enc(v: &Value) -> String {
        let mut out = Vec::new();
        encode_value(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn is_err(text: &[u8]) -> bool {
        matches!(dec(text), Err(Fail::Error(_)))
    }

    #[test]
    fn numbers() {
        assert_eq!(one("0"), Value::Int(0));
        assert_eq!(one("-0"), Value::Int(0));
        assert_eq!(one("9223372036854775807"), Value::Int(i64::MAX));
        assert_eq!(one("-9223372036854775808"), Value::Int(i64::MIN));
        assert_eq!(one("9223372036854775808"), Value::UInt(1 << 63));
        assert_eq!(one("18446744073709551615"), Value::UInt(u64::MAX));
        assert_eq!(
            one("18446744073709551616"),
            Value::Float(18446744073709551616.0)
        );
        assert_eq!(
            one("-9223372036854775809"),
            Value::Float(-9223372036854775809.0)
        );
        assert_eq!(one("1.5"), Value::Float(1.5));
        assert_eq!(one("1e+15"), Value::Float(1e15));
        assert_eq!(one("1E-7"), Value::Float(1e-7));
        assert_eq!(one("1795637756.24694"), Value::Float(1795637756.24694));
        for bad in ["01", "-", "1.", "1.e5", "1e", "+1", ".5", "-a", "1e+"] {
            let padded = format!("[{bad}]");
            assert!(is_err(padded.as_bytes()), "{bad}");
        }
        // Top-level numbers wait for a delimiter.
        assert!(matches!(dec(b"123"), Err(Fail::Incomplete)));
    }

    #[test]
    fn float_encoding_round_trips_as_float() {
        for f in [
            0.0,
            -0.0,
            3.0,
            1e300,
            1e-7,
            0.1,
            1.0 / 3.0,
            -2.5,
            9007199254740993.0,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            let text = enc(&Value::Float(f));
            match one(&text) {
                Value::Float(g) => assert_eq!(g.to_bits(), f.to_bits(), "{text}"),
                other => panic!("{text} -> {other:?}"),
            }
        }
        assert_eq!(enc(&Value::Float(f64::NAN)), "null");
        assert_eq!(enc(&Value::Float(f64::INFINITY)), "null");
        assert_eq!(enc(&Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(enc(&Value::UInt(u64::MAX)), "18446744073709551615");
    }

    #[test]
    fn strings() {
        assert_eq!(
            one(r#""a\"b\\c\/d\b\f\n\r\t""#),
            Value::from("a\"b\\c/d\u{8}\u{c}\n\r\t")
        );
        assert_eq!(one(r#""\u00e9\u4e16\ud83d\ude80x""#), Value::from("é世🚀x"));
        assert_eq!(one("\"Grüße 🚀\""), Value::from("Grüße 🚀"));
        for bad in [
            &br#"["\ud83d"]"#[..],
            br#"["\ud83dx"]"#,
            br#"["\ud83d\u0041"]"#,
            br#"["\ude80"]"#,
            br#"["\x"]"#,
            br#"["\u12g4"]"#,
            b"[\"\x01\"]",
            b"[\"a\xff\"]",
            b"[\"\xc3\x28\"]",
        ] {
            assert!(is_err(bad), "{}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(
            dec(b"[\"\xff\"]"),
            Err(Fail::Error(DecodeError::InvalidUtf8 { offset: 2 }))
        ));
        // Escaping: only what JSON requires; non-ASCII raw.
        let s = "q\"b\\\n\u{1}\u{7f}é世";
        assert_eq!(enc(&Value::from(s)), "\"q\\\"b\\\\\\n\\u0001\u{7f}é世\"");
        assert_eq!(one(&enc(&Value::from(s))), Value::from(s));
        // Bytes as Latin-1 code points, like Perl.
        assert_eq!(
            enc(&Value::Bytes(vec![0xe9, b't', 0, 0xff])),
            "\"ét\\u0000ÿ\""
        );
    }

    #[test]
    fn structure() {
        assert_eq!(
            one(" [ 1 , { \"a\" : [ ] , \"b\" : null } , true , false , \"\" ]"),
            list![
                1,
                Value::Map(vec![
                    ("a".into(), Value::List(vec![])),
                    ("b".into(), Value::Null)
                ]),
                true,
                false,
                ""
            ]
        );
        for bad in [
            &b"[1,]"[..],
            b"[1 2]",
            b"{\"a\" 1}",
            b"{1:2}",
            b"[1}",
            b"]",
            b"[tru]",
            b"[nul1]",
            b"{\"a\":1,}",
        ] {
            assert!(is_err(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn find_special_matches_bytewise_search() {
        let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        for len in 0..160 {
            for pos in 0..=len {
                for (fill, hit) in [(b'a', b'"'), (0xe9, b'\\'), (0x7f, 0x1f), (0x80, 0x00)] {
                    let mut v = vec![fill; len];
                    if pos < len {
                        v[pos] = hit;
                    }
                    let want = v.iter().position(|&b| special(b)).unwrap_or(len);
                    assert_eq!(find_special(&v), want, "{v:02x?}");
                    assert_eq!(find_special_portable(&v), want, "portable {v:02x?}");
                }
            }
        }
    }

    #[test]
    fn plain_run_matches_bytewise_search() {
        let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        for len in 0..HEAD + 20 {
            for pos in 0..=len {
                for (fill, hit) in [(b'a', b'"'), (0xe9, b'\\'), (0x7f, 0x1f), (0x80, 0x00)] {
                    // A second hit further on must not hide the first.
                    let mut v = vec![fill; len];
                    for p in [pos, pos + 1, pos + 9] {
                        if p < len {
                            v[p] = hit;
                        }
                    }
                    let want = v.iter().position(|&b| special(b)).unwrap_or(len);
                    assert_eq!(plain_run(&v), want, "{v:02x?}");
                }
            }
        }
    }

    #[test]
    fn find_special_blocks_match_bytewise_search() {
        // Past HEAD bytes the block loop runs: hits at and around block edges, in the
        // first, a middle and the last block, and in the remainder.
        let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        for len in (HEAD + BLOCK - 2..HEAD + 3 * BLOCK + 20).step_by(3) {
            let mut spots: Vec<usize> = (0..len).step_by(17).collect();
            for edge in [HEAD, HEAD + BLOCK, HEAD + 2 * BLOCK, len] {
                spots.extend([edge.saturating_sub(1), edge, edge + 1]);
            }
            spots.retain(|&p| p <= len);
            for &pos in &spots {
                for hit in [
                    b'"', b'\\', 0x00, 0x1f, 0x02, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0xa2,
                ] {
                    let mut v = vec![b'a'; len];
                    if pos < len {
                        v[pos] = hit;
                    }
                    let want = v.iter().position(|&b| special(b)).unwrap_or(len);
                    assert_eq!(find_special(&v), want, "len {len} pos {pos} byte {hit:#x}");
                    assert_eq!(
                        find_special_portable(&v),
                        want,
                        "portable: len {len} pos {pos} byte {hit:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let text =
            "[\"p\\u00e9\\ud83d\\ude80\",-12.5e+3,{\"k\":[true,false,null]},\"\\\"\",0,\"é\"]"
                .as_bytes();
        assert!(dec(text).is_ok());
        for cut in 0..text.len() {
            assert!(
                matches!(dec(&text[..cut]), Err(Fail::Incomplete)),
                "cut {cut}"
            );
            let mut s = Scan::default();
            if cut > 0 {
                assert_eq!(
                    s.advance(&text[..cut], 0, &Limits::default()),
                    Ok(None),
                    "cut {cut}"
                );
            }
            assert_eq!(s.advance(text, 0, &Limits::default()), Ok(Some(text.len())));
        }
    }
}
