//! The registry of named functions: spawn init functions and functions callable by name
//! (`snd_to_func`, unknown node-port tags).
//!
//! Perl resolves such names by loading code; Rust cannot, so a node only runs functions that
//! were registered under that name beforehand. Anything else is refused with a clear error.

use super::context::Cx;
use crate::error::HandlerResult;
use aemp_proto::{Str, Value};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// A function that can be called by name: for `spawn` it runs in the new port's context and
/// must install its handlers; for `snd_to_func` it runs in the node port's context.
pub type NamedFn = Arc<dyn Fn(&mut Cx<'_>, Vec<Value>) -> HandlerResult + Send + Sync + 'static>;

/// Name → function.
#[derive(Default)]
pub(crate) struct Registry {
    funcs: FxHashMap<Str, NamedFn>,
}

impl Registry {
    pub(crate) fn insert(&mut self, name: &str, f: NamedFn) {
        self.funcs.insert(Str::from(name), f);
    }

    pub(crate) fn get(&self, name: &str) -> Option<NamedFn> {
        self.funcs.get(name).cloned()
    }
}
