//! Node configuration: the rc file, profiles, the merge that yields the
//! effective configuration, node ID expansion, and bind/seed addresses.
//!
//! * [`rc`]: the rc file ([`RcDoc`]): location, relaxed JSON, profiles, saving.
//! * [`addr`]: bind and seed syntax, `*`, resolution, address formatting.
//! * [`nodename`] and [`port_prefix`]: what a node takes from its host and process.
//! * [`find_profile`]: the raw merge (Perl `AnyEvent::MP::Config::find_profile`).
//! * [`Config`] / [`ConfigBuilder`]: the typed, validated result (Perl `configure`).
//!
//! ```no_run
//! # fn main() -> Result<(), aemp::config::ConfigError> {
//! let cfg = aemp::config::Config::builder()
//!     .nodeid("chat/%u")
//!     .binds(["127.0.0.1:4040"])
//!     .seeds(["127.0.0.1:4040"])
//!     .secret("geheim")
//!     .norc(true)
//!     .build()?;
//! assert!(cfg.node_id.as_str().starts_with("chat/"));
//! # Ok(()) }
//! ```
//!
//! Building reads the rc file (a small blocking read); from async code, build inside
//! `spawn_blocking` or before the runtime starts. Resolving binds and seeds
//! ([`addr::Endpoint::resolve`]) blocks as well.

pub mod addr;
mod host;
pub mod rc;

pub use addr::{format_hostport, resolve_all, AddrError, Endpoint, Host, HostPort};
pub use host::{nodename, port_prefix};
pub use rc::RcDoc;

use aemp_proto::ids::{expand_node_id, IdError, NodeId};
use aemp_proto::Value as MsgValue;
use serde_json::{Map, Value};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Why a configuration could not be built, read or saved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The rc file exists but cannot be read.
    #[error("cannot read rc file {}: {source}", path.display())]
    RcRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The rc file is not (relaxed) JSON.
    #[error("cannot parse rc file {}: {message}", path.display())]
    RcParse {
        /// The file.
        path: PathBuf,
        /// What the parser said (with line and column).
        message: String,
    },
    /// The rc file holds JSON, but not an object.
    #[error("rc file {}: the top level must be a JSON object", path.display())]
    RcNotObject {
        /// The file.
        path: PathBuf,
    },
    /// Writing the rc file failed.
    #[error("cannot write rc file {}: {source}", path.display())]
    RcWrite {
        /// The file that could not be written, linked or renamed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The document has no file to be saved to.
    #[error("no rc file location (set PERL_ANYEVENT_MP_RC or HOME)")]
    NoRcPath,
    /// A configuration value has the wrong type.
    #[error("{what} must be {expected} (got {got})")]
    BadType {
        /// Which key (and profile) is wrong.
        what: String,
        /// What it must be.
        expected: &'static str,
        /// What it is, shortened.
        got: String,
    },
    /// The `parent` chain of profiles loops.
    #[error("profile parent chain loops: {0}")]
    ParentLoop(String),
    /// The node ID is empty (or null).
    #[error("empty node ID")]
    EmptyNodeId,
    /// The node ID, after expansion, is not a valid node ID.
    #[error("invalid node ID: {0}")]
    NodeId(#[from] IdError),
    /// A bind entry cannot be parsed.
    #[error("unparsable bind {entry:?}: {source}")]
    BadBind {
        /// The entry.
        entry: String,
        /// What is wrong.
        source: AddrError,
    },
    /// A seed entry cannot be parsed.
    #[error("unparsable seed {entry:?}: {source}")]
    BadSeed {
        /// The entry.
        entry: String,
        /// What is wrong.
        source: AddrError,
    },
    /// A bind or seed name cannot be resolved.
    #[error("cannot resolve {entry:?}: {source}")]
    Resolve {
        /// The entry.
        entry: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// `framing_format` lists nothing this implementation speaks.
    #[error("framing_format lists no supported framing (supported: cbor, json)")]
    NoFraming,
    /// A `services` entry names no registered service function (and no built-in service).
    #[error(
        "unknown service {name:?}: no service function of that name is registered \
         (registered: {}; built in: AnyEvent::MP::Global)",
        if registered.is_empty() { "none".to_owned() } else { registered.join(", ") }
    )]
    UnknownService {
        /// The entry's name as configured.
        name: String,
        /// The names that are registered.
        registered: Vec<String>,
    },
    /// A service function returned an error at start-up.
    #[error("service {name:?} failed to start: {message}")]
    ServiceFailed {
        /// The service's name.
        name: String,
        /// Its error.
        message: String,
    },
}

