//! Tests of the merge, the rc file and the typed configuration. They use temporary files
//! and explicit paths only; the real rc file and environment are never touched.

use super::rc::{parse_relaxed, rc_path_from, strip_relaxed, to_pretty_json};
use super::*;
use serde_json::json;
use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, unique directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "aemp-config-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn doc(v: serde_json::Value) -> RcDoc {
    RcDoc::from_text(&v.to_string()).unwrap()
}

fn builder() -> ConfigBuilder {
    Config::builder().nodename("myhost").runiq("RUNIQxyz0A")
}

const RC: &str = r#"{
    # global defaults
    "secret": "top", "monitor_timeout": 5, "seeds": ["s:1"],
    "profile": {
        "base":   { "secret": "base", "connect_interval": 7, "seeds": ["b:1"], },
        "mid":    { "parent": "base", "secret": "mid", "nodelay": false },
        "worker": { "parent": "mid", "nodeid": "w/%n", "services": ["W::", ["f", 1, "x"], "g"] },
        "loop1":  { "parent": "loop2" },
        "loop2":  { "parent": "loop1" },
        "orphan": { "parent": "nowhere", "autocork": 1 },
    },
}"#;

#[test]
fn merge_order_with_parent_chain() {
    let rc = RcDoc::from_text(RC).unwrap();
    let cfg = builder()
        .profile("worker")
        .rc_doc(rc.clone())
        .secret("arg")
        .monitor_timeout(Duration::from_secs(9))
        .build()
        .unwrap();
    // profile chain: worker > mid > base > top level > args > defaults
    assert_eq!(cfg.secret.as_deref(), Some("mid"));
    assert_eq!(cfg.connect_interval, Duration::from_secs(7));
    assert_eq!(cfg.monitor_timeout, Duration::from_secs(5), "rc beats args");
    assert!(!cfg.nodelay);
    assert_eq!(cfg.seeds[0].text, "b:1");
    assert_eq!(cfg.node_id.as_str(), "w/myhost");
    assert!(!cfg.randomised);
    assert_eq!(
        cfg.services,
        vec![
            Service::Module("W::".into()),
            Service::Call {
                func: "f".into(),
                args: vec![MsgValue::Int(1), MsgValue::from("x")]
            },
            Service::Function("g".into()),
        ]
    );
    // Keys from every layer are in the raw map, including unknown and structural ones.
    assert_eq!(cfg.raw["parent"], json!("mid"));
    assert_eq!(cfg.raw["version"], json!(1));
    assert!(cfg.raw.contains_key("profile"));

    // The raw merge directly, as showconfig sees it.
    let m = find_profile(Some(&rc), "mid", &Map::new(), false).unwrap();
    assert_eq!(m["secret"], json!("mid"));
    assert_eq!(m["connect_interval"], json!(7));
    assert_eq!(m["framing_format"], json!(["cbor", "json"]));
}

#[test]
fn force_norc_and_missing_profiles() {
    let rc = RcDoc::from_text(RC).unwrap();
    let forced = builder()
        .profile("mid")
        .rc_doc(rc.clone())
        .secret("arg")
        .force(true)
        .build()
        .unwrap();
    assert_eq!(forced.secret.as_deref(), Some("arg"));
    // Not given as argument: the rc still wins over the defaults.
    assert_eq!(forced.connect_interval, Duration::from_secs(7));

    let norc = builder()
        .profile("mid")
        .rc_doc(rc.clone())
        .secret("arg")
        .norc(true)
        .build()
        .unwrap();
    assert_eq!(norc.secret.as_deref(), Some("arg"));
    assert!(norc.seeds.is_empty());
    assert!(!norc.raw.contains_key("version"));

    // Unknown profile: top-level defaults; default profile name is the nodename.
    let none = builder().rc_doc(rc.clone()).build().unwrap();
    assert_eq!(none.profile, "myhost");
    assert_eq!(none.secret.as_deref(), Some("top"));
    assert_eq!(none.node_id.as_str(), "myhost/RUNIQxyz0A");
    assert!(none.randomised);

    // A missing parent ends the chain at the top level.
    let orphan = builder()
        .profile("orphan")
        .rc_doc(rc.clone())
        .build()
        .unwrap();
    assert!(orphan.autocork);
    assert_eq!(orphan.secret.as_deref(), Some("top"));

    let err = builder().profile("loop1").rc_doc(rc).build().unwrap_err();
    assert!(matches!(err, ConfigError::ParentLoop(ref s) if s == "loop1 -> loop2 -> loop1"));
}

