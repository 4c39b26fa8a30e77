//! Replying to a request in one call: the reply goes to the port that `cal` appended as the
//! request's last element.

use super::context::Cx;
use crate::error::Error;
use aemp_proto::typed::MsgExt;
use aemp_proto::Msg;

impl Cx<'_> {
    /// Sends `msg` to the reply port of `request`: its last element, where
    /// [`Node::cal`](crate::Node::cal) (and Perl's `cal`) put it. Works on the message a tag
    /// handler gets (the tag removed) as well as on a whole message.
    ///
    /// Fails with [`Error::Typed`] when the last element is not a port ID (the error names
    /// the position and what was found, e.g. `element 1: expected a port ID, found integer
    /// `5``), and with what [`Cx::try_snd`] returns; returned from a handler with `?`, it
    /// kills the port with `("die", text)`.
    ///
    /// ```
    /// use aemp::{msg, Node};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// let node = Node::new("reply-doc/%u")?;
    /// let adder = node
    ///     .port()
    ///     .on("add", |cx, m| {
    ///         let sum = m[0].as_i64().unwrap_or(0) + m[1].as_i64().unwrap_or(0);
    ///         cx.reply(&m, msg!["sum", sum])?;
    ///         Ok(())
    ///     })
    ///     .build();
    /// assert_eq!(node.cal(&adder, msg!["add", 2, 3]).await.unwrap(), msg!["sum", 5]);
    /// # Ok(()) }
    /// ```
    pub fn reply(&mut self, request: &Msg, msg: impl Into<Msg>) -> Result<(), Error> {
        let to = request.reply_port()?;
        self.try_snd(&to, msg)
    }
}
