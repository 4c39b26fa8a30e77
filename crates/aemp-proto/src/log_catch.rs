//! The log catcher (Perl's `AnyEvent::MP::LogCatcher`): its wire form and the subscription
//! table of a node that forwards its log records.
//!
//! A catching node sends every other node the node-port request
//! `["AnyEvent::MP::LogCatcher::connect", 0, "<catcher>#<lport>", <level>]` (the function
//! call form of the node port; on the wire the frame starts with the empty port name of the
//! node port). That node then sends `[<time>, <title>, <level>, <message>]` to `lport` for
//! each of its log records whose level is at most `<level>`, until `lport` dies (it monitors
//! it). Levels are AnyEvent::Log's: 1 fatal ... 9 trace, a lower number being more severe.
//!
//! [`Forwarder`] is the forwarding side as a state machine: it keeps the subscribers, a
//! bounded queue of records waiting to be sent, and counts of records it had to drop because
//! the queue was full; [`Forwarder::drain`] turns the queue into the messages to send, with
//! a notice per subscriber that missed records. It reads no clock: `now` is passed in.
//!
//! ```
//! use aemp_proto::log_catch::{Forwarder, LogEntry, Offer, INFO, WARN, DEBUG};
//! use aemp_proto::PortId;
//!
//! let mut f = Forwarder::new(100);
//! let catcher: PortId = "catcher#lp1".parse().unwrap();
//! f.subscribe(catcher.clone(), INFO);
//! let rec = |level, text: &str| LogEntry::new(1.5, "app", level, text);
//! assert_eq!(f.offer(rec(WARN, "disk full")), Offer::Queued { wake: true });
//! assert_eq!(f.offer(rec(DEBUG, "detail")), Offer::Filtered); // above the subscriber's level
//! let out = f.drain(2.0);
//! assert_eq!(out.len(), 1);
//! assert_eq!(out[0].0, catcher);
//! assert_eq!(out[0].1.to_string(), r#"[1.5,"app",5,"disk full"]"#);
//! ```

use crate::{Msg, PortId, Str, Value};
use std::collections::VecDeque;

/// The node-port function a catcher calls on every node it catches the logs of.
pub const CONNECT_FUNCTION: &str = "AnyEvent::MP::LogCatcher::connect";

/// The version argument of the connect request (the reference sends 0 and ignores it).
pub const CONNECT_VERSION: i64 = 0;

/// Level 0: nothing is logged (AnyEvent::Log's "off").
pub const OFF: u8 = 0;
/// AnyEvent::Log level 1, `fatal`.
pub const FATAL: u8 = 1;
/// AnyEvent::Log level 2, `alert`.
pub const ALERT: u8 = 2;
/// AnyEvent::Log level 3, `critical`.
pub const CRITICAL: u8 = 3;
/// AnyEvent::Log level 4, `error` (tracing's ERROR).
pub const ERROR: u8 = 4;
/// AnyEvent::Log level 5, `warn` (tracing's WARN).
pub const WARN: u8 = 5;
/// AnyEvent::Log level 6, `note`.
pub const NOTE: u8 = 6;
/// AnyEvent::Log level 7, `info` (tracing's INFO).
pub const INFO: u8 = 7;
/// AnyEvent::Log level 8, `debug` (tracing's DEBUG).
pub const DEBUG: u8 = 8;
/// AnyEvent::Log level 9, `trace` (tracing's TRACE).
pub const TRACE: u8 = 9;

/// The target (the "context title" of the reference) of the records this implementation
/// makes itself: the notices about dropped records.
pub const NOTICE_TARGET: &str = "aemp::log_catcher";

/// The name of a level 1..=9 (`"off"` for 0, `"trace"` above 9).
pub fn level_name(level: u8) -> &'static str {
    match level {
        0 => "off",
        1 => "fatal",
        2 => "alert",
        3 => "critical",
        4 => "error",
        5 => "warn",
        6 => "note",
        7 => "info",
        8 => "debug",
        _ => "trace",
    }
}

