//! The configuration commands of the `aemp` tool, acting on an rc
//! document ([`RcDoc`]).
//!
//! [`run`] executes the configuration commands at the front of a command line and returns the
//! rest (starting at the first command it does not know, e.g. `snd`, `run`, `eval`) for the
//! caller. The caller loads the rc document, saves it afterwards ([`RcDoc::save`] writes only
//! when something changed) and dispatches the rest:
//!
//! ```text
//! let mut rc = RcDoc::load_default()?;
//! let outcome = rc_commands::run(&args, &mut rc, &mut std::io::stdout())?;
//! rc.save()?;
//! // outcome.rest_values: protocol commands with their arguments already JSON-decoded
//! ```
//!
//! Argument conventions of the reference tool: a first argument starting with `[` is the
//! whole argument list as one JSON array; otherwise every argument starting with `[`, `{` or
//! `"` is decoded as JSON. Commands act on the top level of the rc file until
//! `profile <name>` switches to that profile (for the rest of this call).
//!
//! Deviations from the reference, all towards clearer errors: values are checked when set
//! (booleans, positive numbers, known framing and auth names, strings where strings belong),
//! and editing a key whose current value has the wrong type is an error instead of a crash.
//! `add*` commands do not add duplicates (the reference does this for binds and seeds; here
//! also for services). A profile named by `showprofile`, `showconfig` or `delprofile` must
//! exist ([`CmdError::UnknownProfile`]; the reference shows nothing or the defaults).
//! `profile <name>` creates the profile when a command writes into it, or when it ends the
//! command line (as the reference does); otherwise it only selects it
//! ([`RcOutcome::profile`]), so that the caller can refuse a name that does not exist.

use aemp::config::rc::{parse_relaxed, to_pretty_json};
use aemp::config::{generate_secret, ConfigBuilder, ConfigError, Host, HostPort, RcDoc};
use aemp_proto::handshake::{AUTH_METHODS, KNOWN_FRAMINGS};
use serde_json::{Map, Value};
use std::fmt;
use std::io::{self, Read, Write};

/// Largest PEM file `setcert` reads (a key plus a few certificates is a few KiB).
const MAX_PEM_SIZE: u64 = 1024 * 1024;

/// What [`run`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct RcOutcome {
    /// The arguments from the first unknown command on, as given (in whole-array mode:
    /// string elements as they are, other elements as compact JSON).
    pub rest: Vec<String>,
    /// The same arguments, decoded by the reference's rules (use these to run protocol
    /// commands).
    pub rest_values: Vec<Value>,
    /// Whether the commands changed the document (so the caller knows a save will write).
    pub changed: bool,
    /// The profile the last `profile <name>` selected, if any (it need not exist).
    pub profile: Option<String>,
}

