//! Database requests too large for one frame, split into several with the same meaning.
//!
//! The global service builds some requests from many entries at once: a whole database
//! (`g_slave` to a new master, `g_set` to a new global peer), a family's snapshot for a new
//! watcher (`g_chg1`), the changes of a slave's whole shard (`g_upd` forwarded to the
//! other global nodes, `g_chg2` to watchers). Each entry passed the sender's check, but
//! together they can exceed [`Limits::max_message`], and a receiver closes the connection
//! on such a frame. [`fit`] checks every request against the node's [`Limits`] (in both
//! framings: the connection's is not known here) and splits what the protocol allows to
//! split (docs/protocol.md §6, §7):
//!
//! * `g_upd f set dels` and `g_chg2 f set dels`: several of the same request, each with a
//!   part of the set (then a part of the deleted keys): applied in order, they are the same
//!   change.
//! * `g_set db` (a global peer's shard) and `g_slave db` (a slave's database): the first
//!   request carries the internal families (`'l`, `'g`) and the rest follows as
//!   `g_upd f set []`, which the receiver merges into the same shard (the reference merges
//!   a `g_slave`'s and a `g_set`'s database family by family exactly like that).
//! * `g_chg1 f snapshot`: the first part as `g_chg1`, the rest as `g_chg2 f set []`. A new
//!   watcher sees the family arrive in parts (its first notification lists the first part
//!   as added, later ones the rest); a watcher that re-synchronises after a change of
//!   master diffs the first part against its copy, so it may see the keys of the later
//!   parts deleted and added again.
//!
//! What cannot be split (a `g_reply` to a query, a `g_found`, an entry that is too large on
//! its own, anything nested too deep) is not sent; [`Fitted::dropped`] names it for an
//! error log line on this node, the one that built it.

use crate::codec::{Framing, LimitError, Limits};
use crate::value::{Msg, Str, Value};

/// What [`fit`] made of a request.
#[derive(Debug, Default)]
pub struct Fitted {
    /// The requests to send, in order (the request itself when it fits).
    pub msgs: Vec<Msg>,
    /// What could not be sent: a description (request, family, key) and why.
    pub dropped: Vec<(String, LimitError)>,
}

/// Checks a frame `["", msg…]` in both framings.
fn check(limits: &Limits, msg: &[Value]) -> Result<(), LimitError> {
    limits.check_frame(Framing::Cbor, "", msg)?;
    limits.check_frame(Framing::Json, "", msg)
}

/// `msg` (a node-port request, tag first) as requests that each fit `limits`, with the
/// same meaning (see the [module docs](self)).
pub fn fit(msg: Msg, limits: &Limits) -> Fitted {
    let mut out = Fitted::default();
    let error = match check(limits, msg.as_slice()) {
        Ok(()) => {
            out.msgs.push(msg);
            return out;
        }
        Err(e) => e,
    };
    let tag = msg.tag().unwrap_or_default().to_string();
    let mut parts = msg.into_vec().into_iter();
    let _ = parts.next();
    match tag.as_str() {
        "g_upd" | "g_chg2" | "g_chg1" => {
            let family = parts.next().unwrap_or_default();
            let set = parts.next().unwrap_or_default();
            let dels = parts.next().unwrap_or_default();
            let set = match set {
                Value::Map(m) => m,
                Value::Null => Vec::new(),
                _ => {
                    out.dropped.push((format!("{tag} request"), error));
                    return out;
                }
            };
            let Value::Str(family) = &family else {
                out.dropped.push((format!("{tag} request"), error));
                return out;
            };
            // A snapshot's later parts are changes.
            let first = (tag == "g_chg1").then(|| Str::from("g_chg1"));
            let rest = if first.is_some() {
                "g_chg2"
            } else {
                tag.as_str()
            };
            split_family(limits, rest, family, set, first, &mut out);
            if let Value::List(dels) = dels {
                split_deletes(limits, &tag, family, dels, &mut out);
            }
        }
        "g_set" | "g_slave" => {
            let Some(Value::Map(db)) = parts.next() else {
                out.dropped.push((format!("{tag} request"), error));
                return out;
            };
            let (internal, user): (Vec<_>, Vec<_>) =
                db.into_iter().partition(|(f, _)| f.starts_with('\''));
            let head = Msg::from(vec![Value::from(tag.as_str()), Value::Map(internal)]);
            match check(limits, head.as_slice()) {
                Ok(()) => out.msgs.push(head),
                Err(e) => {
                    out.dropped
                        .push((format!("{tag} request (internal families)"), e));
                    return out;
                }
            }
            for (family, m) in user {
                if let Value::Map(set) = m {
                    split_family(limits, "g_upd", &family, set, None, &mut out);
                }
            }
        }
        _ => out.dropped.push((format!("{tag} request"), error)),
    }
    out
}

