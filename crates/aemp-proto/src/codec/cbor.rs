//! CBOR (RFC 8949) framing, as Perl `CBOR::XS` writes and reads it.
//!
//! Decoding accepts everything AEMP can meet: both string major types (a string is a
//! [`Value::Str`] when its bytes are UTF-8, else [`Value::Bytes`]), definite and indefinite
//! lengths, float16/32/64, tags (skipped: the inner item is used), `undefined` as null.
//! Map keys must be strings or integers; integers become decimal strings, and non-UTF-8 byte
//! keys map each byte to the code point of the same value (Latin-1), as Perl would see them.
//!
//! Encoding is canonical-ish and tag-free: shortest integer heads, definite lengths,
//! [`Value::Str`] as a text string, [`Value::Bytes`] as a byte string, a float as float32
//! when that is exact and float64 otherwise (NaN as the float64 quiet NaN).

use super::{recent::Recent, DecodeError, Fail, Framing, Limits, PushValue};
use crate::value::{Msg, MsgVec, Str, Value};
use std::borrow::Cow;

/// Capacity hint cap for arrays and maps: a declared element count is only a claim, so the
/// vector starts at most this large and grows with the elements that actually arrive.
const MAX_PREALLOC: usize = 1024;

const BREAK: u8 = 0xff;

fn syntax(offset: u64, reason: &'static str) -> DecodeError {
    DecodeError::Syntax {
        framing: Framing::Cbor,
        offset,
        reason,
    }
}

fn unsupported(offset: u64, what: &'static str) -> DecodeError {
    DecodeError::Unsupported { offset, what }
}

fn too_large(size: u64, limits: &Limits) -> DecodeError {
    DecodeError::TooLarge {
        size,
        max_message: limits.max_message,
    }
}

/// Number of argument bytes after the initial byte, or `None` for the reserved values 28-30.
/// 31 (indefinite length / break) has none.
#[inline]
fn arg_len(ai: u8) -> Option<usize> {
    match ai {
        0..=23 | 31 => Some(0),
        24 => Some(1),
        25 => Some(2),
        26 => Some(4),
        27 => Some(8),
        _ => None,
    }
}

#[inline]
fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Parses one item at the start of `buf`; `base` is the stream offset of `buf[0]`.
pub(super) fn parse(buf: &[u8], base: u64, limits: &Limits) -> Result<(Value, usize), Fail> {
    let mut p = Parser::new(buf, base, limits);
    let v = p.value(0)?;
    Ok((v, p.pos))
}

/// Parses one frame `[port, msg...]` at the start of `buf` straight into its parts and
/// appends them to `out`, without building the outer list: the hot path of every received
/// message. Returns the bytes used, or `None` (nothing appended) when the item is not of the
/// common shape (tagged, indefinite-length, a port name that is not a UTF-8 string, not an
/// array at all): the caller then takes the general path, which gives the same result or the
/// precise error.
///
/// Everything is written in place (`out`, the message's elements): values returned by value
/// through several calls cost store-forwarding stalls that showed up as the top of the
/// receive profile.
pub(super) fn parse_frame(
    buf: &[u8],
    base: u64,
    limits: &Limits,
    recent: &mut Recent,
    out: &mut Vec<(Str, Msg)>,
) -> Result<Option<usize>, Fail> {
    let mut p = Parser::new(buf, base, limits);
    let h = p.head()?;
    if h.major != 4 || h.ai == 31 {
        return Ok(None);
    }
    let depth = p.enter(0, 0)?;
    p.check_count(h.arg)?;
    // Invariant: h.arg <= buffered bytes (checked above), so the cast is lossless.
    let n = h.arg as usize;
    if n == 0 {
        out.push((Str::default(), Msg::new()));
        return Ok(Some(p.pos));
    }
    let ph = p.head()?;
    if !matches!(ph.major, 2 | 3) || ph.ai == 31 {
        return Ok(None);
    }
    // The frame goes into `out` before its elements are parsed, as JSON's does, a kept
    // port name built right there (see `Kept::get`).
    let pb = p.take(ph.arg)?;
    if recent.port.matches(pb) {
        aemp_text::PushWith::push_with(out, || (recent.port.get(), Msg::new()));
    } else {
        let Some(port) = recent.port.replace(pb) else {
            return Ok(None);
        };
        aemp_text::PushWith::push_with(out, || (port, Msg::new()));
    }
    let i = out.len() - 1;
    let items = &mut out[i].1 .0;
    crate::value::reserve_new(items, (n - 1).min(MAX_PREALLOC));
    let parsed = p.elements(n, depth, items, recent);
    if let Err(e) = parsed {
        out.pop();
        return Err(e);
    }
    Ok(Some(p.pos))
}

