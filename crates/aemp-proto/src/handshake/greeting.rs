//! Greeting line 1: parsing exactly as Perl 2.02 does, and formatting.

use super::HandshakeError;

/// A parsed greeting line 1:
/// `<protocol>;<version>;<nodeid>;<auth-list>;<framing-list>[;<key>[=<value>]]*`.
///
/// Fields missing from the line are empty (Perl sees them as `undef`); the state machine
/// rejects what it cannot work with. Nothing is unescaped: Perl implements no escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Field 1, e.g. `aemp` or `aemp-dataconn`.
    pub protocol: String,
    /// Field 2, kept as text; compare it with [`Greeting::version_matches`].
    pub version: String,
    /// Field 3, the sender's (unauthenticated) node ID.
    pub node_id: String,
    /// Field 4, the auth methods the sender accepts, in its order of preference.
    pub auth: Vec<String>,
    /// Field 5, the framings the sender accepts, in its order of preference.
    pub framings: Vec<String>,
    /// Fields 6…, in the order they were sent. A field without `=` has no value. Perl stores
    /// these in a hash, so for a repeated key the last one counts (see [`Greeting::get`]).
    pub kv: Vec<(String, Option<String>)>,
}

/// Perl's `split /SEP/, $s`: trailing empty fields are dropped, and an empty string gives
/// no fields at all.
fn perl_split(s: &str, sep: char) -> Vec<&str> {
    let mut fields: Vec<&str> = s.split(sep).collect();
    while fields.last().is_some_and(|f| f.is_empty()) {
        fields.pop();
    }
    fields
}

/// Perl's numeric value of a string: leading whitespace is skipped, then the longest prefix
/// that looks like a decimal number is used; no such prefix gives 0. (`"1.0"`, `" 1"` and
/// `"1abc"` all give 1, `"0x1"` gives 0.) Perl's `Inf`/`NaN` spellings are not needed for
/// anything compared with 1 and are read as 0.
pub(crate) fn perl_numify(s: &str) -> f64 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let b = t.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        let frac_start = i + 1;
        let mut j = frac_start;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        digits += j - frac_start;
        i = j;
    }
    if digits == 0 {
        return 0.0;
    }
    // An exponent only counts when at least one digit follows it.
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_digits = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_digits {
            i = j;
        }
    }
    // The prefix is plain ASCII decimal syntax, which `f64::from_str` accepts ("1.", ".5"
    // included); the fallback is unreachable but keeps this free of panics.
    t[..i].parse().unwrap_or(0.0)
}

impl Greeting {
    /// Parses a greeting line 1 (without its line end) the way Perl 2.02 does: split on `;`
    /// dropping trailing empty fields, five positional fields, then each further field
    /// matched against `^([^=]+)(?:=(.*))?` (key up to the first `=`, value everything after
    /// it; fields that do not match, i.e. empty ones or ones starting with `=`, are ignored).
    ///
    /// Fails only for an empty line; missing positional fields are left empty.
    pub fn parse(line: &str) -> Result<Greeting, HandshakeError> {
        let fields = perl_split(line, ';');
        if fields.is_empty() {
            return Err(HandshakeError::UnparsableGreeting("empty greeting".into()));
        }
        let field = |i: usize| fields.get(i).copied().unwrap_or("");
        let list = |i: usize| {
            perl_split(field(i), ',')
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let kv = fields
            .iter()
            .skip(5)
            .filter(|f| !f.is_empty() && !f.starts_with('='))
            .map(|f| match f.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => ((*f).to_owned(), None),
            })
            .collect();
        Ok(Greeting {
            protocol: field(0).to_owned(),
            version: field(1).to_owned(),
            node_id: field(2).to_owned(),
            auth: list(3),
            framings: list(4),
            kv,
        })
    }