/// Why a level is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a log level: {0:?} (expected 0..9 or a name: fatal, alert, critical, error, warn, note, info, debug, trace)")]
pub struct LevelError(pub String);

/// A level from a number `0..=9` or a name, as AnyEvent::Log accepts them: `fatal` (also
/// `emerg`), `alert`, `critical` (`crit`), `error` (`err`), `warn` (`warning`), `note`
/// (`notice`), `info`, `debug`, `trace`, `off` (`none`, 0) and `all` (9). Case-insensitive.
///
/// ```
/// use aemp_proto::log_catch::{parse_level, WARN, NOTE};
/// assert_eq!(parse_level("warn"), Ok(WARN));
/// assert_eq!(parse_level("6"), Ok(NOTE));
/// assert!(parse_level("loud").is_err());
/// assert!(parse_level("10").is_err());
/// ```
pub fn parse_level(s: &str) -> Result<u8, LevelError> {
    let t = s.trim().to_ascii_lowercase();
    let level = match t.as_str() {
        "off" | "none" => 0,
        "fatal" | "emerg" => 1,
        "alert" => 2,
        "critical" | "crit" => 3,
        "error" | "err" => 4,
        "warn" | "warning" => 5,
        "note" | "notice" => 6,
        "info" => 7,
        "debug" => 8,
        "trace" | "all" => 9,
        n => match n.parse::<u8>() {
            Ok(l) if l <= TRACE => l,
            _ => return Err(LevelError(s.to_string())),
        },
    };
    Ok(level)
}

/// A level from a message value: an integer `0..=9` (a float with an integral value is
/// taken too, as Perl numbers may arrive either way), or a string [`parse_level`] takes.
pub fn level_of(v: &Value) -> Result<u8, LevelError> {
    match v {
        Value::Str(s) => parse_level(s),
        Value::Int(i) if (0..=TRACE as i64).contains(i) => Ok(*i as u8),
        Value::Float(f) if f.fract() == 0.0 && (0.0..=TRACE as f64).contains(f) => Ok(*f as u8),
        other => Err(LevelError(other.to_string())),
    }
}

/// Why a connect request or a log record is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogCatchError {
    /// The connect request has fewer than three arguments.
    #[error("connect: expected (version, port, level), got {0} argument(s)")]
    ConnectArgs(usize),
    /// The subscriber port is not a port ID of another node's port.
    #[error("connect: bad subscriber port {0}")]
    Port(String),
    /// The level is not one.
    #[error("connect: {0}")]
    Level(#[from] LevelError),
    /// A log record is not `[time, title, level, message]`.
    #[error("log record: expected [time, title, level, message], got {0}")]
    Entry(String),
}

/// A parsed `AnyEvent::MP::LogCatcher::connect` request.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    /// The port the records go to.
    pub port: PortId,
    /// The highest (least severe) level forwarded.
    pub level: u8,
}

impl ConnectRequest {
    /// Reads the arguments of the function call (the version, ignored as the reference
    /// does, the port, the level); extra arguments are ignored.
    ///
    /// ```
    /// use aemp_proto::log_catch::ConnectRequest;
    /// use aemp_proto::Value;
    /// let args = [Value::from(0), Value::from("c#p"), Value::from(7)];
    /// let req = ConnectRequest::parse(&args).unwrap();
    /// assert_eq!((req.port.to_string().as_str(), req.level), ("c#p", 7));
    /// assert!(ConnectRequest::parse(&args[..2]).is_err());
    /// ```
    pub fn parse(args: &[Value]) -> Result<ConnectRequest, LogCatchError> {
        let [_version, port, level, ..] = args else {
            return Err(LogCatchError::ConnectArgs(args.len()));
        };
        let port = port
            .as_str()
            .and_then(|s| PortId::parse(s).ok())
            .filter(|p| !p.is_node_port())
            .ok_or_else(|| LogCatchError::Port(port.to_string()))?;
        let level = level_of(level)?;
        Ok(ConnectRequest { port, level })
    }

