//! The rc file: where it lives, how it is read (relaxed JSON), how
//! profiles and their parent chains are looked up, and how it is saved.
//!
//! Reading and writing are blocking file operations on a small local file; a caller inside an
//! async runtime should do them in `spawn_blocking` (or before starting the runtime).

use super::ConfigError;
use serde_json::{Map, Value};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Environment variable that names the rc file explicitly.
pub const RC_ENV: &str = "PERL_ANYEVENT_MP_RC";

/// Largest rc file we read. A real one holds a secret, a certificate and a few lists; the cap
/// keeps a wrong path (say, a device or a huge log) from eating memory.
pub const MAX_RC_SIZE: u64 = 16 * 1024 * 1024;

/// The rc file location from the process environment: `$PERL_ANYEVENT_MP_RC`, else
/// `$HOME/.perl-anyevent-mp`, else `$APPDATA/perl-anyevent-mp`. `None` when none is set.
pub fn default_rc_path() -> Option<PathBuf> {
    rc_path_from(|name| std::env::var_os(name))
}

/// [`default_rc_path`] with the environment supplied by `lookup` (so it can be tested without
/// touching the real environment). Empty variables count as unset.
pub fn rc_path_from(lookup: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
    if let Some(p) = get(RC_ENV) {
        return Some(PathBuf::from(p));
    }
    if let Some(home) = get("HOME") {
        return Some(Path::new(&home).join(".perl-anyevent-mp"));
    }
    get("APPDATA").map(|a| Path::new(&a).join("perl-anyevent-mp"))
}

/// Turns relaxed JSON (as Perl's `JSON::XS->relaxed` accepts it) into strict JSON:
///
/// * `#` outside a string starts a comment that runs to the end of the line; it is replaced
///   by spaces so that error positions still point at the right line and column;
/// * a comma directly (ignoring whitespace and comments) before `]` or `}` is dropped, if it
///   follows a value (`[,]` stays invalid, as in JSON::XS);
/// * a literal TAB inside a string becomes `\t` (JSON::XS relaxed allows it).
///
/// Everything else is passed through for `serde_json` to judge. The scan is byte-wise: all
/// structural characters are ASCII, and UTF-8 continuation bytes are never ASCII, so
/// multi-byte characters are copied untouched.
pub fn strip_relaxed(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    // Index in `out` of a comma that is the last significant byte so far and follows a value.
    let mut pending_comma: Option<usize> = None;
    // Last significant byte written outside strings (for the "comma follows a value" rule).
    let mut last_sig: u8 = b'[';
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                pending_comma = None;
                last_sig = b'"';
                out.push(b);
                i += 1;
                // Copy the string; a backslash always takes the next byte with it.
                while i < bytes.len() {
                    let c = bytes[i];
                    match c {
                        b'\\' => {
                            out.push(c);
                            if let Some(&n) = bytes.get(i + 1) {
                                out.push(n);
                            }
                            i += 2;
                            continue;
                        }
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'"' => {
                            out.push(c);
                            i += 1;
                            break;
                        }
                        _ => out.push(c),
                    }
                    i += 1;
                }
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out.push(b' ');
                    i += 1;
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.push(b);
                i += 1;
            }
            b',' => {
                pending_comma = if matches!(last_sig, b'[' | b'{' | b',' | b':') {
                    None
                } else {
                    Some(out.len())
                };
                last_sig = b',';
                out.push(b);
                i += 1;
            }
            b']' | b'}' => {
                if let Some(pos) = pending_comma.take() {
                    out[pos] = b' ';
                }
                last_sig = b;
                out.push(b);
                i += 1;
            }
            _ => {
                pending_comma = None;
                last_sig = b;
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII bytes were replaced or inserted, and whole UTF-8 sequences were copied, so
    // the result is still UTF-8; the fallback is unreachable but avoids a panic path.
    String::from_utf8(out).unwrap_or_default()
}

/// Parses relaxed JSON (see [`strip_relaxed`]).
pub fn parse_relaxed(text: &str) -> Result<Value, serde_json::Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_json::from_str(&strip_relaxed(text))
}

/// Pretty-prints JSON the way Perl's `JSON::XS->pretty` does: three-space indentation,
/// `"key" : value`, a final newline.
pub fn to_pretty_json(v: &Value) -> String {
    let mut out = String::new();
    write_pretty(&mut out, v, 0);
    out.push('\n');
    out
}

