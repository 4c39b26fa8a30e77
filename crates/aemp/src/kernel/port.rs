//! One local port: its handlers and its monitors.
//!
//! Handlers are boxed closures run by the node's dispatcher. While a handler runs it is taken
//! out of its slot (so that it can be given `&mut` access to the kernel); the port's `gen`
//! counter tells afterwards whether `rcv` changed the slots meanwhile, in which case the
//! running handler is not put back.

use super::context::Cx;
use super::monitor::MonAction;
use crate::error::HandlerResult;
use aemp_proto::{Msg, NodeId, Str};

/// A message handler: gets the handler context and the message. For a tag handler the tag has
/// already been removed from the message.
pub type Handler = Box<dyn FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static>;

/// Where a message goes inside a port.
pub(crate) enum Slot {
    Default,
    Tag(usize),
}

/// A live local port.
///
/// Kept small on purpose: an idle port with one default handler is the handler box plus this
/// struct, and the benchmark L3 holds it to at most 300 bytes of RSS.
#[derive(Default)]
pub(crate) struct Port {
    /// Handler for messages whose tag has no handler of its own.
    pub default: Option<Handler>,
    /// Per-tag handlers (string equality on element 0). `None` while that handler runs.
    pub tags: Vec<(Str, Option<Handler>)>,
    /// Local monitors: guard id and action. Fired once, in registration order, on kill.
    pub monitors: Vec<(u64, MonAction)>,
    /// Remote nodes that monitor this port (sent `mon1`); each gets a `kil0` on kill.
    pub remote_monitors: Vec<NodeId>,
    /// Bumped by every change of the handler slots (see module docs).
    pub gen: u32,
}

impl Port {
    /// Which slot takes a message with this tag, if any handler could.
    pub(crate) fn route(&self, tag: Option<&str>) -> Option<Slot> {
        if let Some(tag) = tag {
            if let Some(i) = self.tags.iter().position(|(t, _)| t == tag) {
                return Some(Slot::Tag(i));
            }
        }
        self.default.as_ref().map(|_| Slot::Default)
    }

    pub(crate) fn take(&mut self, slot: &Slot) -> Option<Handler> {
        match *slot {
            Slot::Default => self.default.take(),
            Slot::Tag(i) => self.tags.get_mut(i).and_then(|(_, h)| h.take()),
        }
    }

    pub(crate) fn restore(&mut self, slot: &Slot, h: Handler) {
        match *slot {
            Slot::Default => self.default = Some(h),
            Slot::Tag(i) => {
                if let Some((_, s)) = self.tags.get_mut(i) {
                    *s = Some(h);
                }
            }
        }
    }

    /// Sets or removes the default handler (`tag == None`) or a tag handler.
    pub(crate) fn set_handler(&mut self, tag: Option<&str>, h: Option<Handler>) {
        self.gen = self.gen.wrapping_add(1);
        match (tag, h) {
            (None, h) => self.default = h,
            (Some(tag), Some(h)) => match self.tags.iter_mut().find(|(t, _)| t == tag) {
                Some((_, slot)) => *slot = Some(h),
                None => self.tags.push((Str::from(tag), Some(h))),
            },
            (Some(tag), None) => self.tags.retain(|(t, _)| t != tag),
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
