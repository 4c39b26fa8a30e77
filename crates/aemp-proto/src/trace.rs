//! Message tracing support: the bounded text of a message for a trace line.
//!
//! A traced node logs every message it sends, receives and delivers; a message can be
//! megabytes long, so its text is cut at [`TRACE_MAX_CHARS`] bytes, and the formatting
//! itself stops there (a large message costs no more to trace than a small one).
//!
//! ```
//! use aemp_proto::{msg, trace::bounded_display};
//! assert_eq!(bounded_display(&msg!["ping", 1], 100), r#"["ping",1]"#);
//! let long = bounded_display(&msg!["x".repeat(1000)], 10);
//! assert_eq!(long, r#"["xxxxxxxx…"#);
//! ```

use std::fmt::{self, Display, Write};

/// The environment variable that turns message tracing on for nodes started while it is
/// set (read by the `aemp` crate at node start): any value but empty and `0`.
pub const TRACE_ENV: &str = "AEMP_TRACE";

/// Whether a value of [`TRACE_ENV`] (`None`: not set) turns tracing on.
pub fn enabled(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

/// Longest message text in a trace line, in bytes (before the `…` that marks a cut).
pub const TRACE_MAX_CHARS: usize = 256;

/// The `Display` text of `v`, cut after at most `max` bytes (at a character boundary) with
/// `…` appended when it was longer. Stops formatting once the limit is reached.
pub fn bounded_display(v: &impl Display, max: usize) -> String {
    let mut w = Bounded {
        out: String::new(),
        max,
        cut: false,
    };
    let _ = write!(w, "{v}");
    if w.cut {
        w.out.push('…');
    }
    w.out
}

struct Bounded {
    out: String,
    max: usize,
    cut: bool,
}

impl Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.max - self.out.len();
        if s.len() <= room {
            self.out.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.out.push_str(&s[..end]);
        self.cut = true;
        // Ends the formatting: nothing more is wanted.
        Err(fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{msg, Value};

    #[test]
    fn cuts_at_the_limit_and_at_character_boundaries() {
        assert_eq!(bounded_display(&msg!["a"], 5), r#"["a"]"#);
        assert_eq!(bounded_display(&msg!["abc"], 5), r#"["abc…"#);
        // "é" is two bytes: a cut inside it moves before it.
        assert_eq!(bounded_display(&msg!["éé"], 4), r#"["é…"#);
        assert_eq!(bounded_display(&msg![], 0), "…");
    }

    #[test]
    fn the_switch() {
        assert!(!enabled(None) && !enabled(Some("")) && !enabled(Some("0")));
        assert!(enabled(Some("1")) && enabled(Some("yes")));
    }

    #[test]
    fn a_huge_message_is_not_formatted_in_full() {
        let big = Value::List((0..1_000_000).map(Value::from).collect::<Vec<_>>());
        let t = std::time::Instant::now();
        let s = bounded_display(&big, TRACE_MAX_CHARS);
        assert!(s.len() <= TRACE_MAX_CHARS + '…'.len_utf8());
        assert!(s.ends_with('…'));
        // Formatting a million numbers takes far longer than the first 256 bytes.
        assert!(t.elapsed() < std::time::Duration::from_millis(500));
    }
}