impl ConfigError {
    /// A [`ConfigError::BadType`] for `what`, showing (at most 60 characters of) `got`.
    pub fn bad_type(what: &str, expected: &'static str, got: &Value) -> ConfigError {
        let mut g = got.to_string();
        if g.len() > 60 {
            let mut cut = 57;
            while !g.is_char_boundary(cut) {
                cut -= 1;
            }
            g.truncate(cut);
            g.push_str("...");
        }
        ConfigError::BadType {
            what: what.to_string(),
            expected,
            got: g,
        }
    }
}

/// The framings this implementation speaks, in our order of preference. The reference also
/// offers `storable` (Perl's native serialisation), which we cannot decode.
pub use aemp_proto::handshake::SUPPORTED_FRAMINGS;

/// The built-in defaults (first layer of the merge), with our framing list
/// and the handshake's default auth lists.
pub fn builtin_defaults() -> Map<String, Value> {
    use aemp_proto::handshake::{DEFAULT_AUTH_ACCEPT, DEFAULT_AUTH_OFFER, DEFAULT_FRAMINGS};
    let list = |xs: &[&str]| Value::Array(xs.iter().map(|s| Value::from(*s)).collect());
    let mut m = Map::new();
    m.insert("monitor_timeout".into(), Value::from(30));
    m.insert("connect_interval".into(), Value::from(2));
    m.insert("framing_format".into(), list(&DEFAULT_FRAMINGS));
    m.insert("auth_offer".into(), list(&DEFAULT_AUTH_OFFER));
    m.insert("auth_accept".into(), list(&DEFAULT_AUTH_ACCEPT));
    m
}

/// The raw merge (Perl `find_profile`), later layers winning key by key:
/// built-in defaults, then `args`, then the rc file's top level, its `parent` chain root
/// first and the profile `name` (see [`RcDoc::layered`]). With `force`, `args` win over the
/// rc file. `rc = None` is `norc`.
pub fn find_profile(
    rc: Option<&RcDoc>,
    name: &str,
    args: &Map<String, Value>,
    force: bool,
) -> Result<Map<String, Value>, ConfigError> {
    let mut kv = builtin_defaults();
    let overlay = |kv: &mut Map<String, Value>, layer: &Map<String, Value>| {
        for (k, v) in layer {
            kv.insert(k.clone(), v.clone());
        }
    };
    match rc {
        None => overlay(&mut kv, args),
        Some(rc) => {
            let layer = rc.layered(name)?;
            if force {
                overlay(&mut kv, &layer);
                overlay(&mut kv, args);
            } else {
                overlay(&mut kv, args);
                overlay(&mut kv, &layer);
            }
        }
    }
    Ok(kv)
}

/// Generates a shared secret as `aemp gensecret` does: 180 characters from `[0-9A-Za-z]`
/// (about 1071 bits), from the operating system's random source.
pub fn generate_secret() -> String {
    use aemp_proto::ids::ALNUM;
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..180)
        .map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char)
        .collect()
}

/// One entry of `services`, started when the node is configured.
///
/// Perl loads the module or calls the function of that name. A Rust program registers its
/// service functions by name on the node builder instead (`Node::builder(cfg).service(name,
/// f)`), and configuring runs the function registered under [`Service::name`] with
/// [`Service::args`]. `AnyEvent::MP::Global` is built in (it makes the node global); an entry
/// naming nothing registered is an error ([`ConfigError::UnknownService`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Service {
    /// A string ending in `::`: a module (the reference `require`s it; here, the name of a
    /// service function registered on the node builder).
    Module(String),
    /// Any other string: a function to call without arguments.
    Function(String),
    /// `[func, args...]`: a function to call with arguments.
    Call {
        /// The function name.
        func: String,
        /// Its arguments.
        args: Vec<MsgValue>,
    },
}