/// `[tag, family, {part}, []]` requests for the entries of `set`, each within the limit;
/// the first with tag `first` if given (a `g_chg1` carries no deletions).
fn split_family(
    limits: &Limits,
    tag: &str,
    family: &Str,
    set: Vec<(Str, Value)>,
    mut first: Option<Str>,
    out: &mut Fitted,
) {
    // Room for the request around the entries: tag, family, brackets, an empty list.
    let frame = |tag: &str, part: Vec<(Str, Value)>| -> Msg {
        let mut m = vec![
            Value::from(tag),
            Value::Str(family.clone()),
            Value::Map(part),
        ];
        if tag != "g_chg1" {
            m.push(Value::List(Vec::new()));
        }
        Msg::from(m)
    };
    let overhead = 64 + 6 * (tag.len() + family.len());
    let budget = limits.max_message.saturating_sub(overhead);
    let mut part: Vec<(Str, Value)> = Vec::new();
    let mut size = 0;
    let flush = |part: Vec<(Str, Value)>, first: &mut Option<Str>, out: &mut Fitted| {
        let t = first
            .take()
            .map_or_else(|| tag.to_string(), |t| t.to_string());
        let msg = frame(&t, part);
        match check(limits, msg.as_slice()) {
            Ok(()) => out.msgs.push(msg),
            Err(e) => out.dropped.push((format!("{t} of family {family}"), e)),
        }
    };
    for (k, v) in set {
        // The entry's exact JSON length as `{"k":v}` (at least its CBOR one).
        let entry = [Value::Map(vec![(k, v)])];
        let len = limits.frame_len(Framing::Json, "", &entry);
        let [Value::Map(mut e)] = entry else { continue };
        let Some((k, v)) = e.pop() else { continue };
        let Some(len) = len.filter(|l| *l <= budget) else {
            let e = check(limits, &[Value::Map(vec![(k.clone(), v)])]).err();
            let e = e.unwrap_or(LimitError::TooLarge {
                size: limits.max_message + 1,
                max: limits.max_message,
                framing: Framing::Json,
            });
            out.dropped
                .push((format!("{tag} entry of family {family}, key {k}"), e));
            continue;
        };
        if size + len > budget && !part.is_empty() {
            flush(std::mem::take(&mut part), &mut first, out);
            size = 0;
        }
        size += len;
        part.push((k, v));
    }
    if !part.is_empty() || first.is_some() {
        flush(part, &mut first, out);
    }
}