/// Looks at the buffered start of an incomplete frame for the shape that is received
/// straight into its own string buffer (see `Decoder`'s tail): a definite array
/// `[port, ..., s]` whose elements before `s` are all complete and whose last element `s`
/// is a definite string of at least `min_len` bytes whose body has not fully arrived.
/// Returns the offset where the body of `s` starts and its length. Elements before `s` are
/// only skipped over here (no values built), so calling this on every read is cheap.
pub(super) fn detachable_tail(
    buf: &[u8],
    limits: &Limits,
    min_len: usize,
) -> Option<(usize, usize)> {
    let mut p = Parser::new(buf, 0, limits);
    let h = p.head().ok()?;
    if h.major != 4 || h.ai == 31 || h.arg < 2 {
        return None;
    }
    // The port name: a definite string (anything else takes the regular path).
    let ph = p.head().ok()?;
    if !matches!(ph.major, 2 | 3) || ph.ai == 31 {
        return None;
    }
    p.take(ph.arg).ok()?;
    for _ in 2..h.arg {
        // The scan finds an element's length without building it; Incomplete and
        // errors both mean "not now" (the regular path reports errors).
        let mut scan = Scan::default();
        let len = scan.advance(&buf[p.pos..], 0, limits).ok()??;
        p.pos += len;
    }
    let at = p.pos;
    let last = p.head().ok()?;
    let body = p.pos;
    let len = usize::try_from(last.arg).ok()?;
    let whole = body.checked_add(len)?;
    if !matches!(last.major, 2 | 3)
        || last.ai == 31
        || len < min_len
        || whole <= buf.len()
        || whole > limits.max_message
        || at == 0
    {
        return None;
    }
    Some((body, len))
}

/// Builds the frame whose start is `prefix` (everything up to the body of its last string,
/// as found by [`detachable_tail`]) and whose last element's bytes are `body`, and appends
/// it to `out`. The body becomes the string without a copy.
pub(super) fn frame_with_tail(
    prefix: &[u8],
    base: u64,
    limits: &Limits,
    body: aemp_text::TextBuf,
    out: &mut Vec<(Str, Msg)>,
) -> Result<(), Fail> {
    let mut p = Parser::new(prefix, base, limits);
    let h = p.head()?;
    let depth = p.enter(0, 0)?;
    // Invariant (from detachable_tail): a definite array of at least 2 elements, all but
    // the last complete in `prefix`, so `n` is bounded by the bytes received.
    let n = h.arg as usize;
    // Invariant (from detachable_tail): the port name is a definite string.
    let ph = p.head()?;
    let port = match aemp_text::str_from_utf8(p.take(ph.arg)?) {
        Ok(s) => Str::from(s),
        // Not UTF-8: a byte string, which is no port name.
        Err(_) => {
            return Err(Fail::Error(DecodeError::BadFrame {
                offset: base,
                error: super::FrameError::BadPortName("bytes"),
            }))
        }
    };
    let mut items = Vec::with_capacity(n - 1);
    for _ in 2..n {
        items.push(p.value(depth)?);
    }
    // What is left of the prefix is the last string's head.
    items.push(match body.into_string() {
        Ok(s) => Value::Str(Str::from_string_buffer(s)),
        Err(e) => Value::Bytes(e.into_bytes()),
    });
    out.push((port, Msg(MsgVec::from_vec(items))));
    Ok(())
}

/// The initial byte of an item and its argument (raw float bits for major 7).
struct Head {
    major: u8,
    ai: u8,
    arg: u64,
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    limits: &'a Limits,
    max_depth: usize,
}