impl Service {
    /// The name a service function is registered under: the module or function name,
    /// without a trailing `::` (`"My::Worker::"` and `"My::Worker"` are the same service).
    pub fn name(&self) -> &str {
        match self {
            Service::Module(m) => m.trim_end_matches("::"),
            Service::Function(f) => f.trim_end_matches("::"),
            Service::Call { func, .. } => func.trim_end_matches("::"),
        }
    }

    /// The arguments the service function gets (none unless configured as
    /// `[func, args...]`).
    pub fn args(&self) -> &[MsgValue] {
        match self {
            Service::Call { args, .. } => args,
            _ => &[],
        }
    }

    /// True for the reference's global service module (`AnyEvent::MP::Global::` or the
    /// `AnyEvent::MP::Global` name), which makes a node global.
    pub fn is_global_service(&self) -> bool {
        match self {
            Service::Module(m) | Service::Function(m) => {
                m.trim_end_matches("::") == "AnyEvent::MP::Global"
            }
            Service::Call { .. } => false,
        }
    }
}

/// Converts JSON into a message value (integers to `Int`/`UInt`, other numbers to `Float`).
pub fn json_to_value(v: &Value) -> MsgValue {
    match v {
        Value::Null => MsgValue::Null,
        Value::Bool(b) => MsgValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                MsgValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                MsgValue::from(u)
            } else {
                MsgValue::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => MsgValue::from(s.as_str()),
        Value::Array(a) => MsgValue::List(a.iter().map(json_to_value).collect()),
        Value::Object(m) => MsgValue::Map(
            m.iter()
                .map(|(k, v)| (k.as_str().into(), json_to_value(v)))
                .collect(),
        ),
    }
}

/// How much may wait to be sent to one peer (`send_queue_limit`; an aemp extension, a key
/// the reference ignores).
///
/// `snd` never blocks. When a peer reads more slowly than the node sends to it (or not at
/// all: a stopped process, a congested link), the messages wait in the node's memory: in
/// the queue of the node while it is being reached, then in its connection's write buffer.
/// With a limit, the peer is treated as failed once more than that many bytes wait for it:
/// the connection is dropped (or the attempt to reach the node given up), everything queued
/// for it is dropped, and every monitor of that node fires once with
/// `("transport_error", node, "send queue over <limit> bytes")`, followed by node-down if
/// it was connected.
/// The message that went over the limit is part of what is dropped, and `snd` still returns
/// `Ok` for it: the monitors are the signal, as for any other connection loss. The next
/// message starts a new connection. Nothing sent after the dropped messages is delivered
/// before the monitors fired (no holes).
///
/// Bytes are counted as encoded (CBOR or JSON) in the write buffer, including a chunk the
/// writer is still writing; while the node is being reached, an upper bound of each
/// message's CBOR size is counted. A single message is never over the limit when nothing
/// else waits, whatever its size.
///
/// A producer that must not lose messages to the limit awaits
/// [`Node::writable`](crate::Node::writable) between batches of less than a quarter of the
/// limit (it waits while 1 MiB, or a quarter of a smaller limit, waits for the peer; it does
/// not wait for a node being reached, so await [`Node::wait_up`](crate::Node::wait_up)
/// first), or keeps a bounded number of `cal`s outstanding (a window of requests whose
/// replies it awaits); either keeps the queue far below the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendQueueLimit {
    /// At most this many bytes wait per peer ([`SendQueueLimit::DEFAULT`]: 256 MiB, the
    /// largest message the default limits allow).
    Bytes(usize),
    /// No limit: the queue grows until the peer reads or the connection fails, as in the
    /// reference implementation.
    Unbounded,
}

impl SendQueueLimit {
    /// The default limit: 256 MiB per peer.
    pub const DEFAULT: SendQueueLimit = SendQueueLimit::Bytes(256 << 20);

    /// The limit in bytes, `None` when unbounded.
    pub fn bytes(self) -> Option<usize> {
        match self {
            SendQueueLimit::Bytes(n) => Some(n),
            SendQueueLimit::Unbounded => None,
        }
    }
}

