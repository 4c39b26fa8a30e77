//! The `json` and `cbor` data-phase framings.
//!
//! After the handshake each direction of a connection is a plain concatenation of JSON texts
//! or CBOR items, with no length prefix and no delimiter. Every item is an array
//! `[port_name, msg...]`.
//!
//! * [`Decoder`] is the incremental receive side: [`Decoder::feed`] (or [`Decoder::spare`]
//!   and [`Decoder::commit`] around a socket read) appends bytes as they arrive,
//!   [`Decoder::next_value`] returns one complete top-level item at a time, and
//!   [`Decoder::frames_into`] (the receive hot path) decodes frames straight into their port
//!   name and [`Msg`].
//! * [`decode_frame`] splits a decoded item into the destination port name and the [`Msg`].
//! * [`encode_frame`] writes `[port_name, msg...]` straight from borrowed parts;
//!   [`encode_frame_owned`] (the hot path of remote sends) leaves long strings where they
//!   are, for a vectored write ([`Outbox`]); [`encode_value`] writes any [`Value`]. The
//!   encoders write values of any depth (deeper than a few dozen levels with an explicit
//!   stack instead of recursion).
//! * [`Limits`] are what a receiver accepts; [`Limits::check_frame`] tells a sender, before
//!   it encodes, whether a receiver with those limits accepts a frame ([`LimitError`]), so
//!   that no sender ever writes a frame that makes its peer close the connection.
//!
//! # Cost model of the decoder
//!
//! The decoder first tries to parse the buffered bytes directly (the common case: a whole
//! small frame arrived in one read). Only when that attempt runs out of bytes does it switch
//! to a resumable completeness scan that remembers where it stopped, so an item that arrives
//! in many small reads is scanned once and parsed once: O(total bytes), never quadratic.
//! Lengths read off the wire are never used as allocation sizes beyond a small cap; a
//! declared length beyond [`Limits::max_message`] is an error before anything is allocated.
//!
//! Whole frames one after another (what a read of a busy stream brings) are parsed in a tight
//! loop straight from the buffer; only where that stops (an incomplete frame, an error, a
//! long string received apart) does the general path with its bookkeeping take over. A
//! stream of messages mostly goes to one port with one tag: the decoder keeps the last port
//! name and tag and clones them when the next frame repeats their bytes (no UTF-8 check, no
//! new string; in JSON not even the scan for the string's end), and the JSON encoder keeps
//! their quoted form in the [`Outbox`] for the same reason.
//!
//! A CBOR frame whose last element is a string of at least [`DETACH_MIN`] bytes is the one
//! exception to "everything goes through one buffer": once its head has arrived, the rest
//! of the string is read straight into the string's own buffer ([`Decoder::tail_room`]),
//! which becomes the [`Value::Str`] without a copy. That buffer reserves at most 4 MiB
//! beyond the bytes actually received, so a declared length still buys nothing.
//!
//! # Type mapping decisions
//!
//! * CBOR negative integers below `i64::MIN` (down to `-2^64`) decode to [`Value::Float`]
//!   (the nearest `f64`), because [`Value`] has no wider integer type.
//! * JSON integer literals outside `i64`/`u64` decode to [`Value::Float`].
//! * JSON cannot carry NaN or ±Infinity: the JSON encoder writes `null` for them.
//! * JSON has no byte strings: [`Value::Bytes`] is written as a string of Latin-1 code points
//!   (each byte becomes U+00XX), exactly as Perl writes its byte strings. It therefore
//!   re-decodes as a [`Value::Str`], not as bytes.
//! * Duplicate map keys are kept as received, in order ([`Value::get`] finds the first).

mod cbor;
mod check;
mod json;
mod nested;
mod recent;

pub use check::{frame_size_estimate, LimitError};

pub use aemp_text::TextBuf;

use crate::value::{Msg, Str, Value};

/// Hard upper bound on the nesting depth the decoders accept, whatever [`Limits::max_depth`]
/// says: the parsers recurse once per nesting level, and this keeps their stack use far
/// below the 2 MiB of a default thread (also when dropping a nested [`Value`]).
pub const MAX_DEPTH_CAP: usize = 512;

/// How many levels of nesting the encoders write by plain recursion (the fastest way for
/// the shallow values of real messages); anything nested deeper is written with an explicit
/// stack, so encoding never recurses further than this, whatever the depth of the value.
const RECURSION_BUDGET: usize = 32;

/// A data-phase framing, as named in the handshake's auth line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Concatenated compact JSON texts (Perl `JSON::XS`).
    Json,
    /// Concatenated CBOR items (Perl `CBOR::XS`).
    Cbor,
}

impl Framing {
    /// Every framing this implementation speaks, in its order of preference. The handshake's
    /// name lists ([`crate::handshake::SUPPORTED_FRAMINGS`] and the defaults) derive from it.
    pub const ALL: [Framing; 2] = [Framing::Cbor, Framing::Json];

    /// The first of [`Framing::ALL`]: what two aemp nodes with default settings negotiate,
    /// and so the framing a sender checks a message for ([`Limits::check_frame`]) before it
    /// knows which connection will carry it.
    pub const PREFERRED: Framing = Framing::ALL[0];

    /// The name used in greetings and auth lines.
    pub const fn name(self) -> &'static str {
        match self {
            Framing::Json => "json",
            Framing::Cbor => "cbor",
        }
    }

    /// Parses a framing name; `None` for names this implementation does not speak
    /// (including Perl's [`STORABLE`]).
    pub fn from_name(name: &str) -> Option<Framing> {
        Framing::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// The name of the reference's third framing, Perl's native `Storable` serialisation. This
/// implementation can neither encode nor decode it and never offers or accepts it; the name
/// only matters to configurations shared with Perl nodes, which may list it.
pub const STORABLE: &str = "storable";

impl std::fmt::Display for Framing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Resource limits applied to peer input, and (see [`Limits::check_frame`]) to what is sent
/// to peers that apply them: one definition for both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting depth of arrays and maps; the frame array itself is level 1.
    /// Values above [`MAX_DEPTH_CAP`] act as [`MAX_DEPTH_CAP`].
    pub max_depth: usize,
    /// Maximum size in bytes of one top-level item.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 64,
            max_message: 256 << 20,
        }
    }
}

impl Limits {
    /// The depth limit actually enforced.
    fn depth(&self) -> usize {
        self.max_depth.min(MAX_DEPTH_CAP)
    }
}

/// Why the byte stream could not be decoded. The connection cannot be resynchronised after
/// any of these (there is no delimiter to skip to), so the decoder stays poisoned.
///
/// Offsets count bytes from the first byte ever fed to the [`Decoder`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Malformed JSON or malformed CBOR structure.
    #[error("invalid {framing} syntax at byte {offset}: {reason}")]
    Syntax {
        /// Framing being decoded.
        framing: Framing,
        /// Stream offset of the offending byte.
        offset: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// A JSON string is not valid UTF-8.
    #[error("invalid UTF-8 in JSON string at byte {offset}")]
    InvalidUtf8 {
        /// Stream offset of the first invalid byte.
        offset: u64,
    },
    /// Arrays and maps nested deeper than the limit.
    #[error("nesting deeper than {max_depth} levels at byte {offset}")]
    TooDeep {
        /// Stream offset of the container that exceeded the limit.
        offset: u64,
        /// The enforced limit.
        max_depth: usize,
    },
    /// One item is (or declares itself) larger than [`Limits::max_message`].
    #[error("message of at least {size} bytes exceeds the limit of {max_message} bytes")]
    TooLarge {
        /// Size reached or declared so far.
        size: u64,
        /// The limit.
        max_message: usize,
    },
    /// A well-formed item that is not an AEMP frame (not an array, or a port name that is
    /// not a string).
    #[error("not an AEMP frame at byte {offset}: {error}")]
    BadFrame {
        /// Stream offset of the item.
        offset: u64,
        /// What was wrong with it.
        error: FrameError,
    },
    /// A well-formed CBOR item that AEMP has no use for (simple values, reserved
    /// additional-information values, map keys that are neither strings nor integers).
    #[error("unsupported CBOR item at byte {offset}: {what}")]
    Unsupported {
        /// Stream offset of the item.
        offset: u64,
        /// What it was.
        what: &'static str,
    },
}

/// Internal parse outcome: either the buffered bytes end inside the item, or a real error.
#[derive(Debug)]
enum Fail {
    Incomplete,
    Error(DecodeError),
}

impl From<DecodeError> for Fail {
    fn from(e: DecodeError) -> Fail {
        Fail::Error(e)
    }
}

/// Resumable completeness scan of one item, for items that arrive in pieces.
#[derive(Debug)]
enum Scan {
    Json(json::Scan),
    Cbor(cbor::Scan),
}

/// Incremental decoder of one direction of a connection's data phase.
///
/// ```
/// use aemp_proto::codec::{Decoder, Framing, Limits};
/// use aemp_proto::Value;
/// let mut d = Decoder::new(Framing::Json, Limits::default());
/// d.feed(br#"["port","ta"#);
/// assert_eq!(d.next_value(), Ok(None));
/// d.feed(br#"g",1]["x"]"#);
/// assert!(matches!(d.next_value(), Ok(Some(Value::List(_)))));
/// assert!(matches!(d.next_value(), Ok(Some(Value::List(_)))));
/// assert_eq!(d.next_value(), Ok(None));
/// ```
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    limits: Limits,
    /// Fed bytes; `buf[pos..end]` is not yet decoded, `buf[end..]` is spare room that
    /// [`Decoder::spare`] lends out to be read into (so a socket read lands here directly).
    buf: Vec<u8>,
    /// End of the fed bytes in `buf`.
    end: usize,
    /// Start of the next item in `buf`.
    pos: usize,
    /// Stream offset of `buf[0]`, for error messages.
    base: u64,
    /// Set while the item starting at `pos` is known to be incomplete. Its offsets are
    /// relative to `pos`, so compacting `buf` does not invalidate it.
    scan: Option<Scan>,
    /// The first error; returned forever after.
    poisoned: Option<DecodeError>,
    /// A frame whose last element is a long string, being received straight into that
    /// string's own buffer (see [`Decoder::tail_room`]).
    tail: Option<Tail>,
    /// Stream offset of a JSON item not to detach again (its long string turned out to
    /// hold escapes, or not to end the frame).
    no_detach: Option<u64>,
    /// Length of the last JSON string received apart: what the next one reserves.
    json_len_hint: usize,
    /// The last item was a frame received apart, and nothing was decoded since: see
    /// [`Decoder::read_limit`].
    after_tail: bool,
    /// The port name and tag of the frames decoded last (see [`recent`]).
    recent: recent::Recent,
}