/// Why a configuration command failed.
#[derive(Debug)]
pub enum CmdError {
    /// A command lacks an argument.
    MissingArgument {
        /// The command.
        command: String,
        /// What is missing.
        what: &'static str,
    },
    /// An argument that looks like JSON does not parse.
    BadJson {
        /// The argument.
        arg: String,
        /// The parser's message.
        message: String,
    },
    /// An argument has the wrong form for its command.
    BadArgument {
        /// The command.
        command: String,
        /// What is wrong.
        message: String,
    },
    /// The rc document has a value of the wrong type, or the merge failed.
    Config(ConfigError),
    /// A file named on the command line cannot be read.
    ReadFile {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing output failed.
    Output(io::Error),
    /// `gencert` could not make a certificate.
    Generate(String),
    /// A profile name that the rc document does not have.
    UnknownProfile {
        /// The name given.
        name: String,
        /// The profiles the document has.
        known: Vec<String>,
    },
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::MissingArgument { command, what } => write!(f, "{command}: {what} missing"),
            CmdError::BadJson { arg, message } => {
                write!(f, "argument {arg:?} is not valid JSON: {message}")
            }
            CmdError::BadArgument { command, message } => write!(f, "{command}: {message}"),
            CmdError::Config(e) => write!(f, "{e}"),
            CmdError::ReadFile { path, source } => write!(f, "{path}: {source}"),
            CmdError::Output(e) => write!(f, "cannot write output: {e}"),
            CmdError::Generate(m) => write!(f, "gencert: {m}"),
            CmdError::UnknownProfile { name, known } if known.is_empty() => {
                write!(f, "unknown profile {name:?} (the rc file has no profiles)")
            }
            CmdError::UnknownProfile { name, known } => {
                let known: Vec<String> = known.iter().map(|k| format!("{k:?}")).collect();
                write!(
                    f,
                    "unknown profile {name:?} (the rc file has {})",
                    known.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for CmdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CmdError::Config(e) => Some(e),
            CmdError::ReadFile { source, .. } | CmdError::Output(source) => Some(source),
            _ => None,
        }
    }
}

impl From<ConfigError> for CmdError {
    fn from(e: ConfigError) -> Self {
        CmdError::Config(e)
    }
}

/// Decodes one command-line argument: JSON if it starts with `[`, `{` or `"`, else the
/// string itself.
///
/// One exception, so that `addbind [::1]:4040` works (the reference fails on it): an
/// argument that is not valid JSON but is a bracketed `[address]:port` stays a string.
pub fn decode_arg(arg: &str) -> Result<Value, CmdError> {
    if arg.starts_with(['[', '{', '"']) {
        parse_relaxed(arg).or_else(|e| {
            let v6 = HostPort::parse(arg, "").is_ok_and(|hp| matches!(hp.host, Host::Ip(_)));
            if arg.starts_with('[') && v6 {
                Ok(Value::String(arg.to_string()))
            } else {
                Err(CmdError::BadJson {
                    arg: arg.to_string(),
                    message: e.to_string(),
                })
            }
        })
    } else {
        Ok(Value::String(arg.to_string()))
    }
}

/// Applies the reference's argument rules to a whole command line, returning each argument
/// as given (see [`RcOutcome::rest`]) next to its decoded value.
pub fn decode_args(args: &[String]) -> Result<Vec<(String, Value)>, CmdError> {
    if let Some(first) = args.first().filter(|a| a.starts_with('[')) {
        if args.len() > 1 {
            return Err(CmdError::BadArgument {
                command: first.clone(),
                message: "a JSON array as first argument must be the only argument".into(),
            });
        }
        let Value::Array(items) = decode_arg(first)? else {
            return Err(CmdError::BadArgument {
                command: first.clone(),
                message: "expected a JSON array".into(),
            });
        };
        return Ok(items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => (s.clone(), Value::String(s)),
                other => (other.to_string(), other),
            })
            .collect());
    }
    args.iter()
        .map(|a| Ok((a.clone(), decode_arg(a)?)))
        .collect()
}

/// Runs the configuration commands at the front of `args` on `rc`, writing `show*` output
/// to `out`; stops at the first command it does not know and returns it with everything
/// after it. Does not save `rc`.
pub fn run(args: &[String], rc: &mut RcDoc, out: &mut dyn Write) -> Result<RcOutcome, CmdError> {
    let before = rc.root().clone();
    let decoded = decode_args(args)?;
    let mut s = Session {
        args: decoded,
        pos: 0,
        profile: None,
    };
    while s.pos < s.args.len() {
        if !s.step(rc, out)? {
            break;
        }
    }
    let (rest, rest_values): (Vec<String>, Vec<Value>) =
        s.args.split_off(s.pos).into_iter().unzip();
    // `profile <name>` at the end: the reference creates the (empty) profile.
    if let (Some(p), true) = (&s.profile, rest.is_empty()) {
        rc.profile_mut(p)?;
    }
    Ok(RcOutcome {
        rest,
        rest_values,
        changed: rc.root() != &before,
        profile: s.profile,
    })
}

/// Fails with [`CmdError::UnknownProfile`] unless `rc` has a profile called `name`.
pub fn require_profile(rc: &RcDoc, name: &str) -> Result<(), CmdError> {
    if rc.profile(name)?.is_some() {
        return Ok(());
    }
    let known = rc
        .profiles()?
        .map(|ps| ps.keys().cloned().collect())
        .unwrap_or_default();
    Err(CmdError::UnknownProfile {
        name: name.to_string(),
        known,
    })
}