impl Default for SendQueueLimit {
    fn default() -> Self {
        SendQueueLimit::DEFAULT
    }
}

/// The effective, typed configuration of a node (the result of `configure`'s merge).
///
/// `Debug` output shows `secret` and `cert` (also inside `raw`) as `"<redacted>"`, so that
/// logging a configuration never leaks them.
#[derive(Clone)]
pub struct Config {
    /// The profile name used for the rc lookup.
    pub profile: String,
    /// The configured node ID before expansion (`nodeid`, default `"<profile>/"`).
    pub nodeid: String,
    /// The expanded node ID.
    pub node_id: NodeId,
    /// Whether expansion inserted the random `$RUNIQ` (then local port names need no
    /// per-run prefix).
    pub randomised: bool,
    /// This run's `$RUNIQ` (10 characters, used for expansion and spawned port names).
    pub runiq: String,
    /// The host name used for `%n` and digits-only binds/seeds.
    pub nodename: String,
    /// Where to listen (`binds`, default `["*"]`).
    pub binds: Vec<Endpoint>,
    /// Seeds to keep connected to (`seeds`, default none).
    pub seeds: Vec<Endpoint>,
    /// The shared secret, if any.
    pub secret: Option<String>,
    /// PEM with private key, certificate and optional CA certificates, if any.
    pub cert: Option<String>,
    /// Secure mode: refuse remote function calls (docs/protocol.md §4).
    pub secure: bool,
    /// Services to start when the node is configured, in order (see [`Service`]).
    pub services: Vec<Service>,
    /// `monitor_timeout` (default 30 s).
    pub monitor_timeout: Duration,
    /// `connect_interval` (default 2 s; also the overall connect timeout).
    pub connect_interval: Duration,
    /// Framings offered and accepted, in order of preference (default `["cbor", "json"]`;
    /// anything else, such as `storable`, is dropped with a warning).
    pub framing_format: Vec<String>,
    /// Auth methods this node sends, in order of preference.
    pub auth_offer: Vec<String>,
    /// Auth methods accepted from peers, advertised in the greeting. Only `tls_*`
    /// methods (e.g. `["tls_sha3_512"]`) require TLS: see [`ConfigBuilder::auth_accept`].
    pub auth_accept: Vec<String>,
    /// `TCP_NODELAY` on connections (default true).
    pub nodelay: bool,
    /// Whether to cork writes (default false).
    pub autocork: bool,
    /// How much may wait to be sent to one peer before it counts as failed
    /// (`send_queue_limit`, default [`SendQueueLimit::DEFAULT`]).
    pub send_queue_limit: SendQueueLimit,
    /// The whole merged map, including keys this type does not interpret.
    pub raw: Map<String, Value>,
}

