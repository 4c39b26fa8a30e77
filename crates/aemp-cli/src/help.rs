//! Per-command help: `aemp help <command>` and `aemp <command> --help`.
//!
//! Each topic covers a command and its siblings (`setsecret`, `secret`, `delsecret` and
//! `gensecret` share one). A name is looked up as given, then without a `set`, `del` or
//! `add` prefix, so every alias of a configuration command finds its topic.

/// One help topic.
struct Topic {
    /// The names (without `set`/`del`/`add` prefixes unless they are part of the name) that
    /// find this topic.
    names: &'static [&'static str],
    /// The text, starting with the usage line(s).
    text: &'static str,
}

const TOPICS: &[Topic] = &[
    Topic {
        names: &["demo"],
        text: "\
usage: aemp demo [--nodes N] [--seconds S]

Runs N nodes (2-32, default 3) on 127.0.0.1 in this process for about S seconds (default 3)
and narrates what happens: a chat round, round trips, a throughput run, and a monitor that
fires when the last node shuts down. Ignores the rc file.
",
    },
    Topic {
        names: &["run"],
        text: "\
usage: aemp [--connect host:port]... [--timeout S] [profile <name>] run
            [<profile>] [key value...]

Configures a node like Perl's configure (the rc file merged with the arguments, e.g.
run profile seed nodeid %n binds '[\"*:4040\"]') and runs it until SIGINT or SIGTERM.
The profile is named in the arguments or by profile <name> before run (default: the host
name); a named profile must exist in the rc file.
--connect host:port also connects it to the node listening there; if no node comes up
there within --timeout seconds (default 10), the node stops with an error.

Services (the services setting) are started by name from the tool's built-in ones:
  aemp::echo               a port answering [\"ping\", args..., <reply port>] with
                           [\"pong\", args...], registered in the global database family
                           \"echo\" (as [\"aemp::echo\", <value>] the entry's value is <value>)
  AnyEvent::MP::Global     makes the node a global node
Other names are logged as not started: a Rust node cannot load Perl modules or call Perl
functions. There is no watchdog that restarts the node.
",
    },
    Topic {
        names: &["snd"],
        text: "\
usage: aemp [--connect host:port]... [--timeout S] [profile <name>] snd <port> <arg...>

Sends the message <arg...> to <port>, then asks the port's node to relay a confirmation
back, and waits for it (at most --timeout seconds, default 10): exit status 0 means the
message reached the node.
",
    },
    Topic {
        names: &["cal"],
        text: "\
usage: aemp [--connect host:port]... [--timeout S] [profile <name>] cal <port> <arg...>

Sends <arg...> (at least one value) with a reply port appended and prints the first
reply as JSON without the outer brackets. A port without # is a node's node port (e.g.
cal <node> time). Waits for the reply at most --timeout seconds (default 10).
",
    },
    Topic {
        names: &["mon"],
        text: "\
usage: aemp [--connect host:port]... [--timeout S] [profile <name>] mon <port>

Waits until <port> dies and prints the kill reason as a JSON array ([] for a normal kill).
",
    },
    Topic {
        names: &["trace"],
        text: "\
usage: aemp [--connect host:port]... [--timeout S] [profile <name>] trace <node>

Asks <node> for its connected nodes, then each of those, and prints one line per node:
node -> peer, peer, ... (native aemp_nodes request; Perl nodes do not answer it).
",
    },
    Topic {
        names: &["stats"],
        text: "\
usage: aemp [--connect host:port]... [--timeout S] stats <node>

Prints the connection statistics of <node>: refused incoming handshakes, and per connected
peer the messages and bytes in and out, bytes queued for writing and reconnects (aemp
extension, the aemp::stats node-port request; Perl nodes do not answer it).
",
    },
    Topic {
        names: &["log"],
        text: "\
usage: aemp [--connect host:port]... [--timeout S] [profile <name>] log [<node>] [--level L]

Prints the log records of every node of the network (only those of <node> if given) as they
are logged, one line each:
  <time> <node> <level> <target>: <message>
(time in seconds since the epoch), until Ctrl-C (exit status 0). L is the highest level
shown: fatal, alert, critical, error, warn, note, info, debug, trace, or 1-9 (default
info). Like Perl's AnyEvent::MP::LogCatcher: the tool's node subscribes to every node in the
global database's node list and to nodes that join later; aemp nodes answer unless they run
in secure mode, Perl nodes when they loaded AnyEvent::MP::LogCatcher. Leaving ends every
subscription. The tool's own node is not shown.
",
    },
    Topic {
        names: &["shell"],
        text: "\
usage: aemp [--connect host:port]... [--timeout S] [profile <name>] shell [<node>]

Reads commands from stdin, one per line, and runs them on one short-lived node (the same
setup as snd/cal/mon: profile aemp unless profile <name> comes first; --connect and
--timeout apply). Shows a prompt only when stdin is a terminal, so it also works with
piped input. Keeps going after a failed command; exits with status 1 at the end if any
failed.

",
    },
    Topic {
        names: &["eval"],
        text: "\
usage: aemp eval <node> <expr...>

Not supported: the reference evaluates Perl code in a node; this implementation runs no
Perl code. Always fails (exit status 1).
",
    },
    Topic {
        names: &["restart"],
        text: "\
usage: aemp restart <node>

Not supported: aemp run has no watchdog to restart it. Stop the node with SIGTERM and
start it again. Always fails (exit status 1).
",
    },
    Topic {
        names: &["help", "--help", "-h"],
        text: "\
usage: aemp help [<command>] | aemp <command> --help

Without a command: the overview of all commands. With one: its usage.
",
    },
    Topic {
        names: &["version", "--version", "-V"],
        text: "\
usage: aemp --version

Prints the version.
",
    },
    Topic {
        names: &["profile", "showprofile", "showconfig"],
        text: "\
usage: aemp profile <name> <command>...
       aemp delprofile <name>
       aemp showprofile <name>
       aemp showconfig [<profile> [key value...]]

profile <name>: the following configuration commands on the same command line act on that
profile instead of the top level (it is created when one writes into it, or when the
command line ends after profile <name>). Before run, snd, cal, mon, trace or shell it
selects the profile of that command's node (default for snd ... shell: aemp); such a
profile must exist. delprofile removes a profile. showprofile prints a profile as
stored; showconfig prints the effective configuration of a profile (defaults, parents,
top level and the given configure arguments merged). A profile named by delprofile,
showprofile or showconfig must exist (exit status 1 otherwise).
",
    },
    Topic {
        names: &["parent"],
        text: "\
usage: aemp profile <name> setparent <profile> | aemp profile <name> delparent

The profile inherits the settings of <profile> that it does not set itself.
",
    },
    Topic {
        names: &["nodeid"],
        text: "\
usage: aemp setnodeid <id> | aemp delnodeid

The node ID: %n is replaced by the host name; %u, or a trailing /, by a random string.
",
    },
    Topic {
        names: &["secret", "gensecret"],
        text: "\
usage: aemp gensecret | aemp setsecret <secret> | aemp delsecret

The shared secret that authenticates nodes to each other. gensecret sets a random one
(180 characters, about 1071 bits).
",
    },
    Topic {
        names: &["cert", "gencert"],
        text: "\
usage: aemp gencert | aemp setcert <pemfile> | aemp delcert

The TLS key and certificate (one PEM text, key first) used when both nodes have one.
gencert makes a self-signed one (RSA 2048, CN=AnyEvent::MP, 3650 days) without calling
openssl; setcert reads it from a file. All act on the top level or, after profile <name>,
on that profile.

A node with a certificate still accepts peers that authenticate with the shared secret.
To require certificates, accept only TLS authentication:
    aemp setauth_accept tls_sha3_512
Peers without TLS (or whose certificate this PEM does not trust) are then refused, and
both sides name the reason.
",
    },
    Topic {
        names: &["seeds", "seed"],
        text: "\
usage: aemp setseeds <a,b,...> | delseeds | addseed <host:port> | delseed <host:port>

The seed nodes a node connects to in order to join the network.
",
    },
    Topic {
        names: &["binds", "bind"],
        text: "\
usage: aemp setbinds <a,b,...> | delbinds | addbind <host:port> | delbind <host:port>

The addresses a node listens on, as host:port. Host * means every interface address
except loopback (use 127.0.0.1:port for local tests); port * or 0 means a free port.
Without binds a node listens on * (a free port on every interface), except the
short-lived node of snd/cal/mon/trace/shell: it listens only when its profile (aemp)
or a parent of it sets binds.
",
    },
    Topic {
        names: &["services", "service"],
        text: "\
usage: aemp setservices <a,b,...> | delservices | addservice <s> | delservice <s>

Services started by aemp run: a name, or [name, args...] as JSON (see aemp help run for
the names this tool knows).
",
    },
    Topic {
        names: &["seteval", "deleval"],
        text: "\
usage: aemp seteval <code> | aemp deleval

Perl code the reference evaluates at start-up; kept for Perl nodes sharing the rc file,
never evaluated by aemp.
",
    },
    Topic {
        names: &[
            "secure",
            "monitor_timeout",
            "connect_interval",
            "framing_format",
            "auth_offer",
            "auth_accept",
            "autocork",
            "nodelay",
        ],
        text: "\
usage: aemp [set]<tunable> <value> | aemp del<tunable>

Tunables: secure, autocork, nodelay (booleans: 1/0, true/false); monitor_timeout,
connect_interval (seconds); framing_format (cbor, json, storable), auth_offer and
auth_accept (tls_sha3_512, hmac_sha3_512, tls_anon, cleartext) as a comma-separated list
or JSON array. auth_accept tls_sha3_512 alone requires TLS certificates (see aemp help
cert).
",
    },
];