#[test]
fn defaults() {
    let cfg = builder().norc(true).build().unwrap();
    assert_eq!(cfg.monitor_timeout, Duration::from_secs(30));
    assert_eq!(cfg.connect_interval, Duration::from_secs(2));
    assert_eq!(cfg.framing_format, ["cbor", "json"]);
    assert_eq!(cfg.auth_offer, ["tls_sha3_512", "hmac_sha3_512"]);
    assert_eq!(
        cfg.auth_accept,
        ["tls_sha3_512", "hmac_sha3_512", "tls_anon", "cleartext"]
    );
    assert_eq!(cfg.binds.len(), 1);
    assert_eq!(cfg.binds[0].parts[0].host, Host::Any);
    assert!(cfg.seeds.is_empty());
    assert!(cfg.nodelay && !cfg.autocork && !cfg.secure);
    assert_eq!(cfg.secret, None);
    assert_eq!(cfg.nodeid, "myhost/");
}

#[test]
fn configure_style_args() {
    let args = [
        json!("prof"),
        json!("nodeid"),
        json!("aemp/%n/%u"),
        json!("norc"),
        json!(1),
        json!("binds"),
        json!(["127.0.0.1:0", "[::1]:*"]),
    ];
    let cfg = ConfigBuilder::from_args(&args)
        .unwrap()
        .nodename("h")
        .runiq("R123456789")
        .build()
        .unwrap();
    assert_eq!(cfg.profile, "prof");
    assert_eq!(cfg.node_id.as_str(), "aemp/h/R123456789");
    assert_eq!(cfg.binds[1].parts[0].to_string(), "[::1]:0");
    assert!(ConfigBuilder::from_args(&[json!(1), json!(2)]).is_err());
}

#[test]
fn framing_storable_dropped_and_errors() {
    let cfg = builder()
        .norc(true)
        .framing_format(["storable", "json", "cbor", "json"])
        .build()
        .unwrap();
    assert_eq!(cfg.framing_format, ["json", "cbor"]);
    let err = builder()
        .norc(true)
        .framing_format(["storable"])
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::NoFraming));
}

fn build_err(key: &str, v: serde_json::Value) -> String {
    builder()
        .norc(true)
        .set(key, v)
        .unwrap()
        .build()
        .unwrap_err()
        .to_string()
}

#[test]
fn clear_errors_for_bad_values() {
    assert_eq!(
        build_err("seeds", json!("a:1")),
        "seeds must be an array of strings (got \"a:1\")"
    );
    assert!(build_err("seeds", json!(["a:1", 2])).starts_with("seeds must be an array"));
    assert!(build_err("seeds", json!(["nohost"])).contains("unparsable seed \"nohost\""));
    assert!(build_err("binds", json!(["x:y"])).contains("unparsable bind \"x:y\""));
    assert_eq!(build_err("nodeid", json!("")), "empty node ID");
    assert_eq!(build_err("nodeid", json!(null)), "empty node ID");
    assert!(build_err("nodeid", json!("a#b")).starts_with("invalid node ID"));
    assert!(build_err("nodeid", json!(5)).starts_with("nodeid must be a string"));
    assert!(build_err("secret", json!([1])).starts_with("secret must be a string"));
    assert!(build_err("monitor_timeout", json!(0)).contains("positive number"));
    assert!(build_err("connect_interval", json!("soon")).contains("positive number"));
    assert!(build_err("secure", json!({})).contains("boolean"));
    assert!(build_err("services", json!([[1]])).contains("services entry"));
    assert!(build_err("services", json!("x")).contains("services must be"));
    // The reference tool stores tunables as strings; those are accepted.
    let cfg = builder()
        .norc(true)
        .set("monitor_timeout", json!("2.5"))
        .unwrap()
        .set("secure", json!("0"))
        .unwrap()
        .set("nodelay", json!("1"))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(cfg.monitor_timeout, Duration::from_millis(2500));
    assert!(!cfg.secure && cfg.nodelay);
    let bad_profile = doc(json!({"profile": {"p": 3}}));
    let err = builder()
        .profile("p")
        .rc_doc(bad_profile)
        .build()
        .unwrap_err();
    assert!(err
        .to_string()
        .starts_with("profile \"p\" must be an object"));
}