    /// The message to send to the node port of the node whose logs are wanted (the
    /// function name first, as `snd_to_func` sends it).
    pub fn to_msg(&self) -> Msg {
        Msg::from(vec![
            Value::from(CONNECT_FUNCTION),
            Value::Int(CONNECT_VERSION),
            Value::from(self.port.to_string()),
            Value::Int(self.level.into()),
        ])
    }
}

/// One log record as it travels: `[time, title, level, message]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// When it was logged, in seconds since the Unix epoch.
    pub time: f64,
    /// Where it was logged: the reference sends the logging context's title (usually a
    /// package name); aemp sends the `tracing` target (usually a module path).
    pub target: Str,
    /// Its level, 1..=9.
    pub level: u8,
    /// The text.
    pub message: String,
}

impl LogEntry {
    /// A record.
    pub fn new(time: f64, target: &str, level: u8, message: impl Into<String>) -> LogEntry {
        LogEntry {
            time,
            target: Str::from(target),
            level,
            message: message.into(),
        }
    }

    /// The message sent to the subscriber port.
    pub fn to_msg(&self) -> Msg {
        Msg::from(vec![
            Value::Float(self.time),
            Value::Str(self.target.clone()),
            Value::Int(self.level.into()),
            Value::from(self.message.as_str()),
        ])
    }

    /// Reads a record a subscriber port received. The level may be any number or level
    /// name (a number above 9 counts as 9, below 1 as 1); a message that is not a string is
    /// taken as its JSON text; the time must be a number.
    ///
    /// ```
    /// use aemp_proto::log_catch::LogEntry;
    /// use aemp_proto::msg;
    /// let e = LogEntry::parse(msg![1.25, "AnyEvent::MP::Kernel", 7, "hello"].as_slice()).unwrap();
    /// assert_eq!((e.time, e.target.as_str(), e.level, e.message.as_str()),
    ///            (1.25, "AnyEvent::MP::Kernel", 7, "hello"));
    /// assert!(LogEntry::parse(msg!["soon", "x", 7, "m"].as_slice()).is_err());
    /// ```
    pub fn parse(m: &[Value]) -> Result<LogEntry, LogCatchError> {
        let bad = || LogCatchError::Entry(Msg::from(m.to_vec()).to_string());
        let [time, target, level, message, ..] = m else {
            return Err(bad());
        };
        let time = time.as_f64().filter(|t| t.is_finite()).ok_or_else(bad)?;
        let target = match target {
            Value::Str(s) => s.clone(),
            Value::Null => Str::default(),
            other => Str::from(other.to_string()),
        };
        let level = match level {
            Value::Str(s) => parse_level(s).map_err(|_| bad())?,
            v => {
                let n = v.as_f64().filter(|n| n.is_finite()).ok_or_else(bad)?;
                n.clamp(FATAL as f64, TRACE as f64) as u8
            }
        }
        .max(FATAL);
        let message = match message {
            Value::Str(s) => s.to_string(),
            other => other.to_string(),
        };
        Ok(LogEntry {
            time,
            target,
            level,
            message,
        })
    }
}

/// What [`Forwarder::offer`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// No subscriber wants records of this level: nothing to do.
    Filtered,
    /// Queued; `wake` when the queue was empty before (the sender should be woken up).
    Queued {
        /// The queue was empty before this record.
        wake: bool,
    },
    /// The queue was full: the record was dropped and counted for every subscriber that
    /// wanted it (see [`Forwarder::drain`]).
    Dropped,
}

/// What [`Forwarder::subscribe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    /// A new subscriber.
    New,
    /// The port was subscribed already: its level is replaced (one copy of each record,
    /// however often a catcher connects).
    Updated,
}

#[derive(Debug, Clone)]
struct Sub {
    port: PortId,
    level: u8,
    /// Records of its levels dropped since the last drain.
    missed: u64,
}

/// The forwarding side of the log catcher: subscribers, the bounded queue of records to
/// send, and the counts of dropped records (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct Forwarder {
    subs: Vec<Sub>,
    queue: VecDeque<LogEntry>,
    capacity: usize,
    max_level: u8,
    dropped_total: u64,
}