/// Strings at least this long that end a CBOR frame are received into their own buffer
/// instead of the decoder's (and become the string without a copy). In JSON, where a
/// string's length is not known before its end, a frame's last string is received apart
/// once this much of it has arrived without an escape.
pub const DETACH_MIN: usize = 64 * 1024;

/// The most bytes read into a detached JSON string at once: bytes read past its closing
/// quote belong to the buffer and are copied there.
const JSON_TAIL_READ: usize = 256 * 1024;

/// How much room beyond the bytes received a detached body reserves at once (it grows
/// by doubling after that, as data arrives).
const TAIL_RESERVE: usize = 4 << 20;

/// The most [`Decoder::spare`] lends of a detached body beyond what it was asked for.
const TAIL_STEP: usize = 64 * 1024;

/// Room a detached JSON string reserves beyond the length of the last one (its closing
/// quote, and what the read that brings it takes after it; those bytes are copied out).
const JSON_HINT_SLACK: usize = 4096;

/// See [`Decoder::read_limit`]: enough for a CBOR frame's head up to its long string.
const CBOR_HEAD_READ: usize = 4096;

/// The last string of a frame, received apart from the rest.
///
/// Invariants: `buf[pos..pos + prefix]` is the frame up to the body of its last string, and
/// nothing between it and the body is buffered; while `body.len() < total`, nothing is
/// appended to `buf` (the stream's next bytes belong to the body); once the body is
/// complete, bytes after it are appended to `buf` behind the prefix. `base` does not count
/// the body until the frame is consumed.
///
/// In JSON the body is the string's bytes after the opening quote, and its end is found
/// by scanning as it arrives: while `open`, `total` is only the most it may grow to (the
/// size limit); at the closing quote, the body ends with that quote, `total` becomes its
/// length and whatever was read after it moves to `buf`. A backslash or control byte in
/// the body ends the detachment: the body is put back (`reattach_tail`) for the parser.
#[derive(Debug)]
struct Tail {
    prefix: usize,
    body: TextBuf,
    total: usize,
    /// JSON, end not found yet.
    open: bool,
    /// JSON: bytes of `body` known to be plain string contents.
    scanned: usize,
    /// Set while [`Decoder::spare`] has lent the body's room (zero-filled from here on):
    /// [`Decoder::commit`] keeps what was written and trims the rest.
    spare_from: Option<usize>,
}

impl Tail {
    fn missing(&self) -> usize {
        let m = self.total - self.body.len();
        if self.open {
            // Into the reserved room while there is some (growing the buffer copies it).
            let room = self.body.capacity() - self.body.len();
            let m = m.min(JSON_TAIL_READ);
            if room > 0 {
                m.min(room)
            } else {
                m
            }
        } else {
            m
        }
    }
}

impl Decoder {
    /// A decoder for `framing` enforcing `limits`.
    pub fn new(framing: Framing, limits: Limits) -> Decoder {
        Decoder {
            framing,
            limits,
            buf: Vec::new(),
            end: 0,
            pos: 0,
            base: 0,
            scan: None,
            poisoned: None,
            tail: None,
            no_detach: None,
            json_len_hint: 0,
            after_tail: false,
            recent: recent::Recent::default(),
        }
    }

    /// The framing this decoder reads.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Appends received bytes. Bytes fed after an error are discarded.
    pub fn feed(&mut self, mut data: &[u8]) {
        if self.poisoned.is_some() {
            return;
        }
        while !data.is_empty() {
            let n = self.fill(data, data.len());
            data = &data[n..];
        }
    }

    /// Takes up to `max` bytes from the front of `src` the way a connection reads: into the
    /// detached string's buffer while one is pending ([`Decoder::tail_room`]), else into
    /// [`Decoder::spare`] room. Returns how many it took. For tests and replays that feed
    /// recorded bytes through the same path as a socket.
    pub fn fill(&mut self, src: &[u8], max: usize) -> usize {
        if let Some((body, missing)) = self.tail_room() {
            let n = missing.min(max).min(src.len());
            body.extend_from_slice(&src[..n]);
            return n;
        }
        let max = self.read_limit().map_or(max, |l| l.min(max));
        let room = self.spare(max.max(1));
        let n = room.len().min(max).min(src.len());
        room[..n].copy_from_slice(&src[..n]);
        self.commit(n);
        n
    }

    /// While the last string of a frame is being received apart (see [`DETACH_MIN`]): the
    /// string's buffer, to read at most `missing` more bytes into its spare capacity (for
    /// example with tokio's `read_buf` over `Limit`), and that number. Reads must go here,
    /// not to [`Decoder::spare`], while this is `Some`.
    pub fn tail_room(&mut self) -> Option<(&mut TextBuf, usize)> {
        if self.poisoned.is_some() {
            return None;
        }
        match self.tail.as_mut() {
            Some(t) if t.missing() > 0 => {
                let missing = t.missing();
                Some((&mut t.body, missing))
            }
            _ => None,
        }
    }