/// The help text of `command`, if there is one.
pub(crate) fn topic(command: &str) -> Option<String> {
    let bare = ["set", "del", "add"]
        .iter()
        .filter_map(|p| command.strip_prefix(p));
    let found = std::iter::once(command)
        .chain(bare)
        .find_map(|name| TOPICS.iter().find(|t| t.names.contains(&name)))?;
    let mut text = found.text.to_string();
    if found.names.contains(&"shell") {
        text.push_str(crate::shell::SHELL_COMMANDS);
    }
    Some(text)
}

/// Whether `arg` asks for help.
pub(crate) fn is_help_flag(arg: &str) -> bool {
    arg == "--help" || arg == "-h"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_finds_its_topic() {
        for (name, expected) in [
            ("setsecret", "gensecret"),
            ("secret", "gensecret"),
            ("delsecret", "gensecret"),
            ("addseed", "addseed"),
            ("delseeds", "addseed"),
            ("setmonitor_timeout", "monitor_timeout"),
            ("delnodelay", "nodelay"),
            ("delprofile", "delprofile"),
            ("gencert", "openssl"),
            ("shell", "quit | exit"),
            ("seteval", "never evaluated"),
            ("log", "Ctrl-C"),
        ] {
            let t = topic(name).unwrap_or_else(|| panic!("no topic for {name}"));
            assert!(t.starts_with("usage: aemp"), "{name}: {t}");
            assert!(t.contains(expected), "{name}: {t}");
        }
        assert!(topic("frobnicate").is_none());
        assert!(topic("set").is_none());
    }
}