impl Config {
    /// A builder with no settings: reads the rc file from its default location.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Builds the typed configuration from a merged map (see [`find_profile`]) and the
    /// values of this run. This is where every value is validated.
    pub fn from_merged(
        profile: &str,
        merged: Map<String, Value>,
        nodename: &str,
        runiq: &str,
    ) -> Result<Config, ConfigError> {
        let m = &merged;
        let nodeid = match m.get("nodeid") {
            None => format!("{profile}/"),
            Some(Value::Null) => return Err(ConfigError::EmptyNodeId),
            Some(Value::String(s)) if s.is_empty() => return Err(ConfigError::EmptyNodeId),
            Some(Value::String(s)) => s.clone(),
            Some(other) => return Err(ConfigError::bad_type("nodeid", "a string", other)),
        };
        let expanded = expand_node_id(&nodeid, nodename, runiq)?;

        let binds = match str_list(m, "binds")? {
            None => vec!["*".to_string()],
            Some(b) => b,
        }
        .into_iter()
        .map(|entry| {
            Endpoint::parse(&entry, nodename)
                .map_err(|source| ConfigError::BadBind { entry, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
        let seeds = str_list(m, "seeds")?
            .unwrap_or_default()
            .into_iter()
            .map(|entry| {
                Endpoint::parse_seed(&entry, nodename)
                    .map_err(|source| ConfigError::BadSeed { entry, source })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut framing_format = Vec::new();
        for f in str_list(m, "framing_format")?.unwrap_or_default() {
            if SUPPORTED_FRAMINGS.contains(&f.as_str()) {
                if !framing_format.contains(&f) {
                    framing_format.push(f);
                }
            } else {
                tracing::warn!(framing = %f, "framing_format: unsupported framing dropped");
            }
        }
        if framing_format.is_empty() {
            return Err(ConfigError::NoFraming);
        }

        if m.get("eval").is_some_and(|v| !v.is_null()) {
            tracing::warn!("config key eval is ignored: this implementation never evaluates code");
        }

        Ok(Config {
            profile: profile.to_string(),
            node_id: expanded.id,
            randomised: expanded.randomised,
            nodeid,
            runiq: runiq.to_string(),
            nodename: nodename.to_string(),
            binds,
            seeds,
            secret: opt_str(m, "secret")?,
            cert: opt_str(m, "cert")?,
            secure: flag(m, "secure", false)?,
            services: services(m)?,
            monitor_timeout: seconds(m, "monitor_timeout", 30.0)?,
            connect_interval: seconds(m, "connect_interval", 2.0)?,
            framing_format,
            auth_offer: str_list(m, "auth_offer")?.unwrap_or_default(),
            auth_accept: str_list(m, "auth_accept")?.unwrap_or_default(),
            nodelay: flag(m, "nodelay", true)?,
            autocork: flag(m, "autocork", false)?,
            send_queue_limit: send_queue_limit(m)?,
            raw: merged,
        })
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hide = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("profile", &self.profile)
            .field("nodeid", &self.nodeid)
            .field("node_id", &self.node_id)
            .field("randomised", &self.randomised)
            .field("runiq", &self.runiq)
            .field("nodename", &self.nodename)
            .field("binds", &self.binds)
            .field("seeds", &self.seeds)
            .field("secret", &hide(&self.secret))
            .field("cert", &hide(&self.cert))
            .field("secure", &self.secure)
            .field("services", &self.services)
            .field("monitor_timeout", &self.monitor_timeout)
            .field("connect_interval", &self.connect_interval)
            .field("framing_format", &self.framing_format)
            .field("auth_offer", &self.auth_offer)
            .field("auth_accept", &self.auth_accept)
            .field("nodelay", &self.nodelay)
            .field("autocork", &self.autocork)
            .field("send_queue_limit", &self.send_queue_limit)
            .field("raw", &redacted(&self.raw))
            .finish()
    }
}

/// A copy of `m` with the value of every `secret` and `cert` key, at any depth (profiles
/// included), replaced by `"<redacted>"`: for `Debug` output and logs.
pub fn redacted(m: &Map<String, Value>) -> Map<String, Value> {
    fn walk(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(redacted(m)),
            Value::Array(a) => Value::Array(a.iter().map(walk).collect()),
            other => other.clone(),
        }
    }
    m.iter()
        .map(|(k, v)| {
            let v = if k == "secret" || k == "cert" {
                Value::from("<redacted>")
            } else {
                walk(v)
            };
            (k.clone(), v)
        })
        .collect()
}

/// `key` as an array of strings; `None` when missing or null.
fn str_list(m: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|e| match e {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ConfigError::bad_type(key, "an array of strings", &m[key])),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(ConfigError::bad_type(key, "an array of strings", other)),
    }
}

fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, ConfigError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ConfigError::bad_type(key, "a string", other)),
    }
}

/// A boolean with Perl's truthiness (the reference tool stores `"1"`/`"0"` strings).
fn flag(m: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ConfigError> {
    match m.get(key) {
        None => Ok(default),
        Some(v @ (Value::Array(_) | Value::Object(_))) => {
            Err(ConfigError::bad_type(key, "a boolean", v))
        }
        Some(v) => Ok(rc::truthy(v)),
    }
}

/// A positive number of seconds; numeric strings are accepted (the reference tool stores
/// its arguments as strings).
fn seconds(m: &Map<String, Value>, key: &str, default: f64) -> Result<Duration, ConfigError> {
    let v = match m.get(key) {
        None | Some(Value::Null) => return Ok(Duration::from_secs_f64(default)),
        Some(v) => v,
    };
    let secs = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    secs.filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| ConfigError::bad_type(key, "a positive number of seconds", v))
}

/// `send_queue_limit`: a positive number of bytes (numeric strings accepted) or
/// `"unbounded"`.
fn send_queue_limit(m: &Map<String, Value>) -> Result<SendQueueLimit, ConfigError> {
    const EXPECTED: &str = "a positive number of bytes or \"unbounded\"";
    let v = match m.get("send_queue_limit") {
        None | Some(Value::Null) => return Ok(SendQueueLimit::DEFAULT),
        Some(v) => v,
    };
    let n = match v {
        Value::String(s) if s.trim() == "unbounded" => return Ok(SendQueueLimit::Unbounded),
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.filter(|n| *n > 0)
        .and_then(|n| usize::try_from(n).ok())
        .map(SendQueueLimit::Bytes)
        .ok_or_else(|| ConfigError::bad_type("send_queue_limit", EXPECTED, v))
}

fn services(m: &Map<String, Value>) -> Result<Vec<Service>, ConfigError> {
    const EXPECTED: &str = "an array of strings or [function, args...] arrays";
    let list = match m.get("services") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(ConfigError::bad_type("services", EXPECTED, other)),
    };
    list.iter()
        .map(|e| match e {
            Value::String(s) if s.ends_with("::") => Ok(Service::Module(s.clone())),
            Value::String(s) => Ok(Service::Function(s.clone())),
            Value::Array(a) => match a.split_first() {
                Some((Value::String(f), args)) => Ok(Service::Call {
                    func: f.clone(),
                    args: args.iter().map(json_to_value).collect(),
                }),
                _ => Err(ConfigError::bad_type("services entry", EXPECTED, e)),
            },
            _ => Err(ConfigError::bad_type("services entry", EXPECTED, e)),
        })
        .collect()
}

/// Where a [`ConfigBuilder`] gets the rc file from.
#[derive(Clone, Default)]
enum RcSource {
    /// The default location from the environment.
    #[default]
    Env,
    /// A given file.
    File(PathBuf),
    /// An already loaded document.
    Doc(RcDoc),
}

/// Builds a [`Config`] the way `configure` does: explicit settings (the `configure`
/// arguments), merged with the rc file's top level, parent chain and profile.
///
/// By default the rc file comes from its default location (a missing file is fine, an
/// unreadable or unparsable one is an error); [`ConfigBuilder::norc`] ignores it.
///
/// `Debug` output redacts `secret` and `cert`.
#[derive(Clone, Default)]
pub struct ConfigBuilder {
    profile: Option<String>,
    args: Map<String, Value>,
    norc: bool,
    force: bool,
    rc: RcSource,
    nodename: Option<String>,
    runiq: Option<String>,
}

impl fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rc = match &self.rc {
            RcSource::Env => "default location".to_string(),
            RcSource::File(p) => p.display().to_string(),
            RcSource::Doc(d) => format!("{d:?}"),
        };
        f.debug_struct("ConfigBuilder")
            .field("profile", &self.profile)
            .field("args", &redacted(&self.args))
            .field("norc", &self.norc)
            .field("force", &self.force)
            .field("rc", &rc)
            .field("nodename", &self.nodename)
            .field("runiq", &self.runiq)
            .finish()
    }
}