    /// Room for at least `min` more bytes at the end of the buffer, to read into directly;
    /// then call [`Decoder::commit`] with the number of bytes written. Saves the copy that
    /// [`Decoder::feed`] makes.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        if let Some(t) = self.tail.as_mut().filter(|t| t.missing() > 0) {
            // The body comes first; `commit` trims what was not filled. Zero-filled, so at
            // most a bounded step beyond what was asked for: a declared length is only a
            // claim.
            let old = t.body.len();
            let room = t.missing().min(min.max(TAIL_STEP));
            t.spare_from = Some(old);
            return t.body.zeroed_room(room);
        }
        // Compact only when the consumed prefix is at least half the data, so every byte is
        // moved O(1) times amortised (draining after each item would be quadratic when one
        // read holds many small frames).
        if self.pos > 0 && self.pos >= self.end / 2 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() < self.end + min {
            self.buf.resize(self.end + min, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of the room returned by [`Decoder::spare`] as fed.
    pub fn commit(&mut self, n: usize) {
        if self.poisoned.is_some() {
            return;
        }
        // One short read only (see `read_limit`).
        self.after_tail = false;
        if let Some(t) = self.tail.as_mut() {
            if let Some(from) = t.spare_from.take() {
                // `spare` lent the body's room: keep what was written.
                let lent = t.body.len();
                t.body.truncate((from + n).min(lent));
                return;
            }
        }
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The most the next read into [`Decoder::spare`] should bring, if less than a full
    /// read: right after a frame whose long string was received apart, the next frame is
    /// likely another one, and whatever a read brings of its string before the decoder can
    /// tell (the head of a CBOR string, [`DETACH_MIN`] of a JSON one) is copied once more
    /// into the string's own buffer. One short read settles it: the next item is then
    /// either received apart too, or decoded, and reads are full again (the limit holds for
    /// one [`Decoder::commit`]).
    pub fn read_limit(&self) -> Option<usize> {
        if !self.after_tail || self.tail.is_some() {
            return None;
        }
        Some(match self.framing {
            Framing::Cbor => CBOR_HEAD_READ,
            Framing::Json => DETACH_MIN + JSON_HINT_SLACK,
        })
    }

    /// Number of bytes fed but not yet returned as part of a value.
    pub fn buffered(&self) -> usize {
        self.end - self.pos + self.tail.as_ref().map_or(0, |t| t.body.len())
    }

    /// Decodes the next complete top-level item: `Ok(None)` when more bytes are needed.
    /// After an error the decoder is poisoned and keeps returning that error.
    pub fn next_value(&mut self) -> Result<Option<Value>, DecodeError> {
        self.reattach_tail();
        let mut got = None;
        let framing = self.framing;
        self.next_with(|buf, base, limits| {
            let (v, used) = parse(framing, buf, base, limits)?;
            got = Some(v);
            Ok(used)
        })?;
        Ok(got)
    }

    /// Decodes every complete frame `[port, msg...]` buffered so far straight into its
    /// destination port name and message, appended to `out` in order; returns how many.
    /// This is what [`Decoder::next_value`] followed by [`decode_frame`] gives, in one pass
    /// and without building the outer list. An item that is not a valid frame is a
    /// [`DecodeError::BadFrame`], and poisons the decoder like any other error; the good
    /// frames before it stay in `out`, so a receiver can still deliver them.
    pub fn frames_into(&mut self, out: &mut Vec<(Str, Msg)>) -> Result<usize, DecodeError> {
        self.frames_into_max(out, usize::MAX)
    }

    /// Like [`Decoder::frames_into`], but stops after `max` frames (the rest stays
    /// buffered for the next call).
    pub fn frames_into_max(
        &mut self,
        out: &mut Vec<(Str, Msg)>,
        max: usize,
    ) -> Result<usize, DecodeError> {
        // Taken out for the call, so that the parse below can use it while `next_with`
        // borrows the decoder.
        let mut recent = std::mem::take(&mut self.recent);
        let r = self.frames_with(out, max, &mut recent);
        self.recent = recent;
        r
    }

    fn frames_with(
        &mut self,
        out: &mut Vec<(Str, Msg)>,
        max: usize,
        recent: &mut recent::Recent,
    ) -> Result<usize, DecodeError> {
        let framing = self.framing;
        let start = out.len();
        self.whole_frames(out, start.saturating_add(max), recent);
        loop {
            if out.len() - start >= max {
                return Ok(out.len() - start);
            }
            if self.tail.is_some() {
                if self.poisoned.is_some() || !self.take_tail(out)? {
                    return Ok(out.len() - start);
                }
                continue;
            }
            let before = out.len();
            match self
                .next_with(|buf, base, limits| parse_frame(framing, buf, base, limits, recent, out))
            {
                Ok(Some(())) => self.after_tail = false,
                Ok(None) => {
                    self.try_detach();
                    return Ok(out.len() - start);
                }
                Err(e) => {
                    // An oversized item may have been parsed before it was refused.
                    out.truncate(before);
                    return Err(e);
                }
            }
        }
    }

    /// The common case, whole frames one after another in the buffer, in a tight loop: each
    /// parsed straight from the buffer until `out` holds `until` frames. Anything else (an
    /// incomplete frame, an error, an oversized frame, a frame being received apart, the
    /// end of the buffered bytes) stops it, and the general path of
    /// [`Decoder::frames_into_max`] takes over at the same place (parsing again the frame
    /// that stopped it, and reporting what is wrong with it).
    #[inline(always)]
    fn whole_frames(
        &mut self,
        out: &mut Vec<(Str, Msg)>,
        until: usize,
        recent: &mut recent::Recent,
    ) {
        if self.poisoned.is_some() || self.tail.is_some() || self.scan.is_some() {
            return;
        }
        let framing = self.framing;
        while out.len() < until {
            if framing == Framing::Json {
                self.skip_json_whitespace();
            }
            let before = out.len();
            let base = self.base + self.pos as u64;
            let avail = &self.buf[self.pos..self.end];
            match parse_frame(framing, avail, base, &self.limits, recent, out) {
                Ok(used) if used <= self.limits.max_message && !avail.is_empty() => {
                    self.pos += used;
                    self.after_tail = false;
                }
                _ => {
                    out.truncate(before);
                    return;
                }
            }
        }
    }

    /// Moves `pos` past whitespace between JSON texts, which belongs to no item. Only fed
    /// bytes count: `buf[end..]` is spare room that may hold stale bytes of earlier reads
    /// (found by fuzzing: skipping them ran `pos` past `end`).
    #[inline(always)]
    fn skip_json_whitespace(&mut self) {
        while self.pos < self.end && json::is_whitespace(self.buf[self.pos]) {
            self.pos += 1;
        }
    }

    /// If the incomplete item at `pos` is a CBOR frame that ends in a long string whose
    /// body has not all arrived, moves what there is of the body into the string's own
    /// buffer, where the rest will be read (see [`Tail`]).
    fn try_detach(&mut self) {
        if self.poisoned.is_some() || self.tail.is_some() {
            return;
        }
        if self.framing == Framing::Json {
            self.try_detach_json();
            return;
        }
        let avail = &self.buf[self.pos..self.end];
        let Some((prefix, total)) = cbor::detachable_tail(avail, &self.limits, DETACH_MIN) else {
            return;
        };
        // Invariant from detachable_tail: the body is incomplete, so prefix + body part is
        // all of `avail`, and total <= max_message. The declared length is only a claim:
        // room beyond what has arrived is reserved a bounded step at a time (the buffer
        // then grows with the bytes that really come).
        let have = avail.len() - prefix;
        self.detach(prefix, total.min(have + TAIL_RESERVE), total, false);
    }

    /// Moves the body of the incomplete item (what follows its first `prefix` bytes) out of
    /// the buffer into a [`Tail`] with room for `reserve` bytes: `total` is its declared
    /// length (CBOR) or the most it may grow to (`open`: a JSON string still open, whose
    /// part that arrived so far the scan has checked already).
    fn detach(&mut self, prefix: usize, reserve: usize, total: usize, open: bool) {
        let mut body = TextBuf::with_capacity(reserve);
        body.extend_from_slice(&self.buf[self.pos + prefix..self.end]);
        let scanned = if open { body.len() } else { 0 };
        self.end = self.pos + prefix;
        self.scan = None;
        self.tail = Some(Tail {
            prefix,
            body,
            total,
            open,
            scanned,
            spare_from: None,
        });
    }

    /// [`Decoder::try_detach`] for JSON: the incomplete item is a frame whose last string
    /// is still arriving, at least [`DETACH_MIN`] of it so far, without escapes.
    fn try_detach_json(&mut self) {
        let Some(Scan::Json(scan)) = &self.scan else {
            return;
        };
        let Some(quote) = scan.open_plain_string() else {
            return;
        };
        let at = self.base + self.pos as u64;
        let avail = &self.buf[self.pos..self.end];
        let prefix = quote + 1;
        // Invariant: the scan has looked at all of `avail`, and the string is open.
        let have = avail.len().saturating_sub(prefix);
        if have < DETACH_MIN || self.no_detach == Some(at) {
            return;
        }
        // Checked once per item: a prefix that is no frame start is left to the parser.
        if json::frame_prefix(&avail[..prefix], at, &self.limits).is_err() {
            self.no_detach = Some(at);
            return;
        }
        let cap = self.limits.max_message.saturating_sub(prefix);
        if have >= cap {
            return;
        }
        // The length is unknown: reserve what the last such string took (streams of
        // similar messages then need no reallocation), at most a bounded step beyond what
        // has arrived like a CBOR body; the buffer doubles after that.
        let reserve = (have + TAIL_STEP)
            .max(self.json_len_hint + JSON_HINT_SLACK)
            .min(have + TAIL_RESERVE)
            .min(cap);
        self.detach(prefix, reserve, cap, true);
    }

    /// Looks for the end of a detached JSON string: true if there is more for
    /// [`Decoder::frames_into_max`] to do (the frame is complete, or the body was put back
    /// into the buffer), false to wait for more bytes.
    fn advance_json_tail(&mut self) -> Result<bool, DecodeError> {
        let at = self.base + self.pos as u64;
        let Some(t) = self.tail.as_mut() else {
            return Ok(false);
        };
        if t.spare_from.is_some() {
            return Ok(false);
        }
        if t.open {
            let k = t.scanned + json::plain_len(&t.body.as_bytes()[t.scanned..]);
            if k == t.body.len() {
                t.scanned = k;
                if t.body.len() >= t.total {
                    return Err(self.too_large(self.limits.max_message as u64 + 1));
                }
                return Ok(false);
            }
            if t.body.as_bytes()[k] != b'"' {
                // An escape or a control byte: the parser's job.
                self.no_detach = Some(at);
                self.reattach_tail();
                return Ok(true);
            }
            // The closing quote: what follows it belongs to the buffer, right after the
            // prefix (and before anything that went to the buffer because the body had
            // reached its size limit).
            let after = t.body.split_off(k + 1);
            t.total = t.body.len();
            t.open = false;
            // Inserted in place: the zero-filled room beyond `end` stays (truncating it
            // would make the next `spare` zero it again, a memset of a whole read per long
            // string).
            let (at_body, n) = (self.pos + t.prefix, after.len());
            if self.buf.len() < self.end + n {
                self.buf.resize(self.end + n, 0);
            }
            self.buf.copy_within(at_body..self.end, at_body + n);
            self.buf[at_body..at_body + n].copy_from_slice(&after);
            self.end += n;
        }
        // The frame ends with optional whitespace and ']'.
        let Some(t) = self.tail.as_ref() else {
            return Ok(false);
        };
        let rest = &self.buf[self.pos + t.prefix..self.end];
        let ws = rest.iter().take_while(|&&b| json::is_whitespace(b)).count();
        let size = t.prefix + t.total + ws + 1;
        if size > self.limits.max_message {
            return Err(self.too_large(size as u64));
        }
        match rest.get(ws) {
            None => Ok(false),
            Some(b']') => Ok(true),
            Some(_) => {
                // More elements after the long string: the parser's job.
                self.no_detach = Some(at);
                self.reattach_tail();
                Ok(true)
            }
        }
    }

    fn too_large(&mut self, size: u64) -> DecodeError {
        let e = DecodeError::TooLarge {
            size,
            max_message: self.limits.max_message,
        };
        self.poison(e.clone());
        e
    }

    /// Puts a detached body back into the buffer (only when the frame and value reading
    /// interfaces are mixed: values are always parsed from one buffer).
    fn reattach_tail(&mut self) {
        let Some(mut t) = self.tail.take() else {
            return;
        };
        if let Some(from) = t.spare_from.take() {
            t.body.truncate(from);
        }
        let after = self.buf[self.pos + t.prefix..self.end].to_vec();
        self.buf.truncate(self.pos + t.prefix);
        self.buf.extend_from_slice(t.body.as_bytes());
        self.buf.extend_from_slice(&after);
        self.end = self.buf.len();
    }

    /// Appends the detached frame to `out` once its body is complete: true if it did.
    fn take_tail(&mut self, out: &mut Vec<(Str, Msg)>) -> Result<bool, DecodeError> {
        if self.framing == Framing::Json {
            if !self.advance_json_tail()? {
                return Ok(false);
            }
            if self.tail.is_none() {
                // Put back: the regular path goes on.
                return Ok(true);
            }
        }
        match &self.tail {
            Some(t) if t.missing() == 0 && t.spare_from.is_none() => {}
            _ => return Ok(false),
        }
        let Some(t) = self.tail.take() else {
            return Ok(false);
        };
        let base = self.base + self.pos as u64;
        let prefix = &self.buf[self.pos..self.pos + t.prefix];
        let total = t.total;
        let (built, suffix) = match self.framing {
            Framing::Cbor => (
                cbor::frame_with_tail(prefix, base, &self.limits, t.body, out),
                0,
            ),
            Framing::Json => {
                // Invariant (advance_json_tail): the body ends with the closing quote, and
                // the buffer holds whitespace and ']' after the prefix.
                let mut body = t.body;
                body.pop();
                self.json_len_hint = body.len();
                if body.capacity() > 2 * body.len() {
                    // A reserve far off the mark is not kept for the string's lifetime.
                    body.shrink_to_fit();
                }
                let rest = &self.buf[self.pos + t.prefix..self.end];
                let suffix = rest
                    .iter()
                    .position(|&b| b == b']')
                    .map_or(rest.len(), |i| i + 1);
                (
                    json::frame_with_tail(prefix, base, &self.limits, body, out),
                    suffix,
                )
            }
        };
        match built {
            Ok(()) => {
                self.pos += t.prefix + suffix;
                // Everything still buffered comes after the body in the stream.
                self.base += total as u64;
                self.after_tail = true;
                Ok(true)
            }
            Err(fail) => {
                let e = match fail {
                    Fail::Error(e) => e,
                    // The prefix was complete when it was detached.
                    Fail::Incomplete => DecodeError::Syntax {
                        framing: self.framing,
                        offset: base,
                        reason: "malformed item",
                    },
                };
                self.poison(e.clone());
                Err(e)
            }
        }
    }

    fn poison(&mut self, e: DecodeError) {
        self.poisoned = Some(e);
        self.buf = Vec::new();
        self.end = 0;
        self.pos = 0;
        self.scan = None;
        self.tail = None;
    }

    /// Finds the next complete item and hands its bytes to `parse`, which returns how many
    /// bytes the item took (and keeps the result itself). `None` when more bytes are needed.
    fn next_with(
        &mut self,
        parse: impl FnMut(&[u8], u64, &Limits) -> Result<usize, Fail>,
    ) -> Result<Option<()>, DecodeError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        match self.next_inner(parse) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.poison(e.clone());
                Err(e)
            }
        }
    }

    fn next_inner(
        &mut self,
        mut parse: impl FnMut(&[u8], u64, &Limits) -> Result<usize, Fail>,
    ) -> Result<Option<()>, DecodeError> {
        if self.framing == Framing::Json && self.scan.is_none() {
            self.skip_json_whitespace();
        }
        if self.pos == self.end {
            // Everything consumed: start over at the front of the buffer.
            self.base += self.pos as u64;
            self.end = 0;
            self.pos = 0;
            return Ok(None);
        }
        let base = self.base + self.pos as u64;
        let avail = &self.buf[self.pos..self.end];
        if self.scan.is_none() {
            match parse(avail, base, &self.limits) {
                Ok(used) => return self.accept(used),
                Err(Fail::Error(e)) => return Err(e),
                Err(Fail::Incomplete) => {
                    self.scan = Some(match self.framing {
                        Framing::Json => Scan::Json(json::Scan::default()),
                        Framing::Cbor => Scan::Cbor(cbor::Scan::default()),
                    });
                }
            }
        }
        let done = match self.scan.as_mut() {
            Some(Scan::Json(s)) => s.advance(avail, base, &self.limits)?,
            Some(Scan::Cbor(s)) => s.advance(avail, base, &self.limits)?,
            None => None,
        };
        if done.is_none() {
            return Ok(None);
        }
        self.scan = None;
        match parse(avail, base, &self.limits) {
            Ok(used) => self.accept(used),
            Err(Fail::Error(e)) => Err(e),
            // The scan said complete but the parser disagrees: only malformed input can
            // cause that, so report it as such.
            Err(Fail::Incomplete) => Err(DecodeError::Syntax {
                framing: self.framing,
                offset: base,
                reason: "malformed item",
            }),
        }
    }

    /// Consumes an item of `used` bytes. An item over the size limit is an error even when
    /// it arrived whole (its result, already kept by the parse closure, is then dropped
    /// with the connection).
    fn accept(&mut self, used: usize) -> Result<Option<()>, DecodeError> {
        if used > self.limits.max_message {
            return Err(DecodeError::TooLarge {
                size: used as u64,
                max_message: self.limits.max_message,
            });
        }
        self.pos += used;
        Ok(Some(()))
    }
}