/// Keys whose `set`/`del` commands take one scalar string.
const STRING_KEYS: [&str; 4] = ["nodeid", "secret", "eval", "parent"];
/// List keys with `set`/`del`/`add`/`del` (singular) commands: (key, singular).
const LIST_KEYS: [(&str, &str); 3] = [
    ("seeds", "seed"),
    ("binds", "bind"),
    ("services", "service"),
];
/// Boolean tunables.
const BOOL_KEYS: [&str; 3] = ["secure", "autocork", "nodelay"];
/// Positive-number tunables.
const NUMBER_KEYS: [&str; 2] = ["monitor_timeout", "connect_interval"];
/// List tunables (names checked against a known set).
const NAME_LIST_KEYS: [&str; 3] = ["framing_format", "auth_offer", "auth_accept"];

/// The `set*` keys that may also be written without `set`. `eval` is excluded: that name
/// is the protocol command `eval <node> <expr>`.
fn set_alias(cmd: &str) -> Option<&str> {
    let free = STRING_KEYS.iter().filter(|k| **k != "eval");
    let all: Vec<&str> = free
        .copied()
        .chain(LIST_KEYS.iter().map(|(k, _)| *k))
        .chain(BOOL_KEYS)
        .chain(NUMBER_KEYS)
        .chain(NAME_LIST_KEYS)
        .chain(["cert"])
        .collect();
    all.into_iter().find(|k| *k == cmd)
}

struct Session {
    /// Invariant: `pos <= args.len()`; everything before `pos` is consumed.
    args: Vec<(String, Value)>,
    pos: usize,
    /// The profile commands act on (`None`: the top level).
    profile: Option<String>,
}

