//! Replying to a request from outside a handler (e.g. to a message taken from an
//! [`Inbox`](crate::Inbox)).

use super::Node;
use crate::error::Error;
use aemp_proto::typed::MsgExt;
use aemp_proto::Msg;

impl Node {
    /// Sends `msg` to the reply port of `request`: its last element, where
    /// [`Node::cal`] (and Perl's `cal`) put it. Fails with [`Error::Typed`] when the last
    /// element is not a port ID, and with what [`Node::snd`] returns.
    ///
    /// ```
    /// use aemp::{msg, Node};
    /// use std::future::IntoFuture;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// let node = Node::new("reply-doc/%u")?;
    /// let mut inbox = node.inbox(8);
    /// // The request is sent when the call is first polled: run it as a task.
    /// let call = tokio::spawn(node.cal(inbox.port(), msg!["time"]).into_future());
    /// let request = inbox.recv().await.unwrap();
    /// node.reply(&request, msg![12.5])?;
    /// assert_eq!(call.await.unwrap(), Ok(msg![12.5]));
    /// # Ok(()) }
    /// ```
    pub fn reply(&self, request: &Msg, msg: impl Into<Msg>) -> Result<(), Error> {
        let to = request.reply_port()?;
        self.snd(&to, msg)
    }
}
