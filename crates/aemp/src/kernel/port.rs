//! One local port: its handlers and its monitors.
//!
//! Handlers are boxed closures run by the node's dispatcher. While a handler runs it is taken
//! out of its slot (so that it can be given `&mut` access to the kernel) and the slot is
//! marked `HandlerSlot::Running`. Afterwards the handler goes back only if its slot is still
//! `Running`: if `rcv` replaced or removed it meanwhile, that change stands. Changes to other
//! slots of the same port do not affect it.

use super::context::Cx;
use super::monitor::MonAction;
use crate::error::HandlerResult;
use aemp_proto::{Msg, NodeId, Str};

/// A message handler: gets the handler context and the message. For a tag handler the tag has
/// already been removed from the message.
pub type Handler = Box<dyn FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static>;

/// One handler position of a port.
#[derive(Default)]
pub(crate) enum HandlerSlot {
    /// No handler.
    #[default]
    Empty,
    /// A handler, ready to run.
    Idle(Handler),
    /// The handler is running right now (it was taken out).
    Running,
}

impl HandlerSlot {
    fn is_set(&self) -> bool {
        !matches!(self, HandlerSlot::Empty)
    }

    /// True while its handler is taken out.
    pub(crate) fn is_running(&self) -> bool {
        matches!(self, HandlerSlot::Running)
    }
}

/// Where a message goes inside a port: the default handler, or the tag handler at an index
/// (checked against the tag again before use, since `rcv` may reorder the list meanwhile).
pub(crate) enum Route {
    Default,
    Tag(usize),
}

/// String equality for the short strings of tags, port names and node IDs, without a
/// `memcmp` call (see [`aemp_text::short_eq`]).
#[inline]
pub(crate) fn short_eq(a: &str, b: &str) -> bool {
    aemp_text::short_eq(a.as_bytes(), b.as_bytes())
}

/// A live local port.
///
/// Kept small on purpose: an idle port with one default handler is the handler box plus this
/// struct, and the benchmark L3 holds it to at most 300 bytes of RSS.
#[derive(Default)]
pub(crate) struct Port {
    /// Handler for messages whose tag has no handler of its own.
    pub default: HandlerSlot,
    /// Tag handlers and monitors, boxed together: many ports have neither, and an idle port
    /// should cost as little as possible.
    pub extra: Option<Box<PortExtra>>,
}

/// The less common parts of a port.
#[derive(Default)]
pub(crate) struct PortExtra {
    /// Per-tag handlers (string equality on element 0).
    pub tags: Vec<(Str, HandlerSlot)>,
    /// Who watches this port.
    pub watch: Watchers,
}

/// The monitors of one port.
#[derive(Default)]
pub(crate) struct Watchers {
    /// Local monitors: guard id and action. Fired once, in registration order, on kill.
    pub monitors: Vec<(u64, MonAction)>,
    /// Remote nodes that monitor this port (sent `mon1`); each gets a `kil0` on kill.
    pub remote: Vec<NodeId>,
}

impl Port {
    /// The watchers, created on first use.
    pub(crate) fn watchers(&mut self) -> &mut Watchers {
        &mut self.extra.get_or_insert_with(Default::default).watch
    }

    /// The watchers, if any were ever added.
    pub(crate) fn watchers_mut(&mut self) -> Option<&mut Watchers> {
        self.extra.as_mut().map(|e| &mut e.watch)
    }

    /// Takes the watchers out (on kill).
    pub(crate) fn take_watchers(&mut self) -> Watchers {
        self.extra
            .as_mut()
            .map(|e| std::mem::take(&mut e.watch))
            .unwrap_or_default()
    }

    fn tags(&self) -> &[(Str, HandlerSlot)] {
        self.extra.as_ref().map_or(&[], |e| &e.tags[..])
    }

    fn tags_mut(&mut self) -> &mut Vec<(Str, HandlerSlot)> {
        &mut self.extra.get_or_insert_with(Default::default).tags
    }

    /// Which handler takes a message with this tag, if any. Always inlined (three callers,
    /// every local message): left to the compiler, whether it was inlined changed with
    /// unrelated code elsewhere, and with it L1 by about 35 instructions per message.
    #[inline(always)]
    pub(crate) fn route(&self, tag: Option<&str>) -> Option<Route> {
        if let Some(tag) = tag {
            // A plain loop: `Iterator::position` was sometimes left out of line (L1 +70).
            for (i, (t, _)) in self.tags().iter().enumerate() {
                if short_eq(t, tag) {
                    return Some(Route::Tag(i));
                }
            }
        }
        self.default.is_set().then_some(Route::Default)
    }

    /// Whether the port has tag handlers.
    #[inline]
    pub(crate) fn has_tags(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| !e.tags.is_empty())
    }

    /// Takes the handler out to run it (its slot becomes `Running`). Always inlined, like
    /// [`Port::route`].
    #[inline(always)]
    pub(crate) fn take(&mut self, route: &Route) -> Option<Handler> {
        let slot = match *route {
            Route::Default => &mut self.default,
            Route::Tag(i) => &mut self.extra.as_mut()?.tags.get_mut(i)?.1,
        };
        match std::mem::replace(slot, HandlerSlot::Running) {
            HandlerSlot::Idle(h) => Some(h),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Puts a handler back after it ran, unless its slot was changed meanwhile. `tag` is
    /// the tag it ran for (the list may have been reordered by `rcv` while it ran).
    #[inline]
    pub(crate) fn restore(&mut self, route: &Route, tag: &str, h: Handler) {
        let slot = match *route {
            Route::Default => Some(&mut self.default),
            Route::Tag(i) => self.extra.as_mut().and_then(|e| {
                let at = match e.tags.get(i) {
                    Some((t, _)) if short_eq(t, tag) => Some(i),
                    _ => e.tags.iter().position(|(t, _)| short_eq(t, tag)),
                };
                at.map(|i| &mut e.tags[i].1)
            }),
        };
        if let Some(slot) = slot {
            if matches!(slot, HandlerSlot::Running) {
                *slot = HandlerSlot::Idle(h);
            }
        }
    }

    /// Sets or removes the default handler (`tag == None`) or a tag handler.
    pub(crate) fn set_handler(&mut self, tag: Option<&str>, h: Option<Handler>) {
        let new = h.map_or(HandlerSlot::Empty, HandlerSlot::Idle);
        match tag {
            None => self.default = new,
            Some(tag) => match self.tags().iter().position(|(t, _)| t == tag) {
                Some(i) if new.is_set() => self.tags_mut()[i].1 = new,
                Some(i) => {
                    self.tags_mut().remove(i);
                }
                None if new.is_set() => self.tags_mut().push((Str::from(tag), new)),
                None => {}
            },
        }
    }
}

/// Perl's text for an unhandled message: the tag shortened to 30 characters, with
/// non-printable characters replaced by `.`.
pub(crate) fn unhandled_text(tag: Option<&aemp_proto::Value>) -> String {
    let tag = match tag {
        Some(aemp_proto::Value::Str(s)) => s.to_string(),
        Some(aemp_proto::Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    let short: String = tag
        .chars()
        .take(30)
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    format!("no callback found for message '{short}'")
}