impl Session {
    fn next_arg(&mut self, command: &str, what: &'static str) -> Result<Value, CmdError> {
        let a = self
            .args
            .get(self.pos)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| CmdError::MissingArgument {
                command: command.to_string(),
                what,
            })?;
        self.pos += 1;
        Ok(a)
    }

    fn next_string(&mut self, command: &str, what: &'static str) -> Result<String, CmdError> {
        match self.next_arg(command, what)? {
            Value::String(s) => Ok(s),
            other => Err(bad(
                command,
                format!("{what} must be a string, not {other}"),
            )),
        }
    }

    fn target<'a>(&self, rc: &'a mut RcDoc) -> Result<&'a mut Map<String, Value>, CmdError> {
        match &self.profile {
            None => Ok(rc.root_mut()),
            Some(p) => Ok(rc.profile_mut(p)?),
        }
    }

    /// Runs the command at `pos`; false (consuming nothing) if it is not a config command.
    fn step(&mut self, rc: &mut RcDoc, out: &mut dyn Write) -> Result<bool, CmdError> {
        let Value::String(cmd) = self.args[self.pos].1.clone() else {
            return Ok(false);
        };
        let start = self.pos;
        self.pos += 1;
        let known = self.dispatch(&cmd, rc, out)?;
        if !known {
            self.pos = start;
        }
        Ok(known)
    }

    fn dispatch(
        &mut self,
        cmd: &str,
        rc: &mut RcDoc,
        out: &mut dyn Write,
    ) -> Result<bool, CmdError> {
        match cmd {
            "profile" => {
                let name = self.next_string(cmd, "profile name")?;
                // Only checked here (a value of the wrong type is an error); created when a
                // command writes into it.
                rc.profile(&name)?;
                self.profile = Some(name);
                return Ok(true);
            }
            "delprofile" => {
                let name = self.next_string(cmd, "profile name")?;
                if !rc.remove_profile(&name)? {
                    require_profile(rc, &name)?;
                }
                return Ok(true);
            }
            "showprofile" => {
                let name = self.next_string(cmd, "profile name")?;
                require_profile(rc, &name)?;
                let p = rc.profile(&name)?.cloned().unwrap_or_default();
                out.write_all(to_pretty_json(&Value::Object(p)).as_bytes())
                    .map_err(CmdError::Output)?;
                return Ok(true);
            }
            "showconfig" => {
                self.showconfig(rc, out)?;
                return Ok(true);
            }
            "gensecret" => {
                self.target(rc)?
                    .insert("secret".into(), Value::String(generate_secret()));
                return Ok(true);
            }
            "gencert" => {
                // Checked first, so a key is not generated for a document that cannot take it.
                self.target(rc)?;
                let pem = crate::gencert::gencert().map_err(CmdError::Generate)?;
                self.target(rc)?.insert("cert".into(), Value::String(pem));
                return Ok(true);
            }
            _ => {}
        }
        if let Some(key) = cmd.strip_prefix("del") {
            // delX for every settable key, and del<singular> for list entries.
            if let Some((list, _)) = LIST_KEYS.iter().find(|(_, one)| *one == key) {
                let item = self.next_arg(cmd, "entry")?;
                let t = self.target(rc)?;
                if let Some(v) = t.get_mut(*list) {
                    list_mut(list, v)?.retain(|e| *e != item);
                }
                return Ok(true);
            }
            if is_settable(key) {
                self.target(rc)?.remove(key);
                return Ok(true);
            }
        }
        if let Some(one) = cmd.strip_prefix("add") {
            if let Some((list, _)) = LIST_KEYS.iter().find(|(_, o)| *o == one) {
                let item = self.next_arg(cmd, "entry")?;
                check_list_item(cmd, list, &item)?;
                let t = self.target(rc)?;
                let v = t.entry(*list).or_insert_with(|| Value::Array(Vec::new()));
                if v.is_null() {
                    *v = Value::Array(Vec::new());
                }
                let l = list_mut(list, v)?;
                l.retain(|e| *e != item);
                l.push(item);
                return Ok(true);
            }
        }
        let key = match cmd.strip_prefix("set") {
            Some(k) if is_settable(k) => k,
            _ => match set_alias(cmd) {
                Some(k) => k,
                None => return Ok(false),
            },
        };
        let value = self.value_for(cmd, key)?;
        self.target(rc)?.insert(key.to_string(), value);
        Ok(true)
    }

    /// Reads and checks the argument of `set<key>`.
    fn value_for(&mut self, cmd: &str, key: &str) -> Result<Value, CmdError> {
        if key == "cert" {
            let path = self.next_string(cmd, "key+certificate PEM file name")?;
            return Ok(Value::String(read_pem(&path)?));
        }
        if STRING_KEYS.contains(&key) {
            let s = self.next_string(cmd, "value")?;
            if key == "nodeid" && s.is_empty() {
                return Err(bad(cmd, "the node ID must not be empty".into()));
            }
            return Ok(Value::String(s));
        }
        let arg = self.next_arg(cmd, "value")?;
        if BOOL_KEYS.contains(&key) {
            return parse_bool(&arg).map(Value::Bool).ok_or_else(|| {
                bad(
                    cmd,
                    format!("expected a boolean (1/0, true/false), not {arg}"),
                )
            });
        }
        if NUMBER_KEYS.contains(&key) {
            return parse_seconds(&arg).ok_or_else(|| {
                bad(
                    cmd,
                    format!("expected a positive number of seconds, not {arg}"),
                )
            });
        }
        let list = split_list(cmd, arg)?;
        let known: &[&str] = match key {
            // `storable` is kept for Perl nodes sharing the rc file; aemp itself ignores it.
            "framing_format" => &KNOWN_FRAMINGS,
            "auth_offer" | "auth_accept" => &AUTH_METHODS,
            _ => &[],
        };
        for item in &list {
            check_list_item(cmd, key, item)?;
            if !known.is_empty() && !item.as_str().is_some_and(|s| known.contains(&s)) {
                return Err(bad(
                    cmd,
                    format!("unknown name {item} (known: {})", known.join(", ")),
                ));
            }
        }
        Ok(Value::Array(list))
    }

    /// `showconfig [<profile> [key value...]]`: prints the merged configuration of a
    /// profile, with the remaining arguments as `configure` arguments. Consumes the rest.
    fn showconfig(&mut self, rc: &RcDoc, out: &mut dyn Write) -> Result<(), CmdError> {
        let rest: Vec<Value> = self.args[self.pos..]
            .iter()
            .map(|(_, v)| v.clone())
            .collect();
        self.pos = self.args.len();
        // After the profile name come key/value pairs.
        if rest.len() > 1 && rest[1..].len() % 2 == 1 {
            return Err(bad("showconfig", "key without value".into()));
        }
        let builder = if rest.is_empty() {
            ConfigBuilder::default()
        } else {
            if let Value::String(name) = &rest[0] {
                require_profile(rc, name)?;
            }
            ConfigBuilder::from_args(&rest)?
        };
        let (_, merged) = builder.rc_doc(rc.clone()).merged()?;
        out.write_all(to_pretty_json(&Value::Object(merged)).as_bytes())
            .map_err(CmdError::Output)
    }
}