fn write_pretty(out: &mut String, v: &Value, depth: usize) {
    const INDENT: &str = "   ";
    match v {
        Value::Array(a) if !a.is_empty() => {
            out.push_str("[\n");
            for (i, e) in a.iter().enumerate() {
                push_indent(out, INDENT, depth + 1);
                write_pretty(out, e, depth + 1);
                out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            push_indent(out, INDENT, depth);
            out.push(']');
        }
        Value::Object(m) if !m.is_empty() => {
            out.push_str("{\n");
            for (i, (k, e)) in m.iter().enumerate() {
                push_indent(out, INDENT, depth + 1);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(" : ");
                write_pretty(out, e, depth + 1);
                out.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
            }
            push_indent(out, INDENT, depth);
            out.push('}');
        }
        // Scalars and empty containers: the compact form is the pretty form.
        other => out.push_str(&other.to_string()),
    }
}

fn push_indent(out: &mut String, unit: &str, depth: usize) {
    for _ in 0..depth {
        out.push_str(unit);
    }
}

/// An rc document: the JSON object of the rc file, plus where it came from.
///
/// Invariant: `root` is what the user sees and edits; `saved` is what the file held when it
/// was loaded or last saved (after the implicit `"version": 1`), so "changed" is a plain
/// comparison and an unchanged document is never written.
///
/// `Debug` output redacts every `secret` and `cert`.
#[derive(Clone, PartialEq)]
pub struct RcDoc {
    path: Option<PathBuf>,
    root: Map<String, Value>,
    saved: Map<String, Value>,
}

impl std::fmt::Debug for RcDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcDoc")
            .field("path", &self.path)
            .field("root", &super::redacted(&self.root))
            .field("changed", &self.is_changed())
            .finish()
    }
}

impl Default for RcDoc {
    fn default() -> Self {
        RcDoc::new()
    }
}

impl RcDoc {
    /// An empty document, `{"version": 1}`, not tied to a file.
    pub fn new() -> RcDoc {
        let mut root = Map::new();
        root.insert("version".into(), Value::from(1));
        RcDoc {
            path: None,
            saved: root.clone(),
            root,
        }
    }

    /// Parses relaxed JSON text into a document not tied to a file.
    pub fn from_text(text: &str) -> Result<RcDoc, ConfigError> {
        Self::from_text_at(text, None)
    }

    fn from_text_at(text: &str, path: Option<PathBuf>) -> Result<RcDoc, ConfigError> {
        let shown = || path.clone().unwrap_or_else(|| PathBuf::from("<rc text>"));
        let v = parse_relaxed(text).map_err(|e| ConfigError::RcParse {
            path: shown(),
            message: e.to_string(),
        })?;
        let Value::Object(mut root) = v else {
            return Err(ConfigError::RcNotObject { path: shown() });
        };
        // Perl: `$CFG{version} ||= 1`, so a false or missing version becomes 1.
        if !root.get("version").is_some_and(truthy) {
            root.insert("version".into(), Value::from(1));
        }
        Ok(RcDoc {
            path,
            saved: root.clone(),
            root,
        })
    }