impl<'a> Parser<'a> {
    fn new(buf: &'a [u8], base: u64, limits: &'a Limits) -> Parser<'a> {
        Parser {
            buf,
            pos: 0,
            base,
            limits,
            max_depth: limits.depth(),
        }
    }

    fn at(&self, pos: usize) -> u64 {
        self.base + pos as u64
    }

    /// An item's head. Inlined: it runs for every item, half of them with the argument in
    /// the initial byte, and a call cost about as much as the work.
    #[inline(always)]
    fn head(&mut self) -> Result<Head, Fail> {
        let start = self.pos;
        let ib = *self.buf.get(start).ok_or(Fail::Incomplete)?;
        let (major, ai) = (ib >> 5, ib & 0x1f);
        if ai < 24 {
            self.pos = start + 1;
            return Ok(Head {
                major,
                ai,
                arg: u64::from(ai),
            });
        }
        let n = arg_len(ai)
            .ok_or_else(|| unsupported(self.at(start), "reserved additional information"))?;
        let arg = if n == 0 {
            u64::from(ai)
        } else {
            be(self
                .buf
                .get(start + 1..start + 1 + n)
                .ok_or(Fail::Incomplete)?)
        };
        self.pos = start + 1 + n;
        Ok(Head { major, ai, arg })
    }

    /// Takes `len` bytes, never trusting `len` beyond what is buffered or allowed.
    #[inline(always)]
    fn take(&mut self, len: u64) -> Result<&'a [u8], Fail> {
        let avail = (self.buf.len() - self.pos) as u64;
        if len > avail {
            let size = (self.pos as u64).saturating_add(len);
            if size > self.limits.max_message as u64 {
                return Err(too_large(size, self.limits).into());
            }
            return Err(Fail::Incomplete);
        }
        let s = &self.buf[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(s)
    }

    /// Checks a declared element count: each element needs at least one byte, so a count
    /// above the buffered bytes means "incomplete", or "too large" past the limit.
    fn check_count(&self, n: u64) -> Result<(), Fail> {
        let avail = (self.buf.len() - self.pos) as u64;
        if n > avail {
            let size = (self.pos as u64).saturating_add(n);
            if size > self.limits.max_message as u64 {
                return Err(too_large(size, self.limits).into());
            }
            return Err(Fail::Incomplete);
        }
        Ok(())
    }

    fn peek_break(&mut self) -> Result<bool, Fail> {
        match self.buf.get(self.pos) {
            None => Err(Fail::Incomplete),
            Some(&BREAK) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    /// The bytes of a string whose head has been read (definite or chunked).
    fn string_bytes(&mut self, h: &Head) -> Result<Cow<'a, [u8]>, Fail> {
        if h.ai != 31 {
            return self.take(h.arg).map(Cow::Borrowed);
        }
        self.chunked_string(h.major)
    }

    /// The chunks of an indefinite-length string of `major`, concatenated (rare: Perl never
    /// sends them; only the chunk bytes actually present are allocated).
    #[cold]
    fn chunked_string(&mut self, major: u8) -> Result<Cow<'a, [u8]>, Fail> {
        let mut out = Vec::new();
        loop {
            if self.peek_break()? {
                return Ok(Cow::Owned(out));
            }
            let at = self.pos;
            let c = self.head()?;
            if c.major != major || c.ai == 31 {
                return Err(syntax(self.at(at), "bad chunk in indefinite-length string").into());
            }
            out.extend_from_slice(self.take(c.arg)?);
        }
    }

    fn enter(&self, depth: usize, at: usize) -> Result<usize, Fail> {
        if depth >= self.max_depth {
            return Err(DecodeError::TooDeep {
                offset: self.at(at),
                max_depth: self.max_depth,
            }
            .into());
        }
        Ok(depth + 1)
    }

    /// The `n - 1` elements of a frame of `n` after its port name, the first as the tag.
    #[inline(always)]
    fn elements(
        &mut self,
        n: usize,
        depth: usize,
        out: &mut impl PushValue,
        recent: &mut Recent,
    ) -> Result<(), Fail> {
        if n > 1 {
            self.tag_element(depth, out, recent)?;
        }
        for _ in 2..n {
            self.element(depth, out)?;
        }
        Ok(())
    }

    /// [`Parser::element`] for a message's first element, the tag: a string is taken from
    /// `recent` when it repeats the last frame's.
    #[inline(always)]
    fn tag_element(
        &mut self,
        depth: usize,
        out: &mut impl PushValue,
        recent: &mut Recent,
    ) -> Result<(), Fail> {
        let ib = *self.buf.get(self.pos).ok_or(Fail::Incomplete)?;
        if matches!(ib >> 5, 2 | 3) && ib & 0x1f < 28 {
            let h = self.head()?;
            let b = self.take(h.arg)?;
            if recent.tag.matches(b) {
                out.push_str_with(|| recent.tag.get());
                return Ok(());
            }
            match recent.tag.replace(b) {
                Some(s) => out.push_value(Value::Str(s)),
                None => out.push_value(Value::Bytes(b.to_vec())),
            }
            return Ok(());
        }
        self.element(depth, out)
    }

    /// Appends the next item to `out`: scalars and definite strings are built right where
    /// they are stored (a `Result<Value, _>` returned and then copied costs a
    /// store-forwarding stall per element, the top of the receive profile), the rest goes
    /// through [`Parser::value`].
    #[inline(always)]
    fn element(&mut self, depth: usize, out: &mut impl PushValue) -> Result<(), Fail> {
        let ib = *self.buf.get(self.pos).ok_or(Fail::Incomplete)?;
        if ib & 0x1f < 28 {
            match ib >> 5 {
                0 => {
                    let arg = self.head()?.arg;
                    // One variant per push: a variant picked by value (`Value::from`) was
                    // built on the stack and copied, a stall like the strings' below.
                    if let Ok(i) = i64::try_from(arg) {
                        out.push_with(|| Value::Int(i));
                    } else {
                        out.push_with(|| Value::UInt(arg));
                    }
                    return Ok(());
                }
                1 => {
                    let arg = self.head()?.arg;
                    out.push_value(negative(arg));
                    return Ok(());
                }
                2 | 3 => {
                    let h = self.head()?;
                    let b = self.take(h.arg)?;
                    match aemp_text::str_from_utf8(b) {
                        Ok(s) => out.push_str_with(|| Str::from(s)),
                        Err(_) => out.push_value(Value::Bytes(b.to_vec())),
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        let v = self.value(depth)?;
        out.push_value(v);
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, Fail> {
        loop {
            let at = self.pos;
            let h = self.head()?;
            if h.ai == 31 && matches!(h.major, 0 | 1 | 6) {
                return Err(syntax(self.at(at), "indefinite length on a non-container").into());
            }
            return match h.major {
                0 => Ok(Value::from(h.arg)),
                1 => Ok(negative(h.arg)),
                2 | 3 => Ok(match self.string_bytes(&h)? {
                    Cow::Borrowed(b) => Value::from_wire_bytes(b),
                    Cow::Owned(b) => match aemp_text::string_from_utf8(b) {
                        Ok(s) => Value::Str(Str::from(s)),
                        Err(e) => Value::Bytes(e.into_bytes()),
                    },
                }),
                4 => self.array(&h, depth, at),
                5 => self.map(&h, depth, at),
                // A tag: the tagged item stands for itself.
                6 => continue,
                _ => self.simple(&h, at),
            };
        }
    }

    // Containers stay out of line so `value`, which recurses per element, keeps a small
    // stack frame and cheap prologue.
    #[inline(never)]
    fn array(&mut self, h: &Head, depth: usize, at: usize) -> Result<Value, Fail> {
        let depth = self.enter(depth, at)?;
        if h.ai == 31 {
            let mut items = Vec::new();
            while !self.peek_break()? {
                items.push(self.value(depth)?);
            }
            return Ok(Value::List(items));
        }
        self.check_count(h.arg)?;
        // Invariant: h.arg <= buffered bytes (checked above), so the cast is lossless.
        let n = h.arg as usize;
        let mut items = Vec::with_capacity(n.min(MAX_PREALLOC));
        for _ in 0..n {
            items.push(self.value(depth)?);
        }
        Ok(Value::List(items))
    }

    #[inline(never)]
    fn map(&mut self, h: &Head, depth: usize, at: usize) -> Result<Value, Fail> {
        let depth = self.enter(depth, at)?;
        if h.ai == 31 {
            let mut entries = Vec::new();
            while !self.peek_break()? {
                let k = self.key()?;
                entries.push((k, self.value(depth)?));
            }
            return Ok(Value::Map(entries));
        }
        self.check_count(h.arg.saturating_mul(2))?;
        let n = h.arg as usize;
        let mut entries = Vec::with_capacity(n.min(MAX_PREALLOC));
        for _ in 0..n {
            let k = self.key()?;
            entries.push((k, self.value(depth)?));
        }
        Ok(Value::Map(entries))
    }

    fn key(&mut self) -> Result<Str, Fail> {
        loop {
            let at = self.pos;
            let h = self.head()?;
            if h.ai == 31 && matches!(h.major, 0 | 1 | 6) {
                return Err(syntax(self.at(at), "indefinite length on a non-container").into());
            }
            return match h.major {
                0 => Ok(Str::from(itoa::Buffer::new().format(h.arg))),
                1 => Ok(Str::from(
                    itoa::Buffer::new().format(-1 - i128::from(h.arg)),
                )),
                2 | 3 => {
                    let b = self.string_bytes(&h)?;
                    Ok(match aemp_text::str_from_utf8(&b) {
                        Ok(s) => Str::from(s),
                        // Perl sees a byte string as one character per byte.
                        Err(_) => b.iter().map(|&c| char::from(c)).collect(),
                    })
                }
                6 => continue,
                _ => {
                    Err(unsupported(self.at(at), "map key that is not a string or integer").into())
                }
            };
        }
    }

    fn simple(&mut self, h: &Head, at: usize) -> Result<Value, Fail> {
        Ok(match h.ai {
            20 => Value::Bool(false),
            21 => Value::Bool(true),
            // `undefined` is what Perl would turn into an error object; null is the
            // closest harmless meaning.
            22 | 23 => Value::Null,
            25 => Value::Float(f16_to_f64(h.arg as u16)),
            26 => Value::Float(f64::from(f32::from_bits(h.arg as u32))),
            27 => Value::Float(f64::from_bits(h.arg)),
            31 => return Err(syntax(self.at(at), "unexpected break").into()),
            _ => return Err(unsupported(self.at(at), "simple value").into()),
        })
    }
}

/// CBOR major type 1 holds `-1 - arg`.
#[inline]
fn negative(arg: u64) -> Value {
    if arg <= i64::MAX as u64 {
        Value::Int(-1 - arg as i64)
    } else {
        // Below i64::MIN: Value has no wider integer, the nearest float is the best answer.
        Value::Float(-1.0 - arg as f64)
    }
}

fn f16_to_f64(bits: u16) -> f64 {
    let exp = i32::from((bits >> 10) & 0x1f);
    let mant = f64::from(bits & 0x3ff);
    let mag = match exp {
        0 => mant * (-24f64).exp2(),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + mant / 1024.0) * f64::from(e - 15).exp2(),
    };
    if bits & 0x8000 != 0 {
        -mag
    } else {
        mag
    }
}

/// An open container or chunked string during a [`Scan`].
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// Definite-length array or map: items still expected (a map counts keys and values).
    Items(u64),
    /// Indefinite-length array or map, closed by a break.
    Indef,
    /// Indefinite-length string of this major type, closed by a break.
    IndefStr(u8),
}

/// Resumable completeness scan of one CBOR item that did not fit the buffered bytes.
///
/// It walks item heads without building values, and remembers the offset of the first head
/// it could not finish, so each byte is looked at once however the item is split. String
/// bodies are skipped by length, never read.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Offset (from the item start) of the next head to read.
    off: usize,
    /// Open containers; at most `max_depth` [`Frame::Items`]/[`Frame::Indef`] plus one
    /// [`Frame::IndefStr`] (chunks cannot nest), so bounded by the depth limit.
    stack: Vec<Frame>,
    /// Number of container frames on `stack`.
    depth: usize,
}

impl Scan {
    /// Scans on through `buf` (the buffered bytes of this item, from its start). Returns the
    /// item's length once it is complete.
    pub(super) fn advance(
        &mut self,
        buf: &[u8],
        base: u64,
        limits: &Limits,
    ) -> Result<Option<usize>, DecodeError> {
        let max = limits.max_message as u64;
        let max_depth = limits.depth();
        loop {
            let at = self.off;
            let Some(&ib) = buf.get(at) else {
                return self.need_more(buf, limits);
            };
            let (major, ai) = (ib >> 5, ib & 0x1f);
            let n = arg_len(ai)
                .ok_or_else(|| unsupported(base + at as u64, "reserved additional information"))?;
            let Some(arg_bytes) = buf.get(at + 1..at + 1 + n) else {
                return self.need_more(buf, limits);
            };
            let arg = if n == 0 { u64::from(ai) } else { be(arg_bytes) };
            let next = at + 1 + n;
            if let Some(Frame::IndefStr(m)) = self.stack.last() {
                if ib != BREAK && (major != *m || ai == 31) {
                    return Err(syntax(
                        base + at as u64,
                        "bad chunk in indefinite-length string",
                    ));
                }
            }
            let complete = match (major, ai) {
                (7, 31) => {
                    match self.stack.pop() {
                        Some(Frame::Indef) => self.depth -= 1,
                        Some(Frame::IndefStr(_)) => {}
                        _ => return Err(syntax(base + at as u64, "unexpected break")),
                    }
                    self.off = next;
                    self.finish_item()
                }
                (0 | 1 | 6, 31) => {
                    return Err(syntax(
                        base + at as u64,
                        "indefinite length on a non-container",
                    ))
                }
                // A tag is followed by its item, which is what completes.
                (6, _) => {
                    self.off = next;
                    false
                }
                (2 | 3, 31) => {
                    self.stack.push(Frame::IndefStr(major));
                    self.off = next;
                    false
                }
                (2 | 3, _) => {
                    let end = (next as u64).saturating_add(arg);
                    if end > max {
                        return Err(too_large(end, limits));
                    }
                    // Invariant: end <= max_message, a usize, so the cast is lossless.
                    if end > buf.len() as u64 {
                        return self.need_more(buf, limits);
                    }
                    self.off = end as usize;
                    self.finish_item()
                }
                (4 | 5, _) => {
                    if self.depth >= max_depth {
                        return Err(DecodeError::TooDeep {
                            offset: base + at as u64,
                            max_depth,
                        });
                    }
                    self.off = next;
                    if ai == 31 {
                        self.stack.push(Frame::Indef);
                        self.depth += 1;
                        false
                    } else {
                        let items = if major == 5 {
                            arg.saturating_mul(2)
                        } else {
                            arg
                        };
                        // Every item takes at least one byte.
                        if items > max {
                            return Err(too_large(items, limits));
                        }
                        if items == 0 {
                            self.finish_item()
                        } else {
                            self.stack.push(Frame::Items(items));
                            self.depth += 1;
                            false
                        }
                    }
                }
                // Integers and simple values/floats (unsupported simple values are
                // reported by the parser).
                _ => {
                    self.off = next;
                    self.finish_item()
                }
            };
            if complete {
                return Ok(Some(self.off));
            }
        }
    }

    fn need_more(&self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, DecodeError> {
        if buf.len() > limits.max_message {
            return Err(too_large(buf.len() as u64, limits));
        }
        Ok(None)
    }

    /// Records that one item ended; true when that completed the top-level item.
    fn finish_item(&mut self) -> bool {
        loop {
            match self.stack.last_mut() {
                None => return true,
                Some(Frame::Items(n)) => {
                    *n -= 1;
                    if *n > 0 {
                        return false;
                    }
                    // The container itself is now a finished item of its parent.
                    self.stack.pop();
                    self.depth -= 1;
                }
                Some(Frame::Indef | Frame::IndefStr(_)) => return false,
            }
        }
    }
}

/// Always inlined: a frame has a head per element, and as a call (with `major` unknown to
/// it) each head cost about 30 instructions; callgrind counted five calls and a tenth of
/// the sender's instructions per R1 frame `["port","msg",i,"<48 bytes>"]`.
#[inline(always)]
fn head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

#[inline(always)]
fn text(s: &str, out: &mut Vec<u8>) {
    head(3, s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn encode_frame(port: &str, msg: &[Value], out: &mut Vec<u8>) {
    head(4, msg.len() as u64 + 1, out);
    text(port, out);
    for v in msg {
        encode_value(v, out);
    }
}

/// [`encode_frame`] into an outbox, with top-level strings of at least
/// [`ZERO_COPY_MIN`](super::ZERO_COPY_MIN) bytes moved out of `msg` (see
/// [`encode_frame_owned`](super::encode_frame_owned)).
pub(super) fn encode_frame_owned(port: &str, msg: &mut [Value], out: &mut super::Outbox) {
    head(4, msg.len() as u64 + 1, &mut out.bytes);
    text(port, &mut out.bytes);
    for v in msg {
        match v {
            Value::Str(s) if s.len() >= super::ZERO_COPY_MIN => {
                head(3, s.len() as u64, &mut out.bytes);
                out.push_big(std::mem::take(s));
            }
            v => encode_value(v, &mut out.bytes),
        }
    }
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
            super::nested::encode_nested::<CborNesting>(v, out)
        }
        Value::List(items) => {
            head(4, items.len() as u64, out);
            for v in items {
                encode_bounded(v, out, budget - 1);
            }
        }
        Value::Map(entries) => {
            head(5, entries.len() as u64, out);
            for (k, v) in entries {
                text(k, out);
                encode_bounded(v, out, budget - 1);
            }
        }
        scalar => encode_scalar(scalar, out),
    }
}

/// Writes a value that is not a container.
#[inline(always)]
fn encode_scalar(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0xf6),
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Int(i) if *i >= 0 => head(0, *i as u64, out),
        // -1 - i, computed without overflow: !i == -1 - i for two's complement.
        Value::Int(i) => head(1, !*i as u64, out),
        Value::UInt(u) => head(0, *u, out),
        Value::Float(f) => float(*f, out),
        Value::Str(s) => text(s, out),
        Value::Bytes(b) => {
            head(2, b.len() as u64, out);
            out.extend_from_slice(b);
        }
        // Containers go through `encode_bounded`.
        Value::List(_) | Value::Map(_) => {}
    }
}