fn bad(command: &str, message: String) -> CmdError {
    CmdError::BadArgument {
        command: command.to_string(),
        message,
    }
}

fn is_settable(key: &str) -> bool {
    key == "cert"
        || STRING_KEYS.contains(&key)
        || LIST_KEYS.iter().any(|(k, _)| *k == key)
        || BOOL_KEYS.contains(&key)
        || NUMBER_KEYS.contains(&key)
        || NAME_LIST_KEYS.contains(&key)
}

/// The list stored under `key`, which must be an array.
fn list_mut<'a>(key: &str, v: &'a mut Value) -> Result<&'a mut Vec<Value>, CmdError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(ConfigError::bad_type(key, "an array", other).into()),
    }
}

/// Seeds and binds are strings; services are strings or `[func, args...]`.
fn check_list_item(cmd: &str, key: &str, item: &Value) -> Result<(), CmdError> {
    let ok = match item {
        Value::String(_) => true,
        Value::Array(a) => key == "services" && a.first().is_some_and(Value::is_string),
        _ => false,
    };
    if ok {
        Ok(())
    } else if key == "services" {
        Err(bad(
            cmd,
            format!("a service is a string or [function, args...], not {item}"),
        ))
    } else {
        Err(bad(
            cmd,
            format!("{key} entries must be strings, not {item}"),
        ))
    }
}

/// A list argument: a JSON array, or a comma-separated string (empty string: empty list,
/// as Perl's `split` gives).
fn split_list(cmd: &str, arg: Value) -> Result<Vec<Value>, CmdError> {
    match arg {
        Value::Array(a) => Ok(a),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(s.split(',').map(|p| Value::String(p.to_string())).collect()),
        other => Err(bad(
            cmd,
            format!("expected a comma-separated list or JSON array, not {other}"),
        )),
    }
}

fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A positive, finite number of seconds, stored as an integer when it is one.
fn parse_seconds(v: &Value) -> Option<Value> {
    let f = match v {
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        Value::Number(n) => n.as_f64()?,
        _ => return None,
    };
    if !(f.is_finite() && f > 0.0) {
        return None;
    }
    if f.fract() == 0.0 && f < 1e15 {
        Some(Value::from(f as u64))
    } else {
        serde_json::Number::from_f64(f).map(Value::Number)
    }
}