fn json_list<I, S>(items: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Value::Array(items.into_iter().map(|s| Value::String(s.into())).collect())
}

impl ConfigBuilder {
    /// Builds from `configure`-style arguments: an odd count means the first one is the
    /// profile name; then key/value pairs (`profile`, `norc` and `force` included).
    pub fn from_args(args: &[Value]) -> Result<ConfigBuilder, ConfigError> {
        let mut b = ConfigBuilder::default();
        let mut rest = args;
        if rest.len() % 2 == 1 {
            b = b.set("profile", rest[0].clone())?;
            rest = &rest[1..];
        }
        for pair in rest.chunks_exact(2) {
            let key = match &pair[0] {
                Value::String(k) => k.clone(),
                other => return Err(ConfigError::bad_type("configure key", "a string", other)),
            };
            b = b.set(&key, pair[1].clone())?;
        }
        Ok(b)
    }

    /// Sets any key as a `configure` argument. `profile` must be a string; `norc` and
    /// `force` are taken as booleans (Perl truthiness); every other key is stored as given
    /// and validated by [`ConfigBuilder::build`].
    pub fn set(mut self, key: &str, value: Value) -> Result<ConfigBuilder, ConfigError> {
        match key {
            "profile" => match value {
                Value::String(s) => self.profile = Some(s),
                Value::Null => self.profile = None,
                other => return Err(ConfigError::bad_type("profile", "a string", &other)),
            },
            "norc" => self.norc = rc::truthy(&value),
            "force" => self.force = rc::truthy(&value),
            _ => {
                self.args.insert(key.to_string(), value);
            }
        }
        Ok(self)
    }

