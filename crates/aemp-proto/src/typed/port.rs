//! Port IDs inside messages: reading a port argument or the reply port in one call.

use super::{de::describe, truncated, TypedError, TypedErrorKind};
use crate::ids::{IdError, PortId};
use crate::value::Value;

/// What a port argument must be, in error messages.
const EXPECTED: &str = "a port ID";

/// The value as a port ID, or an error saying what was found instead (no path).
pub(super) fn as_port(v: &Value) -> Result<PortId, TypedError> {
    match v {
        Value::Str(s) => PortId::parse(s).map_err(|e| {
            // The reason without the (possibly long, peer-supplied) ID repeated in it.
            let why = match e.reason {
                IdError::Empty => "empty node ID".to_owned(),
                IdError::BadChar(_, c) => format!("node ID contains {c:?}"),
            };
            TypedError::new(TypedErrorKind::InvalidValue {
                expected: EXPECTED.to_owned(),
                found: format!("string {:?} ({why})", truncated(s)),
            })
        }),
        other => Err(TypedError::new(TypedErrorKind::InvalidType {
            expected: EXPECTED.to_owned(),
            found: describe(other),
        })),
    }
}

/// Element `i` of `items` as a port ID; the error names the position.
pub(super) fn port_at(items: &[Value], i: usize) -> Result<PortId, TypedError> {
    match items.get(i) {
        Some(v) => as_port(v).map_err(|e| e.at_index(i)),
        None => Err(TypedError::new(TypedErrorKind::InvalidType {
            expected: EXPECTED.to_owned(),
            found: format!("nothing (the message has {} elements)", items.len()),
        })
        .at_index(i)),
    }
}

/// The last element of `items` as a port ID (where `cal` puts its reply port).
pub(super) fn reply_port(items: &[Value]) -> Result<PortId, TypedError> {
    match items.len() {
        0 => Err(TypedError::new(TypedErrorKind::InvalidType {
            expected: "a reply port as the last element".to_owned(),
            found: "an empty message".to_owned(),
        })),
        n => port_at(items, n - 1),
    }
}