impl Forwarder {
    /// A forwarder without subscribers whose queue holds at most `capacity` records
    /// (at least one).
    pub fn new(capacity: usize) -> Forwarder {
        Forwarder {
            subs: Vec::new(),
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            max_level: OFF,
            dropped_total: 0,
        }
    }

    /// Adds a subscriber (or changes the level of one).
    pub fn subscribe(&mut self, port: PortId, level: u8) -> Subscribed {
        let r = match self.subs.iter_mut().find(|s| s.port == port) {
            Some(s) => {
                s.level = level;
                Subscribed::Updated
            }
            None => {
                self.subs.push(Sub {
                    port,
                    level,
                    missed: 0,
                });
                Subscribed::New
            }
        };
        self.update_max();
        r
    }

    /// Removes a subscriber (its port died); false if it was not one. Records queued for it
    /// alone are left out of the next drain.
    pub fn unsubscribe(&mut self, port: &PortId) -> bool {
        let before = self.subs.len();
        self.subs.retain(|s| &s.port != port);
        self.update_max();
        if self.subs.is_empty() {
            self.queue.clear();
        }
        self.subs.len() != before
    }

    fn update_max(&mut self) {
        self.max_level = self.subs.iter().map(|s| s.level).max().unwrap_or(OFF);
    }

    /// The number of subscribers.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// True without subscribers.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// The highest level any subscriber wants ([`OFF`] without subscribers): records above
    /// it need not even be made.
    pub fn max_level(&self) -> u8 {
        self.max_level
    }

    /// Records waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Records dropped because the queue was full, since the start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Offers a record: queued if a subscriber wants its level and the queue has room,
    /// otherwise filtered or dropped (and counted).
    pub fn offer(&mut self, entry: LogEntry) -> Offer {
        if entry.level > self.max_level || entry.level == OFF {
            return Offer::Filtered;
        }
        if self.queue.len() >= self.capacity {
            self.dropped_total += 1;
            for s in self.subs.iter_mut().filter(|s| entry.level <= s.level) {
                s.missed += 1;
            }
            return Offer::Dropped;
        }
        let wake = self.queue.is_empty();
        self.queue.push_back(entry);
        Offer::Queued { wake }
    }

