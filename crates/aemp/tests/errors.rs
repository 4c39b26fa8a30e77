//! Failures that explain themselves: how reasons and errors print, and that every error
//! type of the crate converts into `aemp::Error` (so `?` works across the API).

mod common;

use aemp::{msg, CalError, Error, InboxClosed, Reason, Value};
use common::{node, within};
use std::time::Duration;

#[test]
fn reason_displays_like_the_tool_prints_values() {
    let r = Reason::from(vec![
        "transport_error".into(),
        "n1".into(),
        "connect timeout".into(),
    ]);
    assert_eq!(
        r.to_string(),
        r#"["transport_error","n1","connect timeout"]"#
    );
    let nested = Reason::from(vec![
        "x".into(),
        Value::List(vec![1.into(), Value::Null]),
        Value::Bytes(vec![0xab]),
    ]);
    assert_eq!(nested.to_string(), r#"["x",[1,null],h'ab']"#);
    assert_eq!(Reason::normal().to_string(), "normal");
    assert_eq!(Reason::from(vec![]).to_string(), "normal");
    // A non-empty reason never prints as `normal`.
    assert_eq!(
        Reason::from(vec!["normal".into()]).to_string(),
        r#"["normal"]"#
    );
}

#[test]
fn reason_is_ergonomic() {
    let r: Reason = vec![Value::from("die"), Value::from("oops")].into();
    assert!(!r.is_normal());
    assert!(Reason::normal().is_normal());
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].as_str(), Some("die"));
    assert_eq!(r, vec![Value::from("die"), Value::from("oops")]);
    assert_eq!(vec![Value::from("die"), Value::from("oops")], r);
    assert_eq!(
        r.clone().into_vec(),
        vec![Value::from("die"), Value::from("oops")]
    );
    let collected: Reason = r.iter().cloned().collect();
    assert_eq!(collected, r);
}

#[test]
fn errors_that_carry_a_reason_display_it() {
    let died = CalError::TargetDied(vec!["die".into(), "no such job".into()].into());
    assert_eq!(
        died.to_string(),
        r#"no reply: target port died: ["die","no such job"]"#
    );
    let closed = InboxClosed(vec!["inbox_overflow".into(), 4.into()].into());
    assert_eq!(
        closed.to_string(),
        r#"inbox port died: ["inbox_overflow",4]"#
    );
    assert_eq!(
        Error::from(died).to_string(),
        r#"no reply: target port died: ["die","no such job"]"#
    );
}

#[tokio::test(flavor = "current_thread")]
async fn kil_takes_anything_that_makes_a_reason() {
    let node = node();
    let a = node.port_with(|_, _| Ok(()));
    let b = node.port_with(|_, _| Ok(()));
    let (da, db) = (node.monitor(&a), node.monitor(&b));
    node.kil(&a, vec!["custom".into()]).unwrap();
    node.kil(&b, Reason::normal()).unwrap();
    assert_eq!(within(da).await, vec![Value::from("custom")]);
    assert!(within(db).await.is_normal());
}

// ---- every error converts into aemp::Error ----------------------------------------------

fn cal_error() -> Result<(), Error> {
    Err(CalError::Timeout)?
}

fn inbox_closed() -> Result<(), Error> {
    Err(InboxClosed(Reason::normal()))?
}

fn tls_error() -> Result<(), Error> {
    Err(aemp::TlsError::MissingKey)?
}

fn transport_error() -> Result<(), Error> {
    Err(aemp::TransportError::Certificate("bad".into()))?
}

fn addr_error() -> Result<(), Error> {
    Err(aemp::config::AddrError::BadPort("x".into()))?
}

fn config_error() -> Result<(), Error> {
    Err(aemp::config::ConfigError::ParentLoop("p".into()))?
}

fn port_id_error() -> Result<(), Error> {
    let _: aemp::PortId = "#no-node".parse()?;
    Ok(())
}

fn node_id_error() -> Result<(), Error> {
    aemp::NodeId::new("")?;
    Ok(())
}

fn typed_error() -> Result<(), Error> {
    let _: (u64,) = aemp::typed::from_msg(msg!["text"])?;
    Ok(())
}

fn io_error() -> Result<(), Error> {
    Err(std::io::Error::other("disk"))?
}

fn limit_error(node: &aemp::Node) -> Result<(), Error> {
    let mut v = Value::Null;
    for _ in 0..200 {
        v = Value::List(vec![v]);
    }
    node.snd(&node.id().port("x"), msg!["deep", v])?;
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn every_error_converts_with_the_question_mark() {
    assert!(matches!(cal_error(), Err(Error::Cal(CalError::Timeout))));
    assert!(matches!(inbox_closed(), Err(Error::InboxClosed(_))));
    assert!(matches!(tls_error(), Err(Error::Tls(_))));
    assert!(matches!(transport_error(), Err(Error::Transport(_))));
    assert!(matches!(addr_error(), Err(Error::Addr(_))));
    assert!(matches!(config_error(), Err(Error::Config(_))));
    assert!(matches!(port_id_error(), Err(Error::PortId(_))));
    assert!(matches!(node_id_error(), Err(Error::NodeId(_))));
    assert!(matches!(typed_error(), Err(Error::Typed(_))));
    assert!(matches!(io_error(), Err(Error::Io(_))));
    let node = node();
    assert!(matches!(limit_error(&node), Err(Error::Refused(_))));

    // And through the real API: a cal that times out, an inbox that died.
    async fn ask(node: &aemp::Node) -> Result<aemp::Msg, Error> {
        let silent = node.port_with(|_, _| Ok(()));
        Ok(node
            .cal(&silent, msg!["q"])
            .timeout(Duration::from_millis(10))
            .await?)
    }
    assert!(matches!(
        within(ask(&node)).await,
        Err(Error::Cal(CalError::Timeout))
    ));
    async fn drain(node: &aemp::Node) -> Result<aemp::Msg, Error> {
        let mut inbox = node.inbox(1);
        node.kil(inbox.port(), vec!["gone".into()])?;
        Ok(inbox.next().await?)
    }
    assert!(matches!(
        within(drain(&node)).await,
        Err(Error::InboxClosed(InboxClosed(r))) if r == vec![Value::from("gone")]
    ));
}