    /// Loads the rc file at `path`. A missing file gives `{"version": 1}` (tied to `path`, so
    /// that [`RcDoc::save`] creates it); a file that exists but cannot be read or parsed is an
    /// error (the reference silently ignores it, which hides mistakes).
    pub fn load(path: impl Into<PathBuf>) -> Result<RcDoc, ConfigError> {
        let path = path.into();
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut doc = RcDoc::new();
                doc.path = Some(path);
                return Ok(doc);
            }
            Err(source) => return Err(ConfigError::RcRead { path, source }),
        };
        let mut bytes = Vec::new();
        file.take(MAX_RC_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ConfigError::RcRead {
                path: path.clone(),
                source,
            })?;
        if bytes.len() as u64 > MAX_RC_SIZE {
            return Err(ConfigError::RcRead {
                path,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("larger than {MAX_RC_SIZE} bytes"),
                ),
            });
        }
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::RcParse {
            path: path.clone(),
            message: format!("not UTF-8: {e}"),
        })?;
        Self::from_text_at(&text, Some(path))
    }

    /// Loads the rc file from its default location ([`default_rc_path`]); with no location
    /// at all, an empty document not tied to a file.
    pub fn load_default() -> Result<RcDoc, ConfigError> {
        match default_rc_path() {
            Some(p) => RcDoc::load(p),
            None => Ok(RcDoc::new()),
        }
    }

    /// The file this document is loaded from and saved to.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Ties the document to another file (the next [`RcDoc::save`] writes there).
    pub fn set_path(&mut self, path: impl Into<PathBuf>) {
        self.path = Some(path.into());
        // The new file has not been written yet with this content.
        self.saved = Map::new();
    }

    /// The top-level object.
    pub fn root(&self) -> &Map<String, Value> {
        &self.root
    }

    /// The top-level object, for editing.
    pub fn root_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.root
    }

    /// Whether the document differs from the file as loaded or last saved.
    pub fn is_changed(&self) -> bool {
        self.root != self.saved
    }

    /// The `profile` object, if any.
    pub fn profiles(&self) -> Result<Option<&Map<String, Value>>, ConfigError> {
        match self.root.get("profile") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(ConfigError::bad_type("profile", "an object", other)),
        }
    }

    /// The profile called `name`, if it exists.
    pub fn profile(&self, name: &str) -> Result<Option<&Map<String, Value>>, ConfigError> {
        let Some(profiles) = self.profiles()? else {
            return Ok(None);
        };
        match profiles.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(ConfigError::bad_type(
                &format!("profile {name:?}"),
                "an object",
                other,
            )),
        }
    }

    /// The profile called `name`, created (empty) if missing.
    pub fn profile_mut(&mut self, name: &str) -> Result<&mut Map<String, Value>, ConfigError> {
        let profiles = self
            .root
            .entry("profile")
            .or_insert_with(|| Value::Object(Map::new()));
        if profiles.is_null() {
            *profiles = Value::Object(Map::new());
        }
        let Value::Object(profiles) = profiles else {
            return Err(ConfigError::bad_type("profile", "an object", profiles));
        };
        let p = profiles
            .entry(name)
            .or_insert_with(|| Value::Object(Map::new()));
        if p.is_null() {
            *p = Value::Object(Map::new());
        }
        match p {
            Value::Object(m) => Ok(m),
            other => Err(ConfigError::bad_type(
                &format!("profile {name:?}"),
                "an object",
                other,
            )),
        }
    }

    /// Removes the profile called `name`; true if it existed.
    pub fn remove_profile(&mut self, name: &str) -> Result<bool, ConfigError> {
        match self.root.get_mut("profile") {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Object(m)) => Ok(m.remove(name).is_some()),
            Some(other) => Err(ConfigError::bad_type("profile", "an object", other)),
        }
    }

    /// The rc part of the merge for profile `name` (Perl `_find_profile`): the top-level
    /// object, overlaid with the `parent` chain of the profile root first, then the profile
    /// itself. A missing profile (or missing parent) ends the chain, so an unknown name
    /// yields just the top level. A chain that loops is an error (the reference recurses
    /// forever).
    pub fn layered(&self, name: &str) -> Result<Map<String, Value>, ConfigError> {
        // Invariant: `chain` holds distinct names, so the loop runs at most once per profile.
        let mut chain: Vec<(&str, &Map<String, Value>)> = Vec::new();
        let mut cur: Option<String> = Some(name.to_string());
        while let Some(n) = cur.take() {
            if chain.iter().any(|(c, _)| *c == n) {
                let mut path: Vec<&str> = chain.iter().map(|(c, _)| *c).collect();
                path.push(&n);
                return Err(ConfigError::ParentLoop(path.join(" -> ")));
            }
            let Some((key, p)) = self
                .profiles()?
                .and_then(|ps| ps.get_key_value(n.as_str()))
                .and_then(|(k, v)| v.as_object().map(|m| (k.as_str(), m)))
            else {
                // Missing (or null) profile: validate the type error case explicitly.
                self.profile(&n)?;
                break;
            };
            cur = match p.get("parent") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    return Err(ConfigError::bad_type(
                        &format!("profile {n:?}: parent"),
                        "a string",
                        other,
                    ))
                }
            };
            chain.push((key, p));
        }
        let mut merged = self.root.clone();
        for (_, p) in chain.iter().rev() {
            for (k, v) in p.iter() {
                merged.insert(k.clone(), v.clone());
            }
        }
        Ok(merged)
    }

    /// Writes the document back to its file if it changed; returns whether it wrote.
    ///
    /// As the reference does it: the pretty JSON goes to `<file>~new~`, the old file is
    /// hard-linked to `<file>~` (replacing an older backup; skipped when there is no old
    /// file), then `<file>~new~` is renamed over `<file>`, so the file is replaced atomically
    /// and a backup stays. On Unix the new file gets the old file's permissions, or `0600`
    /// for a new file, because it may hold the secret.
    pub fn save(&mut self) -> Result<bool, ConfigError> {
        if !self.is_changed() {
            return Ok(false);
        }
        let Some(path) = self.path.clone() else {
            return Err(ConfigError::NoRcPath);
        };
        let text = to_pretty_json(&Value::Object(self.root.clone()));
        let new = with_suffix(&path, "~new~");
        let backup = with_suffix(&path, "~");
        let werr = |p: &Path| {
            let p = p.to_path_buf();
            move |source| ConfigError::RcWrite { path: p, source }
        };
        let old_meta = fs::metadata(&path).ok();
        // A leftover from an interrupted save would keep its own permissions when reopened.
        match fs::remove_file(&new) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(werr(&new)(e)),
        }
        {
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
                let mode = old_meta
                    .as_ref()
                    .map(|m| m.permissions().mode() & 0o7777)
                    .unwrap_or(0o600);
                opts.mode(mode);
            }
            let mut f = opts.open(&new).map_err(werr(&new))?;
            f.write_all(text.as_bytes()).map_err(werr(&new))?;
            f.sync_all().map_err(werr(&new))?;
        }
        if old_meta.is_some() {
            match fs::remove_file(&backup) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(werr(&backup)(e)),
            }
            // The backup is a convenience: failing to make it (e.g. a filesystem without
            // hard links) must not lose the user's edit.
            if let Err(e) = fs::hard_link(&path, &backup) {
                tracing::warn!(path = %backup.display(), error = %e, "cannot create rc backup");
            }
        }
        fs::rename(&new, &path).map_err(werr(&path))?;
        self.saved = self.root.clone();
        Ok(true)
    }
}

/// `path` with `suffix` appended to its file name (`foo` -> `foo~`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Perl truthiness of a JSON value: null, false, 0, "" and "0" are false; arrays and objects
/// are true.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !(s.is_empty() || s == "0"),
        Value::Array(_) | Value::Object(_) => true,
    }
}