fn read_pem(path: &str) -> Result<String, CmdError> {
    let err = |source| CmdError::ReadFile {
        path: path.to_string(),
        source,
    };
    let f = std::fs::File::open(path).map_err(err)?;
    let mut bytes = Vec::new();
    f.take(MAX_PEM_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > MAX_PEM_SIZE {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            "too large for a PEM file",
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| err(io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A unique temporary directory, removed on drop; tests never touch the real rc file.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "aemp-cli-rc-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    /// Runs `args` on `rc`, returning the outcome and the printed output.
    fn go(rc: &mut RcDoc, args: &[&str]) -> Result<(RcOutcome, String), CmdError> {
        let mut out = Vec::new();
        let o = run(&argv(args), rc, &mut out)?;
        Ok((o, String::from_utf8(out).unwrap()))
    }

    fn root(rc: &RcDoc) -> Value {
        Value::Object(rc.root().clone())
    }

    #[test]
    fn identity_and_secret_commands() {
        let mut rc = RcDoc::new();
        let (o, _) = go(
            &mut rc,
            &["setnodeid", "a/%n/", "secret", "s3", "snd", "x", "[1]"],
        )
        .unwrap();
        assert!(o.changed);
        assert_eq!(o.rest, argv(&["snd", "x", "[1]"]));
        assert_eq!(o.rest_values, vec![json!("snd"), json!("x"), json!([1])]);
        assert_eq!(rc.root()["nodeid"], json!("a/%n/"));
        assert_eq!(rc.root()["secret"], json!("s3"));

        go(&mut rc, &["gensecret"]).unwrap();
        let s = rc.root()["secret"].as_str().unwrap().to_string();
        assert_eq!(s.len(), 180);
        go(&mut rc, &["delsecret", "delnodeid"]).unwrap();
        assert_eq!(root(&rc), json!({"version": 1}));

        assert!(matches!(
            go(&mut rc, &["setsecret"]),
            Err(CmdError::MissingArgument { .. })
        ));
        assert!(go(&mut rc, &["setnodeid", ""]).is_err());
        assert!(go(&mut rc, &["setnodeid", "[1]"]).is_err());
    }

    #[test]
    fn cert_commands() {
        let dir = TempDir::new("cert");
        let pem = dir.0.join("c.pem");
        std::fs::write(&pem, "-----BEGIN X-----\nabc\n-----END X-----\n").unwrap();
        let mut rc = RcDoc::new();
        go(&mut rc, &["setcert", pem.to_str().unwrap()]).unwrap();
        assert_eq!(
            rc.root()["cert"],
            json!("-----BEGIN X-----\nabc\n-----END X-----\n")
        );
        go(&mut rc, &["delcert"]).unwrap();
        assert!(!rc.root().contains_key("cert"));
        // gencert: a fresh key and self-signed certificate that the TLS layer accepts, in
        // the profile it follows.
        go(&mut rc, &["profile", "p", "gencert"]).unwrap();
        let pem = rc.root()["profile"]["p"]["cert"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(pem.contains("-----BEGIN PRIVATE KEY-----"), "{pem}");
        assert!(pem.contains("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert!(!rc.root().contains_key("cert"));
        let missing = dir.0.join("nope.pem");
        assert!(matches!(
            go(&mut rc, &["cert", missing.to_str().unwrap()]),
            Err(CmdError::ReadFile { .. })
        ));
    }

    #[test]
    fn list_commands() {
        let mut rc = RcDoc::new();
        go(
            &mut rc,
            &["setseeds", "a:1,b:2", "addseed", "c:3", "addseed", "a:1"],
        )
        .unwrap();
        assert_eq!(rc.root()["seeds"], json!(["b:2", "c:3", "a:1"]));
        go(&mut rc, &["delseed", "b:2", "delseed", "zz:9"]).unwrap();
        assert_eq!(rc.root()["seeds"], json!(["c:3", "a:1"]));
        go(&mut rc, &["delseeds"]).unwrap();
        assert!(!rc.root().contains_key("seeds"));

        go(
            &mut rc,
            &[
                "binds",
                r#"["*:4040","127.0.0.1:0"]"#,
                "delbind",
                "*:4040",
                "addbind",
                "[::1]:*",
            ],
        )
        .unwrap();
        assert_eq!(rc.root()["binds"], json!(["127.0.0.1:0", "[::1]:*"]));
        go(&mut rc, &["setbinds", ""]).unwrap();
        assert_eq!(rc.root()["binds"], json!([]));
        go(&mut rc, &["delbinds"]).unwrap();

        go(
            &mut rc,
            &[
                "setservices",
                "A::,f",
                "addservice",
                r#"["g",1,{"k":2}]"#,
                "addservice",
                "f",
            ],
        )
        .unwrap();
        assert_eq!(
            rc.root()["services"],
            json!(["A::", ["g", 1, {"k": 2}], "f"])
        );
        go(&mut rc, &["delservice", r#"["g",1,{"k":2}]"#]).unwrap();
        assert_eq!(rc.root()["services"], json!(["A::", "f"]));
        go(&mut rc, &["delservices"]).unwrap();

        go(&mut rc, &["seteval", "print 1", "deleval"]).unwrap();
        assert_eq!(root(&rc), json!({"version": 1}));
        go(&mut rc, &["seteval", "x"]).unwrap();
        assert_eq!(rc.root()["eval"], json!("x"));

        assert!(go(&mut rc, &["addseed", "[1]"]).is_err());
        assert!(go(&mut rc, &["setseeds", "{}"]).is_err());
        // A wrongly typed value in the file is reported, not clobbered.
        let mut bad = RcDoc::from_text(r#"{"seeds": "x:1"}"#).unwrap();
        let err = go(&mut bad, &["addseed", "y:2"]).unwrap_err();
        assert_eq!(err.to_string(), "seeds must be an array (got \"x:1\")");
    }

    #[test]
    fn eval_without_set_is_the_protocol_command() {
        let mut rc = RcDoc::new();
        let (o, _) = go(&mut rc, &["eval", "node", "1+1"]).unwrap();
        assert!(!o.changed);
        assert_eq!(o.rest, argv(&["eval", "node", "1+1"]));
    }

    #[test]
    fn tunables() {
        let mut rc = RcDoc::new();
        go(
            &mut rc,
            &[
                "setsecure",
                "1",
                "autocork",
                "false",
                "nodelay",
                "0",
                "setmonitor_timeout",
                "5",
                "connect_interval",
                "0.5",
                "framing_format",
                "json,cbor",
                "auth_offer",
                r#"["hmac_sha3_512"]"#,
                "setauth_accept",
                "hmac_sha3_512,cleartext",
            ],
        )
        .unwrap();
        assert_eq!(
            root(&rc),
            json!({"version": 1, "secure": true, "autocork": false, "nodelay": false,
                   "monitor_timeout": 5, "connect_interval": 0.5,
                   "framing_format": ["json", "cbor"], "auth_offer": ["hmac_sha3_512"],
                   "auth_accept": ["hmac_sha3_512", "cleartext"]})
        );
        go(
            &mut rc,
            &[
                "delsecure",
                "delautocork",
                "delnodelay",
                "delmonitor_timeout",
                "delconnect_interval",
                "delframing_format",
                "delauth_offer",
                "delauth_accept",
            ],
        )
        .unwrap();
        assert_eq!(root(&rc), json!({"version": 1}));
        for bad in [
            &["secure", "maybe"][..],
            &["monitor_timeout", "0"],
            &["connect_interval", "-1"],
            &["connect_interval", "soon"],
            &["framing_format", "xml"],
            &["auth_offer", "md6"],
        ] {
            assert!(
                matches!(go(&mut rc, bad), Err(CmdError::BadArgument { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn profile_commands() {
        let mut rc = RcDoc::new();
        go(
            &mut rc,
            &[
                "secret",
                "top",
                "profile",
                "w",
                "setparent",
                "base",
                "seeds",
                "s:1",
            ],
        )
        .unwrap();
        go(&mut rc, &["profile", "base", "monitor_timeout", "7"]).unwrap();
        assert_eq!(
            root(&rc),
            json!({"version": 1, "secret": "top", "profile": {
                "w": {"parent": "base", "seeds": ["s:1"]},
                "base": {"monitor_timeout": 7}}})
        );
        let (_, shown) = go(&mut rc, &["showprofile", "w"]).unwrap();
        assert_eq!(
            shown,
            "{\n   \"parent\" : \"base\",\n   \"seeds\" : [\n      \"s:1\"\n   ]\n}\n"
        );
        // Unknown profile names are errors, not an empty profile or the defaults.
        for args in [
            &["showprofile", "none"][..],
            &["showconfig", "none"],
            &["delprofile", "none"],
        ] {
            let err = go(&mut rc, args).unwrap_err();
            assert_eq!(
                err.to_string(),
                r#"unknown profile "none" (the rc file has "base", "w")"#,
                "{args:?}"
            );
        }
        let err = go(&mut RcDoc::new(), &["showprofile", "x"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown profile "x" (the rc file has no profiles)"#
        );
        // profile <name> only selects; a command writing into it, or the end of the
        // command line, creates it.
        let before = root(&rc);
        let (o, _) = go(&mut rc, &["profile", "new", "snd", "p", "x"]).unwrap();
        assert_eq!(o.profile.as_deref(), Some("new"));
        assert!(!o.changed);
        assert_eq!(root(&rc), before);
        go(&mut rc, &["profile", "new"]).unwrap();
        assert_eq!(rc.root()["profile"]["new"], json!({}));
        go(&mut rc, &["delprofile", "new"]).unwrap();

        // showconfig: the merge, with extra configure arguments; consumes everything.
        let (o, shown) = go(
            &mut rc,
            &[
                "showconfig",
                "w",
                "secret",
                "arg",
                "connect_interval",
                "[3]",
            ],
        )
        .unwrap();
        assert!(o.rest.is_empty());
        let v: Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(v["secret"], json!("top"), "rc wins over arguments");
        assert_eq!(v["monitor_timeout"], json!(7), "parent applies");
        assert_eq!(v["seeds"], json!(["s:1"]));
        assert_eq!(v["connect_interval"], json!([3]));
        let (_, shown) = go(&mut rc, &["showconfig", "w", "secret", "arg", "force", "1"]).unwrap();
        let v: Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(v["secret"], json!("arg"));
        assert!(go(&mut rc, &["showconfig", "w", "secret"]).is_err());

        go(
            &mut rc,
            &["profile", "w", "delparent", "delprofile", "base"],
        )
        .unwrap();
        assert_eq!(
            root(&rc),
            json!({"version": 1, "secret": "top", "profile": {"w": {"seeds": ["s:1"]}}})
        );
        assert!(matches!(
            go(&mut rc, &["profile"]),
            Err(CmdError::MissingArgument { .. })
        ));
    }

    #[test]
    fn whole_array_argument() {
        let mut rc = RcDoc::new();
        let (o, _) = go(
            &mut rc,
            &[r#"["setseeds", ["a:1", "b:2"], "cal", "p", 5, "[x"]"#],
        )
        .unwrap();
        assert_eq!(rc.root()["seeds"], json!(["a:1", "b:2"]));
        assert_eq!(o.rest, argv(&["cal", "p", "5", "[x"]));
        assert_eq!(
            o.rest_values,
            vec![json!("cal"), json!("p"), json!(5), json!("[x")]
        );
        assert!(go(&mut rc, &["[1", "x"]).is_err());
        assert!(go(&mut rc, &["[1]", "x"]).is_err());
        assert!(matches!(
            go(&mut rc, &["secret", "{bad"]),
            Err(CmdError::BadJson { .. })
        ));
        assert_eq!(decode_arg("\"quoted\"").unwrap(), json!("quoted"));
        assert_eq!(decode_arg("plain").unwrap(), json!("plain"));
        assert_eq!(
            decode_arg("[fd00::1]:4040").unwrap(),
            json!("[fd00::1]:4040")
        );
        assert_eq!(decode_arg("[1,2]").unwrap(), json!([1, 2]));
        assert!(decode_arg("[1,").is_err());
        assert!(decode_arg("[name]").is_err());
    }

    #[test]
    fn edits_through_a_file_are_saved_once() {
        let dir = TempDir::new("save");
        let path = dir.0.join("rc");
        std::fs::write(&path, "{ # mine\n \"secret\": \"a\", }\n").unwrap();
        let mut rc = RcDoc::load(&path).unwrap();
        let (o, _) = go(&mut rc, &["secret", "a", "showconfig"]).unwrap();
        assert!(!o.changed);
        assert!(!rc.save().unwrap());
        assert!(!dir.0.join("rc~").exists());
        let (o, _) = go(&mut rc, &["addseed", "h:1"]).unwrap();
        assert!(o.changed);
        assert!(rc.save().unwrap());
        assert!(std::fs::read_to_string(dir.0.join("rc~"))
            .unwrap()
            .contains("# mine"));
        let back = RcDoc::load(&path).unwrap();
        assert_eq!(back.root()["seeds"], json!(["h:1"]));
    }
}
