//! The `services` setting: registered service functions start when the node is configured;
//! unknown names are a configure-time error.

use aemp::config::ConfigError;
use aemp::{msg, Config, Error, Node, Value};
use parking_lot::Mutex;
use std::sync::Arc;

fn cfg(services: serde_json::Value) -> Config {
    let mut args = vec![
        serde_json::json!("svc-test"),
        serde_json::json!("services"),
        services,
    ];
    args.extend([
        serde_json::json!("nodeid"),
        serde_json::json!("svc/%u"),
        serde_json::json!("binds"),
        serde_json::json!(["127.0.0.1:0"]),
        serde_json::json!("norc"),
        serde_json::json!(true),
    ]);
    aemp::config::ConfigBuilder::from_args(&args)
        .expect("args")
        .build()
        .expect("config")
}

type Log = Arc<Mutex<Vec<(String, Vec<Value>)>>>;

fn recorder(log: &Log, name: &'static str) -> impl Fn(&Node, Vec<Value>) -> Result<(), Error> {
    let log = log.clone();
    move |node, args| {
        assert!(!node.is_shut_down());
        log.lock().push((name.to_string(), args));
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn configured_services_start_in_order_with_their_arguments() {
    let log = Log::default();
    let node = Node::builder(cfg(serde_json::json!([
        "My::Worker::",
        "AnyEvent::MP::Global",
        ["start_cache", 64, "lru"],
        "My::Worker"
    ])))
    .service("My::Worker", recorder(&log, "worker"))
    .service("start_cache::", recorder(&log, "cache"))
    .service("never_named", recorder(&log, "never"))
    .configure()
    .await
    .expect("configure");
    assert_eq!(
        *log.lock(),
        vec![
            ("worker".to_string(), vec![]),
            (
                "cache".to_string(),
                vec![Value::from(64), Value::from("lru")]
            ),
            ("worker".to_string(), vec![]),
        ]
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_service_sets_up_ports_that_answer() {
    let node = Node::builder(cfg(serde_json::json!(["Echo::"])))
        .service("Echo", |node, _| {
            let port = node
                .port()
                .on("ping", |cx, m| {
                    cx.reply(&m, msg!["pong"])?;
                    Ok(())
                })
                .build();
            node.db_reg("echo", &port, Value::Null)?;
            Ok(())
        })
        .configure()
        .await
        .expect("configure");
    let keys = tokio::time::timeout(std::time::Duration::from_secs(10), node.db_keys("echo"))
        .await
        .expect("db_keys in time")
        .expect("db_keys");
    assert_eq!(keys.len(), 1);
    let port: aemp::PortId = keys[0].parse().unwrap();
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        node.cal(&port, msg!["ping"]),
    )
    .await
    .expect("reply in time");
    assert_eq!(r, Ok(msg!["pong"]));
    node.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn an_unknown_service_is_a_configure_time_error() {
    let log = Log::default();
    let err = Node::builder(cfg(serde_json::json!(["Known", "Perl::Only::"])))
        .service("Known", recorder(&log, "known"))
        .configure()
        .await
        .unwrap_err();
    match &err {
        Error::Config(ConfigError::UnknownService { name, registered }) => {
            assert_eq!(name, "Perl::Only::");
            assert_eq!(registered, &["Known".to_string()]);
        }
        other => panic!("expected UnknownService, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "configuration: unknown service \"Perl::Only::\": no service function of that name is \
         registered (registered: Known; built in: AnyEvent::MP::Global)"
    );
    // Checked before anything starts: not even the known service ran.
    assert!(log.lock().is_empty());
    // Node::configure has no service functions at all.
    let err = Node::configure(cfg(serde_json::json!(["f"])))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: unknown service \"f\": no service function of that name is registered \
         (registered: none; built in: AnyEvent::MP::Global)"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_global_service_is_built_in() {
    let node = Node::configure(cfg(serde_json::json!([
        "AnyEvent::MP::Global::",
        "AnyEvent::MP::Global"
    ])))
    .await
    .expect("configure");
    node.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_service_fails_configure_and_stops_the_node() {
    let seen: Arc<Mutex<Option<Node>>> = Arc::default();
    let s2 = seen.clone();
    let err = Node::builder(cfg(serde_json::json!(["broken"])))
        .service("broken", move |node, _| {
            *s2.lock() = Some(node.clone());
            Err(Error::Db("no database today".into()))
        })
        .configure()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: service \"broken\" failed to start: database: no database today"
    );
    let node = seen.lock().take().expect("the service ran");
    assert!(node.is_shut_down());
}