    /// Formats the greeting as a line 1, without line end. For a greeting whose fields
    /// contain no `;`, `,`, CR or LF (and whose keys contain no `=`), [`Greeting::parse`]
    /// gives it back unchanged.
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "{};{};{};{};{}",
            self.protocol,
            self.version,
            self.node_id,
            self.auth.join(","),
            self.framings.join(",")
        );
        for (k, v) in &self.kv {
            line.push(';');
            line.push_str(k);
            if let Some(v) = v {
                line.push('=');
                line.push_str(v);
            }
        }
        line
    }

    /// The value of key `key` as Perl's hash would hold it: the last occurrence wins.
    /// `None` when the key is absent; `Some(None)` when it was sent without `=`.
    pub fn get_kv(&self, key: &str) -> Option<Option<&str>> {
        self.kv
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }

    /// The value of key `key` (last occurrence wins); `None` if absent or sent without `=`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_kv(key).flatten()
    }

    /// Whether the version field is numerically 1, as Perl's `$version != 1` test decides
    /// (`1` and `1.0` pass).
    pub fn version_matches(&self) -> bool {
        perl_numify(&self.version) == 1.0
    }

    /// Whether the sender asks for TLS: a `tls` key whose value `v` has `int(v) == 1`
    ///.
    pub fn wants_tls(&self) -> bool {
        self.get("tls")
            .is_some_and(|v| perl_numify(v).trunc() == 1.0)
    }

    /// The `provider` key (implementation and version, e.g. `AE-2.02`).
    pub fn provider(&self) -> Option<&str> {
        self.get("provider")
    }

    /// The `peeraddr` key: our address as the sender sees it (informational only).
    pub fn peeraddr(&self) -> Option<&str> {
        self.get("peeraddr")
    }

    /// The `dataconn_id` key of the `aemp-dataconn` sub-protocol.
    pub fn dataconn_id(&self) -> Option<&str> {
        self.get("dataconn_id")
    }

    /// The `mproto` key (node protocol version; Perl never checks it).
    pub fn mproto(&self) -> Option<&str> {
        self.get("mproto")
    }

    /// The `gproto` key (global protocol version; Perl never checks it).
    pub fn gproto(&self) -> Option<&str> {
        self.get("gproto")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perl_greeting() {
        let g = Greeting::parse(
            "aemp;1;seed;tls_sha3_512,hmac_sha3_512,tls_anon,cleartext;cbor,json,storable;\
             peeraddr=127.0.0.1:57790;mproto=1;gproto=1;provider=AE-2.02",
        )
        .unwrap();
        assert_eq!(g.protocol, "aemp");
        assert_eq!(g.version, "1");
        assert_eq!(g.node_id, "seed");
        assert_eq!(
            g.auth,
            ["tls_sha3_512", "hmac_sha3_512", "tls_anon", "cleartext"]
        );
        assert_eq!(g.framings, ["cbor", "json", "storable"]);
        assert_eq!(g.peeraddr(), Some("127.0.0.1:57790"));
        assert_eq!(g.provider(), Some("AE-2.02"));
        assert_eq!(g.mproto(), Some("1"));
        assert_eq!(g.gproto(), Some("1"));
        assert_eq!(g.kv[0].0, "peeraddr");
        assert!(!g.wants_tls());
        assert!(g.version_matches());
    }

    #[test]
    fn trailing_empty_fields_and_odd_kv() {
        let g = Greeting::parse("aemp;1;n;a,,b,;json;;=x;k;a=b=c;k=2;;;").unwrap();
        assert_eq!(g.auth, ["a", "", "b"]);
        assert_eq!(
            g.kv,
            vec![
                ("k".into(), None),
                ("a".into(), Some("b=c".into())),
                ("k".into(), Some("2".into())),
            ]
        );
        // Perl's hash keeps the last value of a repeated key.
        assert_eq!(g.get("k"), Some("2"));
        assert_eq!(g.get_kv("a"), Some(Some("b=c")));
        assert_eq!(g.get_kv("zz"), None);

        let short = Greeting::parse("aemp;1;;;").unwrap();
        assert_eq!(short.node_id, "");
        assert!(short.auth.is_empty() && short.framings.is_empty() && short.kv.is_empty());
        assert!(Greeting::parse("").is_err());
        assert!(Greeting::parse(";;;").is_err());
        assert_eq!(Greeting::parse(";1").unwrap().protocol, "");
    }

    #[test]
    fn round_trip() {
        let line = "aemp-dataconn;1;a/b/c;hmac_sha3_512;json,cbor;dataconn_id=b@n;flag;provider=x";
        assert_eq!(Greeting::parse(line).unwrap().to_line(), line);
    }

    #[test]
    fn numeric_version_and_tls() {
        let mut g = Greeting::parse("aemp;1.0;n;x;json;tls=1.0").unwrap();
        assert!(g.version_matches());
        assert!(g.wants_tls());
        for (v, ok) in [
            ("1", true),
            ("01", true),
            (" 1", true),
            ("1e0", true),
            ("1abc", true),
            ("0.1e1", true),
            ("2", false),
            ("0", false),
            ("", false),
            ("x1", false),
            ("0x1", false),
            ("1.5", false),
        ] {
            g.version = v.into();
            assert_eq!(g.version_matches(), ok, "version {v:?}");
        }
        for (v, ok) in [
            ("tls=1", true),
            ("tls=1.9", true),
            ("tls=1.0", true),
            ("tls=2.0", false),
            ("tls=0.9", false),
            ("tls", false),
            ("tls=", false),
            ("tls=-1", false),
        ] {
            let g = Greeting::parse(&format!("aemp;1;n;x;json;{v}")).unwrap();
            assert_eq!(g.wants_tls(), ok, "{v}");
        }
    }

    #[test]
    fn numify() {
        assert_eq!(perl_numify("1."), 1.0);
        assert_eq!(perl_numify(".5"), 0.5);
        assert_eq!(perl_numify("."), 0.0);
        assert_eq!(perl_numify("-3e"), -3.0);
        assert_eq!(perl_numify("+2E+1x"), 20.0);
        assert_eq!(perl_numify("\t 7"), 7.0);
    }
}