/// Where parsed values are collected: a message's own `SmallVec` (a frame's elements, each
/// frame's pushed into the output first and filled in place), or a `Vec`.
trait PushValue {
    /// Appends the value `make` returns, made where it goes when the compiler manages (see
    /// `aemp_text::PushWith`).
    fn push_with(&mut self, make: impl FnOnce() -> Value);

    #[inline(always)]
    fn push_value(&mut self, v: Value) {
        self.push_with(|| v);
    }

    /// Appends `Value::Str(make())`, written in place as its parts (see
    /// `Value::write_str`).
    fn push_str_with(&mut self, make: impl FnOnce() -> Str);
}

impl<V: aemp_text::PushWith<Value>> PushValue for V {
    #[inline(always)]
    fn push_with(&mut self, make: impl FnOnce() -> Value) {
        aemp_text::PushWith::push_with(self, make);
    }

    #[inline(always)]
    fn push_str_with(&mut self, make: impl FnOnce() -> Str) {
        aemp_text::PushWith::push_init(self, |slot| Value::write_str(slot, make()));
    }
}

/// Parses one frame from the start of `buf` into `out`: the codec's direct path for the
/// common shape, else the general parse and [`decode_frame`] (same result, or the precise
/// frame error).
fn parse_frame(
    framing: Framing,
    buf: &[u8],
    base: u64,
    limits: &Limits,
    recent: &mut recent::Recent,
    out: &mut Vec<(Str, Msg)>,
) -> Result<usize, Fail> {
    let direct = match framing {
        Framing::Json => json::parse_frame(buf, base, limits, recent, out)?,
        Framing::Cbor => cbor::parse_frame(buf, base, limits, recent, out)?,
    };
    if let Some(used) = direct {
        return Ok(used);
    }
    let (v, used) = parse(framing, buf, base, limits)?;
    let frame = decode_frame(v).map_err(|error| DecodeError::BadFrame {
        offset: base,
        error,
    })?;
    out.push(frame);
    Ok(used)
}

/// Parses one item from the start of `buf` (which may hold more): the value and the number
/// of bytes it used.
fn parse(framing: Framing, buf: &[u8], base: u64, limits: &Limits) -> Result<(Value, usize), Fail> {
    match framing {
        Framing::Json => json::parse(buf, base, limits),
        Framing::Cbor => cbor::parse(buf, base, limits),
    }
}

/// Why a decoded item is not a valid AEMP frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The item is not an array.
    #[error("frame is a {0}, not an array")]
    NotArray(&'static str),
    /// Element 0 is neither a string nor an integer.
    #[error("frame's port name is a {0}, not a string")]
    BadPortName(&'static str),
}

/// Splits a decoded wire item into its destination port name and message.
///
/// `[]` yields `("", empty message)`, which Perl dispatches to the node port as a no-op. An
/// integer port name is accepted as its decimal string (Perl does not tell them apart).
pub fn decode_frame(v: Value) -> Result<(Str, Msg), FrameError> {
    let mut items = match v {
        Value::List(items) => items,
        other => return Err(FrameError::NotArray(other.kind())),
    };
    if items.is_empty() {
        return Ok((Str::default(), Msg::from(items)));
    }
    let port = match items.remove(0) {
        Value::Str(s) => s,
        Value::Int(i) => Str::from(itoa::Buffer::new().format(i)),
        Value::UInt(u) => Str::from(itoa::Buffer::new().format(u)),
        other => return Err(FrameError::BadPortName(other.kind())),
    };
    Ok((port, Msg::from(items)))
}

/// Appends the wire form of `[port_name, msg...]` to `out`, without building a [`Value`].
pub fn encode_frame(framing: Framing, port_name: &str, msg: &[Value], out: &mut Vec<u8>) {
    match framing {
        Framing::Json => json::encode_frame(port_name, msg, out),
        Framing::Cbor => cbor::encode_frame(port_name, msg, out),
    }
}

/// Strings at least this long are not copied by [`encode_frame_owned`]: a copy of a large
/// string costs more than one more piece in a vectored write.
pub const ZERO_COPY_MIN: usize = 64 * 1024;

/// Encoded frames whose large strings stay where they are: `bytes` holds everything else,
/// and each `(at, s)` in `big` says that the bytes of `s` go at offset `at` of `bytes`
/// (offsets ascending). A connection writes the pieces with one vectored write.
#[derive(Debug, Default)]
pub struct Outbox {
    /// The encoded bytes, without the large strings' contents.
    pub bytes: Vec<u8>,
    /// Large strings and where they go.
    pub big: Vec<(usize, Str)>,
    /// Total length of the strings in `big`.
    pub big_len: usize,
    /// The JSON form of the last port name and tag written here, for frames that repeat
    /// them (see `json::KeptStr`).
    json_port: json::KeptStr,
    json_tag: json::KeptStr,
}

impl Outbox {
    /// Total length of the encoded frames.
    pub fn len(&self) -> usize {
        self.bytes.len() + self.big_len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.big.is_empty()
    }

    /// Forgets everything queued, keeping the byte buffer's capacity.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.big.clear();
        self.big_len = 0;
    }

    /// The pieces in wire order.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut from = 0;
        let mut big = self.big.iter();
        let mut pending: Option<&[u8]> = None;
        let mut done = false;
        std::iter::from_fn(move || loop {
            if let Some(p) = pending.take() {
                return Some(p);
            }
            if done {
                return None;
            }
            match big.next() {
                Some((at, s)) => {
                    let head = &self.bytes[from..*at];
                    from = *at;
                    pending = Some(s.as_bytes());
                    if !head.is_empty() {
                        return Some(head);
                    }
                }
                None => {
                    done = true;
                    let tail = &self.bytes[from..];
                    if !tail.is_empty() {
                        return Some(tail);
                    }
                }
            }
        })
    }
}

