//! Configuring a node with the service functions its `services` setting names.

use super::Node;
use crate::config::{Config, ConfigError, Service};
use crate::error::Error;
use aemp_proto::codec::Limits;
use aemp_proto::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A service function: started once when the node is configured, with the node and the
/// arguments of its `services` entry (`[name, args...]`; none for a plain name). It sets the
/// service up (creates ports, registers spawn functions, database entries...) and returns; an
/// error makes configuring the node fail.
pub type ServiceFn = Arc<dyn Fn(&Node, Vec<Value>) -> Result<(), Error> + Send + Sync + 'static>;

/// Configures a node: [`Node::builder`], then [`NodeBuilder::service`] for each service the
/// configuration may name, then [`NodeBuilder::configure`].
///
/// The configuration's `services` entries (see [`Service`]) are looked up by name among the
/// registered functions: `"My::Worker::"` (a module, in Perl) and `"My::Worker"` (a function)
/// both find the function registered as `"My::Worker"`. `AnyEvent::MP::Global` is built in:
/// it makes the node a global node and needs no function. A name that is neither registered
/// nor built in fails [`NodeBuilder::configure`] before anything is bound, with
/// [`Error::Config`]`(`[`ConfigError::UnknownService`]`)`.
///
/// ```
/// use aemp::{msg, Config, Node};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), aemp::Error> {
/// let cfg = Config::builder()
///     .norc(true)
///     .nodeid("svc-doc/%u")
///     .binds(["127.0.0.1:0"])
///     .services(["Echo::", "AnyEvent::MP::Global"])
///     .build()?;
/// let node = Node::builder(cfg)
///     .service("Echo", |node, _args| {
///         let port = node.port().on("ping", |cx, m| {
///             cx.reply(&m, msg!["pong"])?;
///             Ok(())
///         }).build();
///         node.db_reg("echo", &port, aemp::Value::Null)?;
///         Ok(())
///     })
///     .configure()
///     .await?;
/// # node.shutdown().await;
///
/// // A name nothing is registered under is an error.
/// let cfg = Config::builder().norc(true).nodeid("svc-doc/%u").binds(["127.0.0.1:0"])
///     .services(["My::Worker::"]).build()?;
/// let err = Node::configure(cfg).await.unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "configuration: unknown service \"My::Worker::\": no service function of that name is \
///      registered (registered: none; built in: AnyEvent::MP::Global)"
/// );
/// # Ok(()) }
/// ```
#[must_use = "a node builder does nothing until .configure()"]
pub struct NodeBuilder {
    cfg: Config,
    limits: Limits,
    services: BTreeMap<String, ServiceFn>,
    data_conn: crate::DataConnLimits,
    data_inits: Vec<(String, crate::DataInitFn)>,
}

impl Node {
    /// Starts configuring a node from `cfg` (see [`NodeBuilder`]); [`Node::configure`] is
    /// `Node::builder(cfg).configure()`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// let cfg = aemp::Config::builder().norc(true).nodeid("b/%u").binds(["127.0.0.1:0"]).build()?;
    /// let node = aemp::Node::builder(cfg)
    ///     .limits(aemp::Limits::default())
    ///     .service("Hello", |node, _args| {
    ///         println!("{} starts", node.id());
    ///         Ok(())
    ///     })
    ///     .configure()
    ///     .await?;
    /// # node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn builder(cfg: Config) -> NodeBuilder {
        NodeBuilder {
            cfg,
            limits: Limits::default(),
            services: BTreeMap::new(),
            data_conn: crate::DataConnLimits::default(),
            data_inits: Vec::new(),
        }
    }
}

/// The name of a `services` entry as configured (for error messages).
fn given(s: &Service) -> &str {
    match s {
        Service::Module(m) => m,
        Service::Function(f) => f,
        Service::Call { func, .. } => func,
    }
}

impl NodeBuilder {
    /// The limits the node applies (see [`Node::configure_with_limits`]).
    pub fn limits(mut self, limits: Limits) -> NodeBuilder {
        self.limits = limits;
        self
    }

    /// The limits of the node's data connections: how many may be set up or open at once,
    /// and how long a data connection's handshake may take (default
    /// [`DataConnLimits::default`](crate::DataConnLimits): 64, 10 s).
    pub fn data_conn_limits(mut self, limits: crate::DataConnLimits) -> NodeBuilder {
        self.data_conn = limits;
        self
    }

    /// Registers the init function `name` for incoming data connections before the node
    /// starts (see [`Node::register_data_init`]).
    pub fn data_init(
        mut self,
        name: &str,
        f: impl Fn(crate::DataConn, Vec<Value>) + Send + Sync + 'static,
    ) -> NodeBuilder {
        self.data_inits.push((name.to_owned(), Arc::new(f)));
        self
    }

    /// Registers the service function `name` (a trailing `::` is ignored), started by
    /// [`NodeBuilder::configure`] if the configuration's `services` name it. Registering a
    /// name again replaces the function.
    pub fn service(
        mut self,
        name: &str,
        f: impl Fn(&Node, Vec<Value>) -> Result<(), Error> + Send + Sync + 'static,
    ) -> NodeBuilder {
        let f: ServiceFn = Arc::new(f);
        self.services
            .insert(name.trim_end_matches("::").to_owned(), f);
        self
    }

    /// Creates the node (as [`Node::configure`] does), then starts the configured services in
    /// their order. Fails before anything is bound when a service name is unknown; when a
    /// service function fails, the node is shut down and the error is
    /// [`ConfigError::ServiceFailed`].
    pub async fn configure(self) -> Result<Node, Error> {
        let NodeBuilder {
            cfg,
            limits,
            services,
            data_conn,
            data_inits,
        } = self;
        let mut start = Vec::new();
        for s in &cfg.services {
            if s.is_global_service() {
                // Built in: the network set-up makes the node global.
                continue;
            }
            match services.get(s.name()) {
                Some(f) => start.push((s.name().to_owned(), f.clone(), s.args().to_vec())),
                None => {
                    return Err(ConfigError::UnknownService {
                        name: given(s).to_owned(),
                        registered: services.keys().cloned().collect(),
                    }
                    .into())
                }
            }
        }
        let node = Node::configure_network(cfg, limits, data_conn).await?;
        for (name, f) in data_inits {
            node.register_data_init(&name, move |conn, args| f(conn, args));
        }
        for (name, f, args) in start {
            if let Err(e) = f(&node, args) {
                node.shutdown().await;
                return Err(ConfigError::ServiceFailed {
                    name,
                    message: e.to_string(),
                }
                .into());
            }
        }
        Ok(node)
    }
}
