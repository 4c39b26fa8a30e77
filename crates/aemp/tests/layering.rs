//! The layering of the crate, checked on its source: each module may use only the modules
//! below it, so no import circle can come back unnoticed.
//!
//! ```text
//!  dataconn   -> runtime, kernel, transport, error (the public data connection API)
//!  node       -> runtime, kernel, transport, config, error, log_catcher
//!  runtime    -> kernel, transport, error
//!  kernel     -> error
//!  transport  -> error
//!  config     (nothing)
//!  log_catcher (nothing: the `tracing` layer and the forwarding queues)
//!  error      -> config, transport (their error types convert into `aemp::Error`)
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::<module>` names a module's code (not its comments) refers to.
fn uses_of(module: &str) -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let dir = src.join(module);
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    }
    let single = src.join(format!("{module}.rs"));
    if single.is_file() {
        files.push(single);
    }
    assert!(!files.is_empty(), "no source for module {module}");
    let mut used = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("source file");
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name.chars().next().is_some_and(|c| c.is_lowercase()) {
                    used.insert(name);
                }
            }
        }
    }
    used
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let allowed: &[(&str, &[&str])] = &[
        ("kernel", &["error"]),
        ("transport", &["error"]),
        ("config", &[]),
        ("error", &["config", "transport"]),
        ("runtime", &["kernel", "transport", "error"]),
        ("dataconn", &["runtime", "kernel", "transport", "error"]),
        (
            "node",
            &[
                "runtime",
                "kernel",
                "transport",
                "config",
                "error",
                "log_catcher",
            ],
        ),
        ("log_catcher", &[]),
    ];
    for (module, ok) in allowed {
        let used = uses_of(module);
        let bad: Vec<&String> = used.iter().filter(|u| !ok.contains(&u.as_str())).collect();
        assert!(
            bad.is_empty(),
            "module {module} uses {bad:?}, but may only use {ok:?}"
        );
    }
}