#[test]
fn relaxed_json() {
    let text = "{ \"a\": \"x # not a comment, ]\", # comment \"b\": 1,\n \"c\": [1, 2, ], # x\n\
                \"d\": \"esc \\\" # still string\", \"e\": {\"f\": \"tab\there\",},\n}";
    let v = parse_relaxed(text).unwrap();
    assert_eq!(
        v,
        json!({"a": "x # not a comment, ]", "c": [1, 2], "d": "esc \" # still string",
               "e": {"f": "tab\there"}})
    );
    // Positions are kept: the comment is blanked, the comma is blanked.
    assert_eq!(strip_relaxed("[1,] # c\n"), "[1 ]    \n");
    assert!(parse_relaxed("[,]").is_err());
    assert!(parse_relaxed("[1,,]").is_err());
    assert!(parse_relaxed("{\"a\":,}").is_err());
    assert_eq!(parse_relaxed("\u{feff}[\"ü#\",]").unwrap(), json!(["ü#"]));
    let err = RcDoc::from_text("{\"a\": }").unwrap_err();
    assert!(matches!(err, ConfigError::RcParse { .. }));
    assert!(matches!(
        RcDoc::from_text("[1]").unwrap_err(),
        ConfigError::RcNotObject { .. }
    ));
}

#[test]
fn pretty_output_like_json_xs() {
    let v = json!({"a": [1, "x"], "b": {}, "c": [], "d": {"e": null}});
    assert_eq!(
        to_pretty_json(&v),
        "{\n   \"a\" : [\n      1,\n      \"x\"\n   ],\n   \"b\" : {},\n   \"c\" : [],\n   \
         \"d\" : {\n      \"e\" : null\n   }\n}\n"
    );
}

#[test]
fn rc_location() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(*v))
        }
    };
    assert_eq!(
        rc_path_from(env(&[("PERL_ANYEVENT_MP_RC", "/x/rc"), ("HOME", "/h")])),
        Some(PathBuf::from("/x/rc"))
    );
    assert_eq!(
        rc_path_from(env(&[("PERL_ANYEVENT_MP_RC", ""), ("HOME", "/h")])),
        Some(PathBuf::from("/h/.perl-anyevent-mp"))
    );
    assert_eq!(
        rc_path_from(env(&[("APPDATA", "C:/a")])),
        Some(Path::new("C:/a").join("perl-anyevent-mp"))
    );
    assert_eq!(rc_path_from(env(&[])), None);
}

#[test]
fn load_missing_unreadable_and_bad_files() {
    let dir = TempDir::new("load");
    let missing = RcDoc::load(dir.file("rc")).unwrap();
    assert_eq!(missing.root(), doc(json!({"version": 1})).root());
    assert!(!missing.is_changed());

    std::fs::write(dir.file("bad"), "{ nope").unwrap();
    let err = RcDoc::load(dir.file("bad")).unwrap_err();
    assert!(err.to_string().contains("cannot parse rc file"), "{err}");
    // A directory exists but cannot be read as a file.
    let err = RcDoc::load(&dir.0).unwrap_err();
    assert!(matches!(err, ConfigError::RcRead { .. }), "{err}");
    let err = builder().rc_file(dir.file("bad")).build().unwrap_err();
    assert!(matches!(err, ConfigError::RcParse { .. }));
    // ... but norc never reads it.
    assert!(builder()
        .rc_file(dir.file("bad"))
        .norc(true)
        .build()
        .is_ok());

    std::fs::write(dir.file("ok"), "{\"secret\":\"s\", # c\n}").unwrap();
    let cfg = builder().rc_file(dir.file("ok")).build().unwrap();
    assert_eq!(cfg.secret.as_deref(), Some("s"));
}

#[test]
fn save_semantics() {
    let dir = TempDir::new("save");
    let path = dir.file("rc");
    let backup = dir.file("rc~");
    let new = dir.file("rc~new~");

    let mut d = RcDoc::load(&path).unwrap();
    assert!(!d.save().unwrap(), "unchanged: no write");
    // A stale temporary file from an interrupted save is replaced.
    std::fs::write(&new, "stale").unwrap();
    assert!(!path.exists());

    d.root_mut().insert("secret".into(), json!("one"));
    assert!(d.save().unwrap());
    assert!(path.exists() && !backup.exists() && !new.exists());
    let first = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        first,
        "{\n   \"secret\" : \"one\",\n   \"version\" : 1\n}\n"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "a new rc file is private");
    }

    // Unchanged again after saving.
    assert!(!d.save().unwrap());
    // Reloading: the implicit version does not count as a change.
    std::fs::write(&path, "{\"secret\":\"one\",}").unwrap();
    let mut d = RcDoc::load(&path).unwrap();
    assert!(!d.is_changed());
    assert!(!d.save().unwrap());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"secret\":\"one\",}"
    );

    d.root_mut().insert("secret".into(), json!("two"));
    assert!(d.save().unwrap());
    assert_eq!(
        std::fs::read_to_string(&backup).unwrap(),
        "{\"secret\":\"one\",}"
    );
    assert!(!new.exists());
    let again = RcDoc::load(&path).unwrap();
    assert_eq!(again.root()["secret"], json!("two"));

    // A second save replaces the backup with the previous version.
    d.root_mut().insert("secret".into(), json!("three"));
    assert!(d.save().unwrap());
    assert!(std::fs::read_to_string(&backup)
        .unwrap()
        .contains("\"two\""));

    // A document without a file cannot be saved once changed.
    let mut free = RcDoc::new();
    free.root_mut().insert("x".into(), json!(1));
    assert!(matches!(free.save(), Err(ConfigError::NoRcPath)));
}