/// `[tag, family, {}, [part]]` requests for the deleted keys, each within the limit.
fn split_deletes(limits: &Limits, tag: &str, family: &Str, dels: Vec<Value>, out: &mut Fitted) {
    if dels.is_empty() {
        return;
    }
    let budget = limits
        .max_message
        .saturating_sub(64 + 6 * (tag.len() + family.len()));
    let mut part = Vec::new();
    let mut size = 0;
    let flush = |part: Vec<Value>, out: &mut Fitted| {
        let msg = Msg::from(vec![
            Value::from(tag),
            Value::Str(family.clone()),
            Value::Map(Vec::new()),
            Value::List(part),
        ]);
        match check(limits, msg.as_slice()) {
            Ok(()) => out.msgs.push(msg),
            Err(e) => out
                .dropped
                .push((format!("{tag} deletions of family {family}"), e)),
        }
    };
    for k in dels {
        let len = 6 * k.as_str().map_or(32, str::len) + 12;
        if size + len > budget && !part.is_empty() {
            flush(std::mem::take(&mut part), out);
            size = 0;
        }
        size += len;
        part.push(k);
    }
    flush(part, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg;

    const SMALL: Limits = Limits {
        max_depth: 64,
        max_message: 1000,
    };

    fn family(n: usize, len: usize) -> Value {
        Value::Map(
            (0..n)
                .map(|i| (Str::from(format!("k{i:04}")), Value::from("v".repeat(len))))
                .collect(),
        )
    }

    /// The entries (family, key) that the requests set, in order.
    fn set_entries(msgs: &[Msg]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for m in msgs {
            match m.tag() {
                Some("g_upd" | "g_chg1" | "g_chg2") => {
                    let f = m[1].as_str().unwrap().to_string();
                    for (k, _) in m.get(2).and_then(Value::as_map).unwrap_or_default() {
                        out.push((f.clone(), k.to_string()));
                    }
                }
                Some("g_set" | "g_slave") => {
                    for (f, fm) in m[1].as_map().unwrap() {
                        for (k, _) in fm.as_map().unwrap() {
                            out.push((f.to_string(), k.to_string()));
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    #[test]
    fn what_fits_is_sent_as_it_is() {
        let m = msg!["g_chg1", "f", family(3, 10)];
        let f = fit(m.clone(), &SMALL);
        assert_eq!(f.msgs, vec![m]);
        assert!(f.dropped.is_empty());
    }

    #[test]
    fn family_changes_are_split_into_requests_of_the_same_kind() {
        for tag in ["g_upd", "g_chg2"] {
            let dels = Value::List((0..300).map(|i| Value::from(format!("d{i}"))).collect());
            let m = msg![tag, "f", family(100, 30), dels];
            let f = fit(m, &SMALL);
            assert!(f.dropped.is_empty(), "{:?}", f.dropped);
            assert!(f.msgs.len() > 4, "{}", f.msgs.len());
            for part in &f.msgs {
                assert_eq!(part.tag(), Some(tag));
                assert!(check(&SMALL, part.as_slice()).is_ok());
            }
            let want: Vec<(String, String)> =
                (0..100).map(|i| ("f".into(), format!("k{i:04}"))).collect();
            assert_eq!(set_entries(&f.msgs), want);
            let deleted: Vec<&Value> = f
                .msgs
                .iter()
                .flat_map(|m| m[3].as_list().unwrap())
                .collect();
            assert_eq!(deleted.len(), 300);
        }
    }

    #[test]
    fn a_snapshot_is_a_g_chg1_then_g_chg2s() {
        let f = fit(msg!["g_chg1", "f", family(100, 30)], &SMALL);
        assert!(f.dropped.is_empty());
        assert_eq!(f.msgs[0].tag(), Some("g_chg1"));
        assert_eq!(f.msgs[0].len(), 3);
        assert!(f.msgs[1..].iter().all(|m| m.tag() == Some("g_chg2")));
        assert_eq!(set_entries(&f.msgs).len(), 100);
    }

    #[test]
    fn databases_are_a_head_then_g_upds() {
        for tag in ["g_set", "g_slave"] {
            let db = Value::Map(vec![
                (
                    "'l".into(),
                    Value::Map(vec![("me".into(), crate::list!["1.2.3.4:5"])]),
                ),
                ("a".into(), family(40, 30)),
                ("b".into(), family(40, 30)),
            ]);
            let f = fit(msg![tag, db], &SMALL);
            assert!(f.dropped.is_empty());
            assert_eq!(f.msgs[0].tag(), Some(tag));
            assert_eq!(f.msgs[0][1].as_map().unwrap().len(), 1, "internal families");
            assert!(f.msgs[1..].iter().all(|m| m.tag() == Some("g_upd")));
            assert!(f.msgs.iter().all(|m| check(&SMALL, m.as_slice()).is_ok()));
            assert_eq!(set_entries(&f.msgs).len(), 81);
        }
    }

    #[test]
    fn what_cannot_be_split_is_named() {
        let f = fit(msg!["g_reply", "b", family(100, 30)], &SMALL);
        assert!(f.msgs.is_empty());
        assert_eq!(f.dropped.len(), 1);
        assert_eq!(f.dropped[0].0, "g_reply request");
        // One entry too large on its own: the others go.
        let mut fam = family(10, 10);
        if let Value::Map(m) = &mut fam {
            m.push(("huge".into(), Value::from("x".repeat(2000))));
        }
        let f = fit(msg!["g_upd", "f", fam, crate::list![]], &SMALL);
        assert_eq!(set_entries(&f.msgs).len(), 10);
        assert_eq!(f.dropped.len(), 1);
        assert!(f.dropped[0].0.contains("key huge"), "{:?}", f.dropped);
    }
}