/// CBOR around nested values: definite-length heads, no separators, nothing to close.
pub(super) struct CborNesting;

impl super::nested::Nesting for CborNesting {
    fn open_list(len: usize, out: &mut Vec<u8>) {
        head(4, len as u64, out);
    }
    fn open_map(len: usize, out: &mut Vec<u8>) {
        head(5, len as u64, out);
    }
    fn scalar(v: &Value, out: &mut Vec<u8>) {
        encode_scalar(v, out);
    }
    fn separator(_: &mut Vec<u8>) {}
    fn key(k: &str, out: &mut Vec<u8>) {
        text(k, out);
    }
    fn close_list(_: &mut Vec<u8>) {}
    fn close_map(_: &mut Vec<u8>) {}
}

/// Length of the head [`head`] writes for argument `n`.
#[inline]
pub(super) fn head_len(n: u64) -> usize {
    if n < 24 {
        1
    } else if n <= 0xff {
        2
    } else if n <= 0xffff {
        3
    } else if n <= 0xffff_ffff {
        5
    } else {
        9
    }
}

/// Encoded length of a value that is not a container (what [`encode_scalar`] writes); for
/// a list or map, the length of its head.
#[inline]
pub(super) fn scalar_len(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::Int(i) if *i >= 0 => head_len(*i as u64),
        Value::Int(i) => head_len(!*i as u64),
        Value::UInt(u) => head_len(*u),
        Value::Float(f) => float_len(*f),
        Value::Str(s) => head_len(s.len() as u64) + s.len(),
        Value::Bytes(b) => head_len(b.len() as u64) + b.len(),
        Value::List(items) => head_len(items.len() as u64),
        Value::Map(entries) => head_len(entries.len() as u64),
    }
}