    fn put(mut self, key: &str, value: Value) -> ConfigBuilder {
        self.args.insert(key.to_string(), value);
        self
    }

    /// The profile to look up in the rc file (default: the node name).
    pub fn profile(mut self, name: impl Into<String>) -> ConfigBuilder {
        self.profile = Some(name.into());
        self
    }

    /// The node ID pattern (`%n`, `%u`, trailing `/`).
    pub fn nodeid(self, id: impl Into<String>) -> ConfigBuilder {
        self.put("nodeid", Value::String(id.into()))
    }

    /// Addresses to listen on.
    pub fn binds<I, S>(self, binds: I) -> ConfigBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.put("binds", json_list(binds))
    }

    /// Seed addresses.
    pub fn seeds<I, S>(self, seeds: I) -> ConfigBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.put("seeds", json_list(seeds))
    }

    /// The shared secret.
    pub fn secret(self, secret: impl Into<String>) -> ConfigBuilder {
        self.put("secret", Value::String(secret.into()))
    }

    /// The PEM with key, certificate and optional CA certificates.
    pub fn cert(self, pem: impl Into<String>) -> ConfigBuilder {
        self.put("cert", Value::String(pem.into()))
    }

    /// Secure mode.
    pub fn secure(self, on: bool) -> ConfigBuilder {
        self.put("secure", Value::Bool(on))
    }

    /// Services to start when the node is configured: names of service functions (a
    /// `Module::` name or a function name; `::` at the end does not matter). Each must be
    /// registered on the node builder (`Node::builder(cfg).service(name, f)`), or be the
    /// built-in `AnyEvent::MP::Global`; any other name makes configuring the node fail.
    pub fn services<I, S>(self, services: I) -> ConfigBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.put("services", json_list(services))
    }

    /// `monitor_timeout`.
    pub fn monitor_timeout(self, d: Duration) -> ConfigBuilder {
        self.put("monitor_timeout", Value::from(d.as_secs_f64()))
    }

    /// `connect_interval`.
    pub fn connect_interval(self, d: Duration) -> ConfigBuilder {
        self.put("connect_interval", Value::from(d.as_secs_f64()))
    }

    /// Framings in order of preference (`cbor`, `json`).
    pub fn framing_format<I, S>(self, f: I) -> ConfigBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.put("framing_format", json_list(f))
    }

    /// Auth methods this node sends, in order of preference.
    pub fn auth_offer<I, S>(self, a: I) -> ConfigBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.put("auth_offer", json_list(a))
    }

    /// Auth methods this node accepts from peers, advertised in the greeting (default
    /// `tls_sha3_512, hmac_sha3_512, tls_anon, cleartext`, Perl's order).
    ///
    /// # Requiring TLS
    ///
    /// By default a node with a certificate still accepts peers that authenticate with the
    /// shared secret (`hmac_sha3_512`). To refuse every peer that does not authenticate
    /// with a certificate this node's PEM trusts, accept `tls_sha3_512` only. Such a node
    /// needs a certificate (configuring it fails otherwise); a peer without TLS is refused
    /// right after its greeting, and both sides say why (the peer's monitors get
    /// `"authentication failed: the peer accepts certificate authentication only …"`, and
    /// this node logs a warning naming the peer's address). Unlike a Perl node, this node
    /// also checks the method of the auth line a peer sends against this list.
    ///
    /// ```
    /// # let pem = String::new();
    /// let cfg = aemp::Config::builder()
    ///     .norc(true)
    ///     .cert(pem) // the cluster's PEM (see `aemp gencert`)
    ///     .auth_accept(["tls_sha3_512"])
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cfg.auth_accept, ["tls_sha3_512"]);
    /// ```
    pub fn auth_accept<I, S>(self, a: I) -> ConfigBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.put("auth_accept", json_list(a))
    }

    /// `TCP_NODELAY`.
    pub fn nodelay(self, on: bool) -> ConfigBuilder {
        self.put("nodelay", Value::Bool(on))
    }

    /// Write corking.
    pub fn autocork(self, on: bool) -> ConfigBuilder {
        self.put("autocork", Value::Bool(on))
    }

    /// How much may wait to be sent to one peer (see [`SendQueueLimit`]; rc key
    /// `send_queue_limit`, bytes or `"unbounded"`).
    pub fn send_queue_limit(self, limit: SendQueueLimit) -> ConfigBuilder {
        let v = match limit {
            SendQueueLimit::Bytes(n) => Value::from(n),
            SendQueueLimit::Unbounded => Value::from("unbounded"),
        };
        self.put("send_queue_limit", v)
    }

    /// Ignore the rc file entirely.
    pub fn norc(mut self, on: bool) -> ConfigBuilder {
        self.norc = on;
        self
    }

    /// Let these settings win over the rc file.
    pub fn force(mut self, on: bool) -> ConfigBuilder {
        self.force = on;
        self
    }

    /// Read the rc file from `path` instead of the default location.
    pub fn rc_file(mut self, path: impl Into<PathBuf>) -> ConfigBuilder {
        self.rc = RcSource::File(path.into());
        self
    }

    /// Use an already loaded rc document.
    pub fn rc_doc(mut self, doc: RcDoc) -> ConfigBuilder {
        self.rc = RcSource::Doc(doc);
        self
    }

    /// Override the host name (default: `uname -n`), e.g. for reproducible tests.
    pub fn nodename(mut self, name: impl Into<String>) -> ConfigBuilder {
        self.nodename = Some(name.into());
        self
    }

    /// Override this run's `$RUNIQ` (default: fresh random), e.g. for reproducible tests.
    pub fn runiq(mut self, runiq: impl Into<String>) -> ConfigBuilder {
        self.runiq = Some(runiq.into());
        self
    }

    /// The merged raw map (what `aemp showconfig` shows) and the profile name used.
    pub fn merged(&self) -> Result<(String, Map<String, Value>), ConfigError> {
        let nodename = self.nodename.clone().unwrap_or_else(nodename);
        self.merged_for(&nodename)
    }

    fn merged_for(&self, nodename: &str) -> Result<(String, Map<String, Value>), ConfigError> {
        let profile = self.profile.clone().unwrap_or_else(|| nodename.to_string());
        let loaded;
        let rc = if self.norc {
            None
        } else {
            match &self.rc {
                RcSource::Env => {
                    loaded = RcDoc::load_default()?;
                    Some(&loaded)
                }
                RcSource::File(p) => {
                    loaded = RcDoc::load(p.clone())?;
                    Some(&loaded)
                }
                RcSource::Doc(d) => Some(d),
            }
        };
        let merged = find_profile(rc, &profile, &self.args, self.force)?;
        Ok((profile, merged))
    }

    /// Merges and validates. Reads the rc file (blocking) unless `norc`.
    pub fn build(self) -> Result<Config, ConfigError> {
        let nodename = self.nodename.clone().unwrap_or_else(nodename);
        let (profile, merged) = self.merged_for(&nodename)?;
        let runiq = self.runiq.unwrap_or_else(aemp_proto::ids::new_runiq);
        Config::from_merged(&profile, merged, &nodename, &runiq)
    }
}

#[cfg(test)]
mod tests;