#[test]
fn profiles_edit() {
    let mut d = RcDoc::new();
    d.profile_mut("p")
        .unwrap()
        .insert("secret".into(), json!("x"));
    assert_eq!(d.profile("p").unwrap().unwrap()["secret"], json!("x"));
    assert!(d.remove_profile("p").unwrap());
    assert!(!d.remove_profile("p").unwrap());
    let mut bad = doc(json!({"profile": []}));
    assert!(bad.profile_mut("p").is_err());
    assert!(bad.profile("p").is_err());
}

#[test]
fn generated_secret_shape() {
    let a = generate_secret();
    assert_eq!(a.len(), 180);
    assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_ne!(a, generate_secret());
}

#[test]
fn json_values_convert() {
    assert_eq!(json_to_value(&json!(u64::MAX)), MsgValue::UInt(u64::MAX));
    assert_eq!(json_to_value(&json!(-3)), MsgValue::Int(-3));
    assert_eq!(json_to_value(&json!(1.5)), MsgValue::Float(1.5));
    assert_eq!(
        json_to_value(&json!({"k": [true, null]})),
        MsgValue::Map(vec![(
            "k".into(),
            MsgValue::List(vec![MsgValue::Bool(true), MsgValue::Null])
        )])
    );
}

#[test]
fn debug_output_redacts_secrets() {
    let rc = doc(json!({"secret": "topsecret", "profile": {"p": {"cert": "PEMDATA"}}}));
    let cfg = builder().profile("p").rc_doc(rc.clone()).build().unwrap();
    let shown = format!("{cfg:?} {rc:?} {:?}", builder().secret("argsecret"));
    assert!(
        !shown.contains("topsecret") && !shown.contains("PEMDATA"),
        "{shown}"
    );
    assert!(!shown.contains("argsecret"));
    assert!(shown.contains("<redacted>"));
    assert_eq!(cfg.secret.as_deref(), Some("topsecret"));
}

#[test]
fn send_queue_limit_setting() {
    let cfg = builder().norc(true).build().unwrap();
    assert_eq!(cfg.send_queue_limit, SendQueueLimit::Bytes(256 << 20));
    assert_eq!(SendQueueLimit::default(), SendQueueLimit::DEFAULT);
    let cfg = builder()
        .norc(true)
        .send_queue_limit(SendQueueLimit::Bytes(4096))
        .build()
        .unwrap();
    assert_eq!(cfg.send_queue_limit.bytes(), Some(4096));
    let cfg = builder()
        .norc(true)
        .send_queue_limit(SendQueueLimit::Unbounded)
        .build()
        .unwrap();
    assert_eq!(cfg.send_queue_limit, SendQueueLimit::Unbounded);
    assert_eq!(cfg.send_queue_limit.bytes(), None);
    // From the rc file, as a number, a numeric string or "unbounded".
    for (v, want) in [
        (json!(1048576), SendQueueLimit::Bytes(1 << 20)),
        (json!("65536"), SendQueueLimit::Bytes(65536)),
        (json!("unbounded"), SendQueueLimit::Unbounded),
    ] {
        let rc = doc(json!({ "send_queue_limit": v }));
        let cfg = builder().rc_doc(rc).build().unwrap();
        assert_eq!(cfg.send_queue_limit, want, "{v}");
    }
    for bad in [json!(0), json!(-1), json!(1.5), json!("lots"), json!([1])] {
        assert!(
            build_err("send_queue_limit", bad.clone()).starts_with(
                "send_queue_limit must be a positive number of bytes or \"unbounded\""
            ),
            "{bad}"
        );
    }
}