/// Length of what [`float`] writes.
#[inline]
fn float_len(f: f64) -> usize {
    if !f.is_nan() && f64::from(f as f32) == f {
        5
    } else {
        9
    }
}

fn float(f: f64, out: &mut Vec<u8>) {
    if f.is_nan() {
        out.extend_from_slice(&[0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]);
    } else if f64::from(f as f32) == f {
        // Exact in float32 (this includes ±0 and ±Infinity).
        out.push(0xfa);
        out.extend_from_slice(&(f as f32).to_bits().to_be_bytes());
    } else {
        out.push(0xfb);
        out.extend_from_slice(&f.to_bits().to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8]) -> Result<(Value, usize), Fail> {
        parse(bytes, 0, &Limits::default())
    }

    fn one(bytes: &[u8]) -> Value {
        match dec(bytes) {
            Ok((v, n)) if n == bytes.len() => v,
            other => panic!("{bytes:02x?}: {other:?}"),
        }
    }

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(v, &mut out);
        out
    }

    #[test]
    fn integers() {
        assert_eq!(one(&[0x00]), Value::Int(0));
        assert_eq!(one(&[0x17]), Value::Int(23));
        assert_eq!(one(&[0x18, 0x18]), Value::Int(24));
        assert_eq!(
            one(&[0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            one(&[0x1b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Value::Int(i64::MAX)
        );
        assert_eq!(one(&[0x20]), Value::Int(-1));
        assert_eq!(
            one(&[0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Value::Int(i64::MIN)
        );
        // -2^64: below i64::MIN, documented to become the nearest float.
        assert_eq!(
            one(&[0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Value::Float(-18446744073709551616.0)
        );
        for (v, want) in [
            (0i64, &[0x00][..]),
            (24, &[0x18, 24]),
            (256, &[0x19, 1, 0]),
            (65536, &[0x1a, 0, 1, 0, 0]),
            (-1, &[0x20]),
            (-25, &[0x38, 24]),
            (
                i64::MIN,
                &[0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
        ] {
            assert_eq!(enc(&Value::Int(v)), want, "{v}");
            assert_eq!(one(want), Value::Int(v));
        }
        assert_eq!(enc(&Value::UInt(u64::MAX))[0], 0x1b);
    }

    #[test]
    fn floats() {
        assert_eq!(one(&[0xf9, 0x3c, 0x00]), Value::Float(1.0));
        assert_eq!(one(&[0xf9, 0xc4, 0x00]), Value::Float(-4.0));
        assert_eq!(one(&[0xf9, 0x7b, 0xff]), Value::Float(65504.0));
        assert_eq!(one(&[0xf9, 0x00, 0x01]), Value::Float(5.960464477539063e-8));
        assert_eq!(one(&[0xf9, 0x7c, 0x00]), Value::Float(f64::INFINITY));
        assert!(matches!(one(&[0xf9, 0x7e, 0x00]), Value::Float(f) if f.is_nan()));
        assert_eq!(one(&[0xfa, 0x3f, 0xc0, 0, 0]), Value::Float(1.5));
        assert_eq!(enc(&Value::Float(1.5)), [0xfa, 0x3f, 0xc0, 0, 0]);
        assert_eq!(enc(&Value::Float(0.1))[0], 0xfb);
        assert_eq!(
            enc(&Value::Float(f64::NAN)),
            [0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            enc(&Value::Float(f64::NEG_INFINITY)),
            [0xfa, 0xff, 0x80, 0, 0]
        );
        assert_eq!(one(&enc(&Value::Float(0.1))), Value::Float(0.1));
    }

    #[test]
    fn strings_and_keys() {
        assert_eq!(one(b"\x43abc"), Value::from("abc"));
        assert_eq!(one(b"\x63abc"), Value::from("abc"));
        assert_eq!(one(b"\x42\xe9t"), Value::Bytes(vec![0xe9, b't']));
        // Chunked strings, including a chunk that splits a UTF-8 sequence.
        assert_eq!(one(b"\x5f\x41\xc3\x41\xa4\xff"), Value::from("ä"));
        assert_eq!(one(b"\x7f\x61a\x60\xff"), Value::from("a"));
        assert!(matches!(
            dec(b"\x5f\x61a\xff"),
            Err(Fail::Error(DecodeError::Syntax { .. }))
        ));
        // Keys: byte/text strings, Latin-1 fallback, integers; tags skipped.
        let m = one(b"\xa4\x41k\x01\x41\xe9\x02\x18\x2a\x03\x38\x2a\x04");
        assert_eq!(
            m,
            Value::Map(vec![
                ("k".into(), Value::Int(1)),
                ("é".into(), Value::Int(2)),
                ("42".into(), Value::Int(3)),
                ("-43".into(), Value::Int(4)),
            ])
        );
        assert!(matches!(
            dec(b"\xa1\xf6\x01"),
            Err(Fail::Error(DecodeError::Unsupported { .. }))
        ));
        assert!(matches!(
            dec(b"\xa1\x80\x01"),
            Err(Fail::Error(DecodeError::Unsupported { .. }))
        ));
        assert_eq!(enc(&Value::from("ab")), b"\x62ab");
        assert_eq!(enc(&Value::Bytes(vec![0xff])), b"\x41\xff");
    }

    #[test]
    fn containers_tags_simple() {
        assert_eq!(
            one(b"\x9f\x01\x9f\xff\xff"),
            crate::list![1, Value::List(vec![])]
        );
        assert_eq!(
            one(b"\xbf\x61a\x01\xff"),
            Value::Map(vec![("a".into(), Value::Int(1))])
        );
        assert_eq!(one(b"\xc1\xd8\x20\x01"), Value::Int(1));
        assert_eq!(one(&[0xf4]), Value::Bool(false));
        assert_eq!(one(&[0xf5]), Value::Bool(true));
        assert_eq!(one(&[0xf6]), Value::Null);
        assert_eq!(one(&[0xf7]), Value::Null);
        for bad in [
            &[0xff][..],
            &[0x1c],
            &[0x1f],
            &[0xdf, 0x01],
            &[0xe0],
            &[0xf8, 0x20],
        ] {
            assert!(matches!(dec(bad), Err(Fail::Error(_))), "{bad:02x?}");
        }
    }

    #[test]
    fn scan_agrees_with_parse_at_every_split() {
        let item: &[u8] = b"\x86\x43abc\x5f\x41x\x41y\xff\xbf\x61k\x9f\x01\xc1\x02\xff\xff\xa1\x01\xf9\x3c\x00\x1b\xff\xff\xff\xff\xff\xff\xff\xff\xf5";
        assert!(dec(item).is_ok());
        for cut in 0..item.len() {
            let mut s = Scan::default();
            assert_eq!(
                s.advance(&item[..cut], 0, &Limits::default()),
                Ok(None),
                "cut {cut}"
            );
            assert_eq!(s.advance(item, 0, &Limits::default()), Ok(Some(item.len())));
            assert!(
                matches!(dec(&item[..cut]), Err(Fail::Incomplete)),
                "cut {cut}"
            );
        }
    }
}