/// Appends the wire form of `[port_name, msg...]` to `out` like [`encode_frame`], but moves
/// top-level strings of at least [`ZERO_COPY_MIN`] bytes out of `msg` into `out.big`
/// instead of copying them (JSON only when the string needs no escaping).
///
/// One pass over the elements, each either encoded or moved as it comes: this is the hot
/// path of every remote send, where a separate scan for large strings first was paid by
/// every small message.
pub fn encode_frame_owned(framing: Framing, port_name: &str, msg: &mut [Value], out: &mut Outbox) {
    match framing {
        Framing::Json => json::encode_frame_owned(port_name, msg, out),
        Framing::Cbor => cbor::encode_frame_owned(port_name, msg, out),
    }
}

impl Outbox {
    /// Queues the large string `s`, whose head (and JSON opening quote) was just written to
    /// `bytes`: its bytes go right after what `bytes` holds now.
    #[cold]
    fn push_big(&mut self, s: Str) {
        self.big_len += s.len();
        self.big.push((self.bytes.len(), s));
    }
}

/// Appends the wire form of one value to `out`.
pub fn encode_value(framing: Framing, v: &Value, out: &mut Vec<u8>) {
    match framing {
        Framing::Json => json::encode_value(v, out),
        Framing::Cbor => cbor::encode_value(v, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg;

    #[test]
    fn framing_names() {
        for f in [Framing::Json, Framing::Cbor] {
            assert_eq!(Framing::from_name(f.name()), Some(f));
        }
        assert_eq!(Framing::from_name("storable"), None);
        assert_eq!(Framing::from_name("JSON"), None);
    }

    #[test]
    fn frames() {
        let (p, m) = decode_frame(Value::List(vec![])).unwrap();
        assert_eq!((p.as_str(), m.len()), ("", 0));
        let (p, m) = decode_frame(msg!["port", "tag", 1].into()).unwrap();
        assert_eq!(p, "port");
        assert_eq!(m, msg!["tag", 1]);
        let (p, _) = decode_frame(msg![42, "x"].into()).unwrap();
        assert_eq!(p, "42");
        let (p, _) = decode_frame(msg![u64::MAX].into()).unwrap();
        assert_eq!(p, "18446744073709551615");
        assert_eq!(
            decode_frame(Value::from("x")),
            Err(FrameError::NotArray("string"))
        );
        assert_eq!(
            decode_frame(msg![Value::Null].into()),
            Err(FrameError::BadPortName("null"))
        );
    }

    #[test]
    fn encode_frame_matches_encode_value() {
        let m = msg!["tag", 1, -2, 2.5, "x", Value::Null, true];
        for f in [Framing::Json, Framing::Cbor] {
            let mut a = Vec::new();
            encode_frame(f, "port", m.as_slice(), &mut a);
            let mut whole = vec![Value::from("port")];
            whole.extend(m.0.iter().cloned());
            let mut b = Vec::new();
            encode_value(f, &Value::List(whole), &mut b);
            assert_eq!(a, b, "{f}");
        }
    }

    fn drain(d: &mut Decoder) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = d.next_value().unwrap() {
            out.push(v);
        }
        out
    }

    #[test]
    fn streaming_many_per_feed_and_split() {
        for f in [Framing::Json, Framing::Cbor] {
            let mut bytes = Vec::new();
            let msgs: Vec<Msg> = (0..50)
                .map(|i| msg!["tag", i, "x".repeat(i as usize * 7)])
                .collect();
            for m in &msgs {
                encode_frame(f, "p", m.as_slice(), &mut bytes);
                if f == Framing::Json && m.len() % 2 == 0 {
                    bytes.extend_from_slice(b" \n\t\r");
                }
            }
            for step in [1, 2, 3, 7, 64, 1000, bytes.len()] {
                let mut d = Decoder::new(f, Limits::default());
                let mut got = Vec::new();
                for c in bytes.chunks(step) {
                    d.feed(c);
                    got.extend(drain(&mut d));
                }
                assert_eq!(got.len(), msgs.len(), "{f} step {step}");
                for (v, m) in got.into_iter().zip(&msgs) {
                    let (p, dm) = decode_frame(v).unwrap();
                    assert_eq!(p, "p");
                    assert_eq!(&dm, m);
                }
                assert_eq!(d.buffered(), 0);
            }
        }
    }

    /// Frames that repeat, then change, their port name, tag and length (what the decoder
    /// keeps from the last frame, `recent`) and numbers in every form decode exactly as
    /// the general path decodes them.
    #[test]
    fn repeated_and_changing_ports_tags_and_numbers_decode_like_the_general_path() {
        let long = "t".repeat(30);
        let frames: Vec<(&str, Msg)> = vec![
            ("p", msg!["msg", 1, "x".repeat(48)]),
            ("p", msg!["msg", 2, "x".repeat(48)]),
            ("p", msg!["msh", 3]),
            ("q", msg!["msh"]),
            ("q", msg![long.as_str(), 0, 7, 123_456_789_012_345_678_u64]),
            (
                "q",
                msg![
                    long.as_str(),
                    1_234_567_890_123_456_789_u64,
                    u64::MAX,
                    -5,
                    1.5
                ],
            ),
            ("", msg!["node request", 1]),
            ("", msg!["node request", 2]),
            ("a-port-name-of-24-bytes!", msg![5, "msg"]),
            (
                "a-port-name-of-24-bytes!",
                msg!["msg", 1e3, Value::Null, true, "é"],
            ),
            ("a-port-name-of-24-bytes?", msg!["msg\"quoted\"", 6]),
            (
                "a-port-name-of-24-bytes?",
                msg!["msg\"quoted\"", 7, 8, 9, 10, 11, 12],
            ),
            ("p", msg!["é", 8]),
            ("p", msg!["é", 9]),
            ("p", msg![msg!["nested"], 10]),
        ];
        for f in [Framing::Json, Framing::Cbor] {
            let mut bytes = Vec::new();
            for (port, m) in &frames {
                encode_frame(f, port, m.as_slice(), &mut bytes);
            }
            if f == Framing::Json {
                // Hand-written: whitespace around numbers, a leading-zero number that is
                // an error only later, exponents.
                bytes.extend_from_slice(b"[\"p\" , \"msg\" , 12 , 0 , 3e2 ,-0, 45 ]");
                bytes
                    .extend_from_slice(b"[\"p\",\"msg\",99999999999999999999,9999999999999999999]");
            }
            let want = general_path(f, &bytes);
            assert!(want.len() >= frames.len());
            assert_frames_into_gives(f, &bytes, &want, &[1, 7, 64, bytes.len()]);
        }
    }

    /// The frames of `bytes` as the general path decodes them (`next_value`, then
    /// `decode_frame`).
    fn general_path(f: Framing, bytes: &[u8]) -> Vec<(Str, Msg)> {
        let mut want = Vec::new();
        let mut d = Decoder::new(f, Limits::default());
        d.feed(bytes);
        while let Some(v) = d.next_value().unwrap() {
            want.push(decode_frame(v).unwrap());
        }
        want
    }

    /// `frames_into` gives `want` from `bytes` fed in pieces of each size of `steps`.
    fn assert_frames_into_gives(f: Framing, bytes: &[u8], want: &[(Str, Msg)], steps: &[usize]) {
        for &step in steps {
            let mut d = Decoder::new(f, Limits::default());
            let mut got = Vec::new();
            for c in bytes.chunks(step) {
                d.feed(c);
                d.frames_into(&mut got).unwrap();
            }
            assert_eq!(got, want, "{f} step {step}");
        }
    }

    #[test]
    fn frames_into_matches_next_value_and_decode_frame() {
        let msgs = [
            msg!["tag", 1, "x".repeat(100), -5, 2.5, Value::Null],
            msg!["t"],
            msg!["a", "b"],
            msg![
                "nested",
                msg![1, msg![2, "deep"]],
                Value::Map(vec![("k".into(), 1.into())])
            ],
            msg![u64::MAX, Value::Bytes(vec![0xff, 0])],
        ];
        for f in [Framing::Json, Framing::Cbor] {
            let mut bytes = Vec::new();
            for (i, m) in msgs.iter().enumerate() {
                encode_frame(f, &format!("port{i}"), m.as_slice(), &mut bytes);
            }
            // Integers of every length up to 20 digits, next to every kind of neighbour.
            let ints: Vec<Value> = (0..20)
                .map(|k| Value::from(9u64.pow(k) + k as u64))
                .collect();
            let mut ints_msg = msg!["ints"];
            ints_msg.0.extend(ints.iter().cloned());
            ints_msg.0.push(Value::List(ints));
            encode_frame(f, "ints", ints_msg.as_slice(), &mut bytes);
            // The general path: an empty frame, an integer port name.
            encode_value(f, &Value::List(vec![]), &mut bytes);
            encode_value(f, &msg![42, "int"].into(), &mut bytes);
            let mut extra = 3;
            if f == Framing::Json {
                // Digits that go on as a fraction or an exponent, within and past 8 bytes,
                // and whitespace after digits.
                bytes.extend_from_slice(
                    b"[\"p\",\"x\",1234567.5,12e3,1234567E2,123456789012.25,7 ,8\t]",
                );
                extra += 1;
            }
            let want = general_path(f, &bytes);
            assert_eq!(want.len(), msgs.len() + extra);
            assert_frames_into_gives(f, &bytes, &want, &[1, 5, 64, bytes.len()]);
            // At most `max` per call; the rest stays buffered.
            let mut d = Decoder::new(f, Limits::default());
            d.feed(&bytes);
            let mut got = Vec::new();
            while d.frames_into_max(&mut got, 2).unwrap() == 2 {
                assert_eq!(got.len() % 2, 0);
            }
            assert_eq!(got, want, "{f} max 2");
        }
    }

    #[test]
    fn frames_into_keeps_good_frames_before_a_bad_one() {
        for f in [Framing::Json, Framing::Cbor] {
            let mut bytes = Vec::new();
            encode_frame(f, "p", msg!["ok"].as_slice(), &mut bytes);
            encode_value(f, &Value::from("not an array"), &mut bytes);
            encode_frame(f, "p", msg!["after"].as_slice(), &mut bytes);
            let mut d = Decoder::new(f, Limits::default());
            d.feed(&bytes);
            let mut got = Vec::new();
            let e = d.frames_into(&mut got).unwrap_err();
            assert!(
                matches!(
                    e,
                    DecodeError::BadFrame {
                        error: FrameError::NotArray("string"),
                        ..
                    }
                ),
                "{f}: {e}"
            );
            assert_eq!(got, vec![(Str::from("p"), msg!["ok"])]);
            // Poisoned: nothing more comes out.
            assert_eq!(d.frames_into(&mut got), Err(e));
            assert_eq!(got.len(), 1);
            // A bad port name.
            let mut bytes = Vec::new();
            encode_value(f, &msg![Value::Null, "x"].into(), &mut bytes);
            let mut d = Decoder::new(f, Limits::default());
            d.feed(&bytes);
            assert!(matches!(
                d.frames_into(&mut got),
                Err(DecodeError::BadFrame {
                    error: FrameError::BadPortName("null"),
                    ..
                })
            ));
        }
    }

    #[test]
    fn encode_frame_owned_matches_encode_frame() {
        let big = "b".repeat(ZERO_COPY_MIN);
        let escaped = format!("{big}\"\n");
        let long_port = "p".repeat(70);
        // Port names and tags repeat, change, need escaping or are long (what the JSON
        // encoder keeps from one frame to the next, `json::KeptStr`).
        let cases = [
            ("port", msg!["small", 1, "x"]),
            ("port", msg!["small", 2, "x"]),
            ("port", msg!["bulk", 7, big.as_str()]),
            (
                "port",
                msg![big.as_str(), "mid", big.as_str(), msg![big.as_str()]],
            ),
            ("port", msg!["esc", escaped.as_str(), big.as_str()]),
            ("p\"q", msg!["t\n", 1]),
            ("p\"q", msg!["t\n", 2]),
            ("", msg!["smalm", 3]),
            ("", msg![4, "small"]),
            (long_port.as_str(), msg![long_port.as_str()]),
            (long_port.as_str(), msg![long_port.as_str(), 5]),
            ("port", msg!["é", 6]),
            ("porT", msg!["é", 7]),
        ];
        for f in [Framing::Json, Framing::Cbor] {
            let mut ob = Outbox::default();
            let mut want = Vec::new();
            for (port, m) in &cases {
                encode_frame(f, port, m.as_slice(), &mut want);
                let mut owned = m.clone();
                encode_frame_owned(f, port, &mut owned.0, &mut ob);
            }
            assert!(!ob.big.is_empty(), "{f}");
            let got: Vec<u8> = ob.pieces().flatten().copied().collect();
            assert_eq!(got.len(), ob.len(), "{f}");
            assert!(got == want, "{f}: pieces differ from encode_frame");
            ob.clear();
            assert!(ob.is_empty() && ob.pieces().next().is_none());
        }
    }

    /// A stream with frames that end in long strings (received apart, see `Tail`) between
    /// ordinary ones, and what `next_value` + `decode_frame` make of it.
    fn tail_stream() -> (Vec<u8>, Vec<(Str, Msg)>) {
        let long = |n: usize, c: char| c.to_string().repeat(n);
        let mut bytes = Vec::new();
        let mut frames = vec![
            (Str::from("a"), msg!["small", 1]),
            (Str::from("b"), msg!["bulk", 7, long(DETACH_MIN, 'x')]),
            (Str::from("c"), msg!["bulk", long(300_000, 'y')]),
            (Str::from("d"), msg![long(DETACH_MIN + 1, 'z')]),
            (Str::from("e"), msg!["small", 2]),
            (
                Str::from("f"),
                msg!["nested", msg![1, "x"], long(DETACH_MIN * 2, 'é')],
            ),
        ];
        for (p, m) in &frames {
            encode_frame(Framing::Cbor, p, m.as_slice(), &mut bytes);
        }
        // A body that is not UTF-8 arrives as bytes.
        let raw = vec![0xff; DETACH_MIN + 5];
        encode_value(
            Framing::Cbor,
            &msg!["g", "raw", Value::Bytes(raw.clone())].into(),
            &mut bytes,
        );
        frames.push((Str::from("g"), msg!["raw", Value::Bytes(raw)]));
        encode_frame(Framing::Cbor, "h", msg!["last"].as_slice(), &mut bytes);
        frames.push((Str::from("h"), msg!["last"]));
        (bytes, frames)
    }

    #[test]
    fn long_last_strings_are_received_apart_and_decode_the_same() {
        let (bytes, want) = tail_stream();
        for step in [1000, 4096, 65_539, 200_000, bytes.len()] {
            // Through feed.
            let mut d = Decoder::new(Framing::Cbor, Limits::default());
            let mut got = Vec::new();
            let mut detached = false;
            for c in bytes.chunks(step) {
                d.feed(c);
                d.frames_into(&mut got).unwrap();
                detached |= d.tail.is_some();
            }
            assert_eq!(got, want, "feed step {step}");
            assert_eq!(d.buffered(), 0);
            assert!(
                detached || step == bytes.len(),
                "step {step} never detached"
            );
            // Through spare/commit and tail_room, as a connection reads.
            let mut d = Decoder::new(Framing::Cbor, Limits::default());
            let mut got = Vec::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                rest = &rest[d.fill(rest, step)..];
                d.frames_into_max(&mut got, 3).unwrap();
            }
            while d.frames_into(&mut got).unwrap() > 0 {}
            assert_eq!(got, want, "read step {step}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn the_read_after_a_string_received_apart_is_short() {
        // Frames that end in long strings of varying lengths, and small ones between some,
        // read 100,000 bytes at a time: after each long string received apart, one short
        // read (so the next long string is received apart after little of it went through
        // the decoder's buffer), then full reads again.
        let long = |n: usize| "x".repeat(n);
        let frames: Vec<(Str, Msg)> = (0..12)
            .map(|i| {
                let m = match i % 4 {
                    3 => msg!["small", i],
                    _ => msg!["bulk", i, long(DETACH_MIN * (2 + i % 5) + i * 7)],
                };
                (Str::from("p"), m)
            })
            .collect();
        for framing in [Framing::Cbor, Framing::Json] {
            let mut bytes = Vec::new();
            for (p, m) in &frames {
                encode_frame(framing, p, m.as_slice(), &mut bytes);
            }
            let mut d = Decoder::new(framing, Limits::default());
            let mut got = Vec::new();
            let mut rest = &bytes[..];
            let (mut limited, mut detached_after_limited) = (0, 0);
            while !rest.is_empty() {
                let limit = d.read_limit();
                let n = d.fill(rest, 100_000);
                rest = &rest[n..];
                d.frames_into_max(&mut got, 100).unwrap();
                if let Some(l) = limit {
                    assert!(n <= l, "{framing}: read {n} past the limit {l}");
                    limited += 1;
                    detached_after_limited += usize::from(d.tail.is_some());
                    // One short read only.
                    assert_eq!(d.read_limit(), None, "{framing}");
                }
            }
            while d.frames_into(&mut got).unwrap() > 0 {}
            assert!(got == frames, "{framing}");
            if framing == Framing::Cbor {
                // Reads of a CBOR string end with it: each of the 9 long strings is followed
                // by a short read, and the 8 after the first are received apart from there.
                assert_eq!((limited, detached_after_limited), (9, 8));
            } else {
                // A read that ends a JSON string may bring enough of the next one to
                // receive it apart at once: no short read is needed then.
                assert!(limited > 0 && detached_after_limited > 0, "{limited}");
            }
        }
    }

    #[test]
    fn detached_tails_keep_stream_offsets_and_mix_with_values() {
        let (bytes, want) = tail_stream();
        // An error after the long frames is reported at its stream offset.
        let mut d = Decoder::new(Framing::Cbor, Limits::default());
        let mut got = Vec::new();
        let mut all = bytes.clone();
        all.push(0xff); // a break outside any container
        for c in all.chunks(5000) {
            d.feed(c);
            if let Err(e) = d.frames_into(&mut got) {
                assert_eq!(
                    e,
                    DecodeError::Syntax {
                        framing: Framing::Cbor,
                        offset: bytes.len() as u64,
                        reason: "unexpected break"
                    }
                );
            }
        }
        assert_eq!(got, want);
        assert!(d.frames_into(&mut got).is_err());
        // Frames first, then values: a detached body is put back.
        let mut d = Decoder::new(Framing::Cbor, Limits::default());
        let mut got = Vec::new();
        let cut = bytes.len() / 3;
        d.feed(&bytes[..cut]);
        d.frames_into(&mut got).unwrap();
        d.feed(&bytes[cut..]);
        while let Some(v) = d.next_value().unwrap() {
            got.push(decode_frame(v).unwrap());
        }
        assert_eq!(got, want);
        // A port name that is not UTF-8 is still refused.
        let mut b = Vec::new();
        encode_value(
            Framing::Cbor,
            &msg![Value::Bytes(vec![0xfe]), "x".repeat(DETACH_MIN)].into(),
            &mut b,
        );
        let err = first_frame_error(Decoder::new(Framing::Cbor, Limits::default()), &b);
        assert!(
            matches!(
                err,
                Some(DecodeError::BadFrame {
                    error: FrameError::BadPortName("bytes"),
                    ..
                })
            ),
            "{err:?}"
        );
        // The size limit holds for detached frames too.
        let limits = Limits {
            max_depth: 8,
            max_message: DETACH_MIN + 100,
        };
        let mut b = Vec::new();
        encode_frame(
            Framing::Cbor,
            "p",
            &[Value::from("q".repeat(DETACH_MIN + 100))],
            &mut b,
        );
        let err = first_frame_error(Decoder::new(Framing::Cbor, limits), &b);
        assert!(matches!(err, Some(DecodeError::TooLarge { .. })), "{err:?}");
    }

    /// The first error of `bytes` read by frames in 1000-byte pieces.
    fn first_frame_error(mut d: Decoder, bytes: &[u8]) -> Option<DecodeError> {
        let mut got = Vec::new();
        for c in bytes.chunks(1000) {
            d.feed(c);
            if let Err(e) = d.frames_into(&mut got) {
                return Some(e);
            }
        }
        None
    }

    #[test]
    fn a_declared_length_reserves_memory_only_as_data_arrives() {
        // A frame claiming a 200 MiB last string, of which 100 KB arrive.
        let mut b = Vec::new();
        b.extend_from_slice(&[0x82, 0x61, b'p', 0x7a]);
        b.extend_from_slice(&(200u32 << 20).to_be_bytes());
        b.extend_from_slice(&[b'x'; 100_000]);
        let mut d = Decoder::new(Framing::Cbor, Limits::default());
        d.feed(&b);
        let mut got = Vec::new();
        assert_eq!(d.frames_into(&mut got), Ok(0));
        let t = d.tail.as_ref().expect("detached");
        assert!(
            t.body.capacity() <= 100_000 + TAIL_RESERVE,
            "{}",
            t.body.capacity()
        );
        assert_eq!(d.buffered(), b.len());
        // `spare` lends a bounded step of it, not the whole claim.
        let room = d.spare(10).len();
        assert!((10..=TAIL_STEP).contains(&room), "{room}");
        d.commit(5);
        assert_eq!(d.buffered(), b.len() + 5);
        assert!(d.tail.as_ref().unwrap().body.len() < 200_000);
    }

    #[test]
    fn json_whitespace_stops_at_the_fed_bytes() {
        // Spare room after compaction holds stale bytes of earlier reads; trailing
        // whitespace must not let the decoder wander into them.
        let mut d = Decoder::new(Framing::Json, Limits::default());
        let mut got = Vec::new();
        d.feed(b"[\"p\",1]                                    ");
        d.frames_into(&mut got).unwrap();
        d.feed(b"  ");
        d.frames_into(&mut got).unwrap();
        let room = d.spare(64);
        room.fill(b' ');
        d.commit(0);
        assert_eq!(d.frames_into(&mut got), Ok(0));
        d.feed(b"[\"q\",2]");
        assert_eq!(d.frames_into(&mut got), Ok(1));
        assert_eq!(d.next_value(), Ok(None));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn poisoned_after_error() {
        let mut d = Decoder::new(Framing::Json, Limits::default());
        d.feed(b"[1]x[2]");
        assert!(d.next_value().unwrap().is_some());
        let e = d.next_value().unwrap_err();
        assert!(matches!(e, DecodeError::Syntax { offset: 3, .. }), "{e}");
        d.feed(b"[3]");
        assert_eq!(d.next_value(), Err(e));
    }

    #[test]
    fn error_offsets_are_stream_offsets() {
        let mut d = Decoder::new(Framing::Json, Limits::default());
        d.feed(b"[1][2]");
        drain(&mut d);
        d.feed(b"[\"a\xff\"]");
        assert_eq!(d.next_value(), Err(DecodeError::InvalidUtf8 { offset: 9 }));
    }

    #[test]
    fn max_message_on_complete_items() {
        let limits = Limits {
            max_depth: 64,
            max_message: 10,
        };
        for f in [Framing::Json, Framing::Cbor] {
            let mut bytes = Vec::new();
            encode_frame(f, "p", &[Value::from("0123456789")], &mut bytes);
            let mut d = Decoder::new(f, limits);
            d.feed(&bytes);
            assert!(
                matches!(d.next_value(), Err(DecodeError::TooLarge { .. })),
                "{f}"
            );
            // The frame path refuses it too, and hands out nothing of it.
            let mut d = Decoder::new(f, limits);
            d.feed(&bytes);
            let mut got = Vec::new();
            assert!(matches!(
                d.frames_into(&mut got),
                Err(DecodeError::TooLarge { .. })
            ));
            assert!(got.is_empty(), "{f}");
        }
    }

    #[test]
    fn large_message_in_small_feeds_is_linear() {
        // 16 MiB in 4 KiB feeds: a quadratic decoder would rescan ~32 GiB here and take
        // minutes; the resumable scan keeps it to a few passes over the data.
        let big = "y".repeat(16 << 20);
        for f in [Framing::Json, Framing::Cbor] {
            let mut bytes = Vec::new();
            encode_frame(f, "p", &[Value::from(big.as_str())], &mut bytes);
            let mut d = Decoder::new(f, Limits::default());
            let start = std::time::Instant::now();
            let mut got = None;
            for c in bytes.chunks(4096) {
                d.feed(c);
                if let Some(v) = d.next_value().unwrap() {
                    got = Some(v);
                }
            }
            let (_, m) = decode_frame(got.expect("one value")).unwrap();
            assert_eq!(m[0].as_str().map(str::len), Some(big.len()));
            assert!(start.elapsed().as_secs() < 20, "{f} too slow");
        }
    }

    fn first_error(d: &mut Decoder) -> Option<DecodeError> {
        loop {
            match d.next_value() {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let unlimited = Limits {
            max_depth: usize::MAX,
            ..Limits::default()
        };
        for (f, open) in [
            (Framing::Json, b'['),
            (Framing::Json, b'{'),
            (Framing::Cbor, 0x81),
            (Framing::Cbor, 0x9f),
        ] {
            let bytes = vec![open; 1_000_000];
            for (limits, want) in [(Limits::default(), 64), (unlimited, MAX_DEPTH_CAP)] {
                // Whole (direct parse) and in pieces (resumable scan).
                for piece in [bytes.len(), 4096, 1] {
                    let mut d = Decoder::new(f, limits);
                    let mut err = None;
                    for c in bytes.chunks(piece).take(2000) {
                        d.feed(c);
                        err = first_error(&mut d);
                        if err.is_some() {
                            break;
                        }
                    }
                    match err {
                        Some(DecodeError::TooDeep { max_depth, .. }) => {
                            assert_eq!(max_depth, want, "{f} {open:02x}")
                        }
                        // `{` needs a key before the next `{`: a syntax error.
                        Some(DecodeError::Syntax { .. }) if open == b'{' => {}
                        other => panic!("{f} {open:02x} piece {piece}: {other:?}"),
                    }
                }
            }
        }
        // Exactly at the limit is fine.
        let mut d = Decoder::new(Framing::Json, Limits::default());
        d.feed(&[b'['; 64]);
        d.feed(&[b']'; 64]);
        assert!(d.next_value().unwrap().is_some());
        let mut d = Decoder::new(Framing::Cbor, Limits::default());
        d.feed(&[0x81; 63]);
        d.feed(&[0x80]);
        assert!(d.next_value().unwrap().is_some());
    }

    #[test]
    fn huge_declared_lengths_fail_without_allocating() {
        let cases: [&[u8]; 5] = [
            // byte string of 2^60 bytes, alone and inside an array
            &[0x5b, 0x10, 0, 0, 0, 0, 0, 0, 0],
            &[0x82, 0x40, 0x7b, 0x10, 0, 0, 0, 0, 0, 0, 0, b'a'],
            // array and map of 2^60 elements
            &[0x9b, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x01],
            &[0xbb, 0x10, 0, 0, 0, 0, 0, 0, 0],
            // chunk of an indefinite string
            &[0x5f, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ];
        for bytes in cases {
            for piece in [bytes.len(), 1] {
                let mut d = Decoder::new(Framing::Cbor, Limits::default());
                let mut err = None;
                for c in bytes.chunks(piece) {
                    d.feed(c);
                    err = err.or(first_error(&mut d));
                }
                assert!(
                    matches!(err, Some(DecodeError::TooLarge { .. })),
                    "{bytes:02x?}: {err:?}"
                );
            }
        }
        // Below the limit a declared length just means "wait for more".
        let limits = Limits {
            max_depth: 64,
            max_message: 1000,
        };
        let mut d = Decoder::new(Framing::Cbor, limits);
        d.feed(&[0x82, 0x59, 0x01, 0xf4]); // 500-byte string
        assert_eq!(d.next_value(), Ok(None));
        let mut d = Decoder::new(Framing::Cbor, limits);
        d.feed(&[0x82, 0x59, 0x07, 0xd0]); // 2000-byte string
        assert!(matches!(d.next_value(), Err(DecodeError::TooLarge { .. })));
        // JSON has no declared lengths: an unfinished text is cut off at the limit.
        let mut d = Decoder::new(Framing::Json, limits);
        d.feed(b"[\"");
        for _ in 0..20 {
            d.feed(&[b'a'; 100]);
            if d.next_value().is_err() {
                break;
            }
        }
        assert!(matches!(d.next_value(), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b"}"[..],
            b"x",
            b"\xff",
            b"[1,2",
            b"\"\\q\"",
            b"[nan]",
            b"[1,]",
        ] {
            let mut d = Decoder::new(Framing::Json, Limits::default());
            d.feed(bad);
            d.feed(b"]]]");
            assert!(
                first_error(&mut d).is_some(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &[0xff][..],
            &[0x1c],
            &[0xe0],
            &[0x81, 0xff],
            &[0x7f, 0x01, 0xff],
        ] {
            let mut d = Decoder::new(Framing::Cbor, Limits::default());
            d.feed(bad);
            assert!(first_error(&mut d).is_some(), "{bad:02x?}");
        }
    }

    /// xorshift64*: a deterministic generator, enough to shake the decoders (also used by
    /// the limit checker's tests).
    pub(super) struct Rng(pub(super) u64);
    impl Rng {
        pub(super) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(super) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let json_alphabet = b"[]{}\",:0123456789-+.eEtrufalsn \\u\xc3\xa9\xff\x01dD";
        let mut seed_frames = Vec::new();
        for f in [Framing::Json, Framing::Cbor] {
            let mut b = Vec::new();
            let m = msg![
                "tag",
                -7,
                1.5,
                "é\u{1f680}",
                Value::Bytes(vec![0xff]),
                u64::MAX
            ];
            encode_frame(f, "port", m.as_slice(), &mut b);
            seed_frames.push((f, b));
        }
        let limits = Limits {
            max_depth: 16,
            max_message: 1 << 16,
        };
        for case in 0..10_000 {
            let f = if case % 2 == 0 {
                Framing::Json
            } else {
                Framing::Cbor
            };
            let len = rng.below(64);
            let bytes: Vec<u8> = match case % 3 {
                // Mutations of a valid frame.
                0 => {
                    let (_, seed) = &seed_frames[case % 2];
                    let mut b = seed.clone();
                    for _ in 0..1 + rng.below(4) {
                        let i = rng.below(b.len());
                        b[i] = rng.next() as u8;
                    }
                    b.truncate(rng.below(b.len() + 1));
                    b
                }
                // Random bytes, biased to JSON structure for JSON.
                1 if f == Framing::Json => (0..len)
                    .map(|_| json_alphabet[rng.below(json_alphabet.len())])
                    .collect(),
                _ => (0..len).map(|_| rng.next() as u8).collect(),
            };
            let mut d = Decoder::new(f, limits);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let (a, b) = rest.split_at(1 + rng.below(rest.len()));
                rest = b;
                d.feed(a);
                if first_error(&mut d).is_some() {
                    break;
                }
            }
            assert!(d.buffered() <= bytes.len());
        }
    }

    /// Frames and the first error from `bytes` read the way a connection reads (`fill`
    /// with read sizes from `step`, `frames_into_max`), and whether a string was detached.
    fn read_frames(
        framing: Framing,
        limits: Limits,
        bytes: &[u8],
        mut step: impl FnMut() -> usize,
    ) -> (Vec<(Str, Msg)>, Option<DecodeError>, bool) {
        let mut d = Decoder::new(framing, limits);
        let mut got = Vec::new();
        let mut detached = false;
        let mut rest = bytes;
        loop {
            if let Err(e) = d.frames_into_max(&mut got, 3) {
                return (got, Some(e), detached);
            }
            detached |= d.tail.is_some();
            if rest.is_empty() {
                break;
            }
            rest = &rest[d.fill(rest, step().max(1))..];
        }
        loop {
            match d.frames_into(&mut got) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return (got, Some(e), detached),
            }
        }
        if d.buffered() > 0 {
            // A malformed item the completeness scan takes for an unfinished one.
            let e = DecodeError::Syntax {
                framing,
                offset: u64::MAX,
                reason: "unfinished",
            };
            return (got, Some(e), detached);
        }
        (got, None, detached)
    }

    /// The same through `feed` of everything and `next_value` (which never detaches).
    fn reference_frames(
        framing: Framing,
        limits: Limits,
        bytes: &[u8],
    ) -> (Vec<(Str, Msg)>, Option<DecodeError>) {
        let mut d = Decoder::new(framing, limits);
        d.feed(bytes);
        let mut got = Vec::new();
        loop {
            match d.next_value() {
                Ok(Some(v)) => match decode_frame(v) {
                    Ok(f) => got.push(f),
                    Err(error) => {
                        let e = DecodeError::BadFrame { offset: 0, error };
                        return (got, Some(e));
                    }
                },
                Ok(None) => return (got, None),
                Err(e) => return (got, Some(e)),
            }
        }
    }

    #[test]
    fn long_json_strings_are_received_apart_and_decode_the_same() {
        let long = |n: usize, c: char| c.to_string().repeat(n);
        let with = |n: usize, at: usize, s: &str| {
            let mut t = long(n, 'x');
            t.insert_str(at, s);
            t
        };
        let frames = vec![
            (Str::from("a"), msg!["small", 1]),
            (Str::from("b"), msg!["bulk", 7, long(DETACH_MIN * 3, 'x')]),
            (Str::from("c"), msg![long(DETACH_MIN + 1, 'é')]),
            (Str::from("d"), msg!["emoji", long(DETACH_MIN, '🚀')]),
            // Escapes before, at and well after the point where it is detached.
            (Str::from("e"), msg!["q", with(DETACH_MIN * 2, 10, "\"")]),
            (
                Str::from("f"),
                msg!["q", with(DETACH_MIN * 2, DETACH_MIN, "\\")],
            ),
            (
                Str::from("g"),
                msg!["q", with(DETACH_MIN * 3, DETACH_MIN * 2 + 3, "\n")],
            ),
            (
                Str::from("h"),
                msg!["q", with(DETACH_MIN * 2, DETACH_MIN * 2, "\u{1}")],
            ),
            // A long string that does not end the frame.
            (Str::from("i"), msg![long(DETACH_MIN * 2, 'y'), 5, "z"]),
            (
                Str::from("j"),
                msg![msg![1, "x"], long(DETACH_MIN * 2, 'w')],
            ),
            (Str::from("k"), msg!["last"]),
        ];
        let mut bytes = Vec::new();
        for (p, m) in &frames {
            encode_frame(Framing::Json, p, m.as_slice(), &mut bytes);
        }
        // Whitespace inside and between frames.
        let mut spaced = Vec::new();
        encode_frame(
            Framing::Json,
            "s",
            msg!["x", long(DETACH_MIN * 2, 'v')].as_slice(),
            &mut spaced,
        );
        spaced.pop();
        spaced.extend_from_slice(b" \n\t ]  ");
        bytes.extend_from_slice(&spaced);
        let mut want = frames.clone();
        want.push((Str::from("s"), msg!["x", long(DETACH_MIN * 2, 'v')]));
        assert_eq!(
            reference_frames(Framing::Json, Limits::default(), &bytes),
            (want.clone(), None)
        );
        for step in [1000, 4093, 65_539, 200_000, 1 << 20, bytes.len()] {
            let (got, err, detached) =
                read_frames(Framing::Json, Limits::default(), &bytes, || step);
            assert_eq!(err, None, "step {step}");
            assert!(got == want, "step {step}");
            assert!(detached || step >= 1 << 20, "step {step} never detached");
            // A string received apart keeps no large reserve.
            for (_, m) in &got {
                if let Some(Value::Str(s)) = m.as_slice().last() {
                    assert!(s.capacity() <= 2 * s.len().max(64), "step {step}");
                }
            }
        }
        let mut rng = Rng(42);
        for _ in 0..20 {
            let (got, err, _) = read_frames(Framing::Json, Limits::default(), &bytes, || {
                1 + rng.below(150_000)
            });
            assert_eq!(err, None);
            assert!(got == want);
        }
        // Frames and values mixed: a detached body is put back.
        let mut d = Decoder::new(Framing::Json, Limits::default());
        let mut got = Vec::new();
        let cut = 150_000;
        d.feed(&bytes[..cut]);
        d.frames_into(&mut got).unwrap();
        assert!(d.tail.is_some());
        d.feed(&bytes[cut..]);
        while let Some(v) = d.next_value().unwrap() {
            got.push(decode_frame(v).unwrap());
        }
        assert!(got == want);
    }

    #[test]
    fn long_json_strings_random_contents_and_reads() {
        // Strings with specials at random places (or none), split at random: the same as
        // the reference decode, including the first error and its offset.
        let mut rng = Rng(0x5eed);
        let pieces: [&[u8]; 9] = [
            b"\"",
            b"\\\\",
            b"\\\"",
            b"\\n",
            b"\\u00e9",
            b"\xc3\xa9",
            b"\x01",
            b"\xff",
            b"\\",
        ];
        for case in 0..150 {
            let n = DETACH_MIN + rng.below(3 * DETACH_MIN);
            let mut body: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let specials = if case % 3 == 0 { 0 } else { 1 + rng.below(3) };
            for _ in 0..specials {
                let at = rng.below(body.len());
                let p = pieces[rng.below(pieces.len())];
                body.splice(at..at, p.iter().copied());
            }
            let mut bytes = Vec::new();
            encode_frame(Framing::Json, "p0", msg!["m", 1].as_slice(), &mut bytes);
            bytes.extend_from_slice(b"[\"p1\",\"bulk\",\"");
            bytes.extend_from_slice(&body);
            bytes.extend_from_slice(b"\"]");
            encode_frame(Framing::Json, "p2", msg!["m", 2].as_slice(), &mut bytes);
            let limits = Limits {
                max_depth: 8,
                max_message: if case % 7 == 0 { n } else { 1 << 20 },
            };
            let (want, want_err) = reference_frames(Framing::Json, limits, &bytes);
            let step = 1 + rng.below(100_000);
            let (got, err, _) = read_frames(Framing::Json, limits, &bytes, || step);
            assert!(got == want, "case {case}");
            match (&err, &want_err) {
                // The limit is reported when it is first exceeded, in a stream possibly
                // before an error that parsing it all at once finds first.
                (Some(DecodeError::TooLarge { .. }), Some(_))
                | (Some(_), Some(DecodeError::TooLarge { .. })) => {}
                // Bad bytes inside what the scan takes for an open string: the item waits
                // for more (as it always did), where parsing it all at once fails.
                (
                    Some(DecodeError::Syntax {
                        offset: u64::MAX, ..
                    }),
                    Some(_),
                ) => {}
                _ => assert_eq!(err, want_err, "case {case}"),
            }
        }
    }
}