    /// Empties the queue: the messages to send, in order, each to the subscribers whose
    /// level takes it. Then, for each subscriber that missed records since the last drain,
    /// a notice record saying how many (target [`NOTICE_TARGET`], time `now`, level
    /// [`WARN`] or the subscriber's level if that is lower, so that it passes its filter).
    pub fn drain(&mut self, now: f64) -> Vec<(PortId, Msg)> {
        let mut out = Vec::new();
        for entry in self.queue.drain(..) {
            let wanting = self.subs.iter().filter(|s| entry.level <= s.level);
            let n = wanting.clone().count();
            let mut msg = Some(entry.to_msg());
            for (i, s) in wanting.enumerate() {
                let m = if i + 1 == n {
                    msg.take().unwrap_or_default()
                } else {
                    msg.clone().unwrap_or_default()
                };
                out.push((s.port.clone(), m));
            }
        }
        for s in self.subs.iter_mut().filter(|s| s.missed > 0) {
            let notice = LogEntry::new(
                now,
                NOTICE_TARGET,
                s.level.clamp(FATAL, WARN),
                format!(
                    "{} log record(s) dropped: they came faster than they could be sent",
                    s.missed
                ),
            );
            s.missed = 0;
            out.push((s.port.clone(), notice.to_msg()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg;

    fn port(s: &str) -> PortId {
        s.parse().unwrap()
    }

    fn rec(level: u8, text: &str) -> LogEntry {
        LogEntry::new(10.0, "t", level, text)
    }

    fn texts(out: &[(PortId, Msg)], to: &PortId) -> Vec<String> {
        out.iter()
            .filter(|(p, _)| p == to)
            .map(|(_, m)| m[3].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn levels_by_number_and_name() {
        for (s, l) in [
            ("fatal", 1),
            ("EMERG", 1),
            ("alert", 2),
            ("crit", 3),
            ("critical", 3),
            ("err", 4),
            ("error", 4),
            ("warning", 5),
            ("notice", 6),
            ("note", 6),
            ("info", 7),
            ("debug", 8),
            ("trace", 9),
            ("all", 9),
            ("off", 0),
            ("0", 0),
            (" 9 ", 9),
        ] {
            assert_eq!(parse_level(s), Ok(l), "{s}");
        }
        for bad in ["", "10", "-1", "verbose", "5.5"] {
            assert!(parse_level(bad).is_err(), "{bad}");
        }
        assert_eq!(level_of(&Value::Int(8)), Ok(8));
        assert_eq!(level_of(&Value::Float(6.0)), Ok(6));
        assert_eq!(level_of(&Value::from("debug")), Ok(8));
        assert!(level_of(&Value::Int(10)).is_err());
        assert!(level_of(&Value::Float(6.5)).is_err());
        assert!(level_of(&Value::Null).is_err());
        assert_eq!(level_name(5), "warn");
        assert_eq!(level_name(0), "off");
    }

    #[test]
    fn connect_request_round_trip_and_errors() {
        let req = ConnectRequest {
            port: port("catcher#lp"),
            level: 7,
        };
        let m = req.to_msg();
        assert_eq!(
            m.to_string(),
            r#"["AnyEvent::MP::LogCatcher::connect",0,"catcher#lp",7]"#
        );
        assert_eq!(ConnectRequest::parse(&m.as_slice()[1..]), Ok(req));
        assert_eq!(
            ConnectRequest::parse(&[Value::Int(0)]),
            Err(LogCatchError::ConnectArgs(1))
        );
        assert!(matches!(
            ConnectRequest::parse(msg![0, "no-hash", 7].as_slice()),
            Err(LogCatchError::Port(_))
        ));
        assert!(matches!(
            ConnectRequest::parse(msg![0, "node#", 7].as_slice()),
            Err(LogCatchError::Port(_))
        ));
        assert!(matches!(
            ConnectRequest::parse(msg![0, 5, 7].as_slice()),
            Err(LogCatchError::Port(_))
        ));
        assert!(matches!(
            ConnectRequest::parse(msg![0, "c#p", "loud"].as_slice()),
            Err(LogCatchError::Level(_))
        ));
        // A name is taken as the reference's AnyEvent::Log would.
        assert_eq!(
            ConnectRequest::parse(msg![0, "c#p", "warn"].as_slice())
                .unwrap()
                .level,
            WARN
        );
    }

    #[test]
    fn entries_round_trip_and_are_read_leniently() {
        let e = LogEntry::new(1234.5, "AnyEvent::MP::Kernel", NOTE, "hi");
        assert_eq!(LogEntry::parse(e.to_msg().as_slice()), Ok(e));
        let e = LogEntry::parse(msg![1, Value::Null, 0, 42].as_slice()).unwrap();
        assert_eq!((e.time, e.target.as_str(), e.level), (1.0, "", FATAL));
        assert_eq!(e.message, "42");
        let e = LogEntry::parse(msg![1.0, "x", 12, "m"].as_slice()).unwrap();
        assert_eq!(e.level, TRACE);
        let e = LogEntry::parse(msg![1.0, "x", "debug", "m"].as_slice()).unwrap();
        assert_eq!(e.level, DEBUG);
        for bad in [
            msg![1.0, "x", 7],
            msg!["t", "x", 7, "m"],
            msg![1.0, "x", "loud", "m"],
            msg![1.0, "x", Value::Null, "m"],
        ] {
            assert!(
                matches!(
                    LogEntry::parse(bad.as_slice()),
                    Err(LogCatchError::Entry(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn routes_by_level_in_order() {
        let mut f = Forwarder::new(100);
        let (info, warn) = (port("c#info"), port("c#warn"));
        assert_eq!(f.offer(rec(ERROR, "nobody listens")), Offer::Filtered);
        assert_eq!(f.subscribe(info.clone(), INFO), Subscribed::New);
        assert_eq!(f.subscribe(warn.clone(), WARN), Subscribed::New);
        assert_eq!(f.max_level(), INFO);
        assert_eq!(f.offer(rec(INFO, "i1")), Offer::Queued { wake: true });
        assert_eq!(f.offer(rec(WARN, "w1")), Offer::Queued { wake: false });
        assert_eq!(f.offer(rec(DEBUG, "d1")), Offer::Filtered);
        assert_eq!(f.offer(rec(ERROR, "e1")), Offer::Queued { wake: false });
        assert_eq!(f.offer(rec(OFF, "never")), Offer::Filtered);
        let out = f.drain(11.0);
        assert_eq!(texts(&out, &info), ["i1", "w1", "e1"]);
        assert_eq!(texts(&out, &warn), ["w1", "e1"]);
        assert_eq!(f.queued(), 0);
        assert!(f.drain(12.0).is_empty());
        // A second connect of the same port changes its level, it adds no second copy.
        assert_eq!(f.subscribe(warn.clone(), DEBUG), Subscribed::Updated);
        assert_eq!(f.len(), 2);
        f.offer(rec(DEBUG, "d2"));
        assert_eq!(texts(&f.drain(13.0), &warn), ["d2"]);
    }

    #[test]
    fn a_dead_subscriber_gets_nothing_more() {
        let mut f = Forwarder::new(100);
        let (a, b) = (port("c#a"), port("c#b"));
        f.subscribe(a.clone(), TRACE);
        f.subscribe(b.clone(), WARN);
        f.offer(rec(INFO, "for a only"));
        f.offer(rec(WARN, "for both"));
        assert!(f.unsubscribe(&a));
        assert!(!f.unsubscribe(&a));
        assert_eq!(f.max_level(), WARN);
        let out = f.drain(1.0);
        assert!(texts(&out, &a).is_empty());
        assert_eq!(texts(&out, &b), ["for both"]);
        assert!(f.unsubscribe(&b));
        assert!(f.is_empty());
        assert_eq!(f.max_level(), OFF);
        assert_eq!(f.offer(rec(FATAL, "late")), Offer::Filtered);
        // The last subscriber gone: what was queued goes too.
        f.subscribe(a.clone(), TRACE);
        f.offer(rec(INFO, "queued"));
        f.unsubscribe(&a);
        assert_eq!(f.queued(), 0);
    }

    #[test]
    fn an_overflow_is_counted_and_reported_per_subscriber() {
        let mut f = Forwarder::new(2);
        let (all, errors) = (port("c#all"), port("c#err"));
        f.subscribe(all.clone(), TRACE);
        f.subscribe(errors.clone(), ERROR);
        f.offer(rec(INFO, "1"));
        f.offer(rec(INFO, "2"));
        assert_eq!(f.offer(rec(INFO, "3")), Offer::Dropped);
        assert_eq!(f.offer(rec(ERROR, "4")), Offer::Dropped);
        assert_eq!(f.offer(rec(TRACE, "5")), Offer::Dropped);
        assert_eq!(f.dropped_total(), 3);
        let out = f.drain(99.0);
        // The queued records first, then the notice: the dropped ones came after them.
        assert_eq!(
            texts(&out, &all),
            [
                "1",
                "2",
                "3 log record(s) dropped: they came faster than they could be sent"
            ]
        );
        assert_eq!(
            texts(&out, &errors),
            ["1 log record(s) dropped: they came faster than they could be sent"]
        );
        let notice = LogEntry::parse(out.last().unwrap().1.as_slice()).unwrap();
        assert_eq!(
            notice.level, ERROR,
            "the notice passes the subscriber's filter"
        );
        assert_eq!((notice.time, notice.target.as_str()), (99.0, NOTICE_TARGET));
        let to_all = out
            .iter()
            .find(|(p, m)| p == &all && m[0] == Value::Float(99.0));
        assert_eq!(
            LogEntry::parse(to_all.unwrap().1.as_slice()).unwrap().level,
            WARN
        );
        // Reported once.
        assert!(f.drain(100.0).is_empty());
    }
}
