//! `aemp shell [<node>]`: protocol commands read line by line from stdin, all on one
//! short-lived node (the same node setup as `snd`/`cal`/`mon`, see [`proto`]).
//!
//! The reference's `shell` opens a Perl shell inside a remote node; a Rust node runs no
//! Perl code, so this shell offers the message-level commands instead. It reads from a
//! terminal (with a prompt) or from a pipe (no prompt, so scripts get clean output), keeps
//! going after a failed command and exits with status 1 at the end if any command failed.
//! Ctrl-C cancels the command that is running instead of ending the shell; at the prompt it
//! discards the line, and a second one in a row leaves the shell.

use crate::proto::{self, Request};
use crate::rc_commands::decode_arg;
use crate::{failed, Failure, Options};
use aemp::{Config, Node, NodeId};
use serde_json::Value;
use std::io::{BufRead, IsTerminal, Read, Write};
use tokio::sync::mpsc;

/// The longest input line accepted (a message is typed, not streamed; this bounds the
/// buffer a line without newline could otherwise grow without end).
const MAX_LINE: usize = 1024 * 1024;

/// The help text of the shell's own `help` command (also part of `aemp help shell`).
pub(crate) const SHELL_COMMANDS: &str = "\
Shell commands (one per line; arguments as on the command line: those starting with
[, { or \" are JSON and may contain spaces, all others are strings):
  snd <port> <arg...>      send a message and confirm its delivery
  cal <port> <arg...>      send with a reply port appended, print the reply as JSON
  mon <port>               wait until the port dies, print the kill reason
  trace <node>             print the nodes reachable from <node> and their links
  nodes                    print the connected nodes, one per line
  db <family>              print a family of the global database as a JSON object
  eval ...                 not supported: a Rust node cannot evaluate Perl code
  help                     this text
  quit | exit              leave the shell (so does end of input, Ctrl-D)
  Lines starting with # are comments. With a <node> given to shell, a port written as
  #name means <node>#name and a lone # means <node> itself (its node port).
  Ctrl-C cancels the command that is running (mon, cal, ...; it counts as failed) and
  returns to the prompt. At the prompt, Ctrl-C discards the line typed so far; a second
  Ctrl-C in a row leaves the shell.
";

/// What the loop does after a command.
enum Flow {
    Continue,
    Quit,
}

/// One input line from the reader thread: `Ok(None)` at end of input.
type Line = Result<Option<String>, String>;

/// Runs the shell on a fresh node from `cfg`; `default` is the `<node>` argument.
pub(crate) async fn run(
    cfg: Config,
    opts: &Options,
    default: Option<NodeId>,
) -> Result<(), Failure> {
    let interactive = std::io::stdin().is_terminal();
    let node = proto::start(cfg, opts).await?;
    if interactive {
        eprintln!(
            "aemp shell on node {}; \"help\" lists the commands, \"quit\" leaves",
            node.id()
        );
    }
    // From here on Ctrl-C no longer ends the process: the loop decides what it does.
    let mut interrupts = Interrupts::new()?;
    // Stdin is read on a plain thread: a blocking read cannot be cancelled, and the thread
    // simply ends with the process. The channel of one holds at most one line ahead.
    let (tx, mut rx) = mpsc::channel::<Line>(1);
    std::thread::spawn(move || read_lines(&tx));
    let mut failures = 0usize;
    // Ctrl-C pressed at the prompt since the last line was entered.
    let mut idle_interrupts = 0u32;
    loop {
        if interactive {
            print!("aemp> ");
            let _ = std::io::stdout().flush();
        }
        let input = tokio::select! {
            biased;
            input = rx.recv() => input,
            () = interrupts.next() => {
                idle_interrupts += 1;
                if interactive {
                    // The terminal has discarded the typed line; the cursor is after "^C".
                    eprintln!();
                }
                if idle_interrupts >= 2 {
                    break;
                }
                eprintln!("(Ctrl-C again, Ctrl-D or \"quit\" leaves the shell)");
                continue;
            }
        };
        idle_interrupts = 0;
        let line = match input {
            None | Some(Ok(None)) => {
                if interactive {
                    // End of input (Ctrl-D) leaves the cursor after the prompt.
                    println!();
                }
                break;
            }
            Some(Ok(Some(l))) => l,
            Some(Err(e)) => {
                eprintln!("aemp: {e}");
                failures += 1;
                break;
            }
        };
        tracing::debug!(line = %line.trim(), "running");
        let outcome = tokio::select! {
            biased;
            outcome = exec_line(&node, opts, default.as_ref(), &line) => Some(outcome),
            () = interrupts.next() => None,
        };
        match outcome {
            Some(Ok(Flow::Continue)) => {}
            Some(Ok(Flow::Quit)) => break,
            Some(Err(Failure::Usage(m) | Failure::Failed(m))) => {
                eprintln!("error: {m}");
                failures += 1;
            }
            // Dropping the command's future ends its wait (and drops its monitor or reply
            // port).
            None => {
                if interactive {
                    eprintln!();
                }
                let cmd = line.split_whitespace().next().unwrap_or_default();
                eprintln!("{cmd}: cancelled (Ctrl-C)");
                failures += 1;
            }
        }
    }
    node.shutdown().await;
    match failures {
        0 => Ok(()),
        n => Err(failed(format!("shell: {n} command(s) failed"))),
    }
}

/// Ctrl-C (SIGINT) while the shell runs. An interrupt that arrives while nobody waits is
/// kept until the next [`Interrupts::next`].
struct Interrupts {
    #[cfg(unix)]
    sigint: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Takes over SIGINT from the default action (ending the process).
    fn new() -> Result<Interrupts, Failure> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let sigint = signal(SignalKind::interrupt())
                .map_err(|e| failed(format!("cannot watch for Ctrl-C: {e}")))?;
            Ok(Interrupts { sigint })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
        }
    }

    /// The next Ctrl-C (never returns if Ctrl-C can no longer be watched).
    async fn next(&mut self) {
        #[cfg(unix)]
        let watching = self.sigint.recv().await.is_some();
        #[cfg(not(unix))]
        let watching = tokio::signal::ctrl_c().await.is_ok();
        if !watching {
            std::future::pending::<()>().await;
        }
    }
}

/// Reads stdin line by line into `tx` until end of input, an error, or the receiver is
/// gone.
fn read_lines(tx: &mpsc::Sender<Line>) {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    loop {
        let mut buf = Vec::new();
        let item = match (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) => Ok(None),
            Ok(_) if buf.len() > MAX_LINE => {
                Err(format!("input line longer than {MAX_LINE} bytes"))
            }
            Ok(_) => String::from_utf8(buf)
                .map(Some)
                .map_err(|_| "input line is not UTF-8".to_string()),
            Err(e) => Err(format!("cannot read stdin: {e}")),
        };
        let last = !matches!(item, Ok(Some(_)));
        if tx.blocking_send(item).is_err() || last {
            return;
        }
    }
}

/// Runs one input line.
async fn exec_line(
    node: &Node,
    opts: &Options,
    default: Option<&NodeId>,
    line: &str,
) -> Result<Flow, Failure> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(Flow::Continue);
    }
    let mut words = split_line(line)?;
    let Value::String(cmd) = words.remove(0) else {
        return Err(Failure::Usage("a line starts with a command name".into()));
    };
    let usage = |m: &str| Failure::Usage(format!("{cmd}: {m}"));
    match cmd.as_str() {
        "quit" | "exit" => Ok(Flow::Quit),
        "help" => {
            print!("{SHELL_COMMANDS}");
            Ok(Flow::Continue)
        }
        "nodes" => {
            if !words.is_empty() {
                return Err(usage("takes no arguments"));
            }
            let mut up: Vec<String> = node
                .up_nodes()
                .await
                .iter()
                .map(|n| n.to_string())
                .collect();
            up.sort();
            for n in up {
                println!("{n}");
            }
            Ok(Flow::Continue)
        }
        "db" => {
            let [Value::String(family)] = words.as_slice() else {
                return Err(usage("takes one family name"));
            };
            let fam = tokio::time::timeout(opts.timeout(), node.db_family(family))
                .await
                .map_err(|_| {
                    failed(format!(
                        "db: no answer from a global node within {} s",
                        opts.timeout().as_secs_f64()
                    ))
                })?
                .map_err(|e| Failure::Usage(format!("db: {e}")))?;
            let obj: serde_json::Map<String, Value> = fam
                .iter()
                .map(|(k, v)| {
                    let v = serde_json::to_value(v)
                        .unwrap_or_else(|e| Value::String(format!("<unprintable: {e}>")));
                    (k.to_string(), v)
                })
                .collect();
            println!("{}", Value::Object(obj));
            Ok(Flow::Continue)
        }
        "eval" => Err(failed(
            "eval: Perl code cannot be evaluated here: this is a Rust node and the nodes it \
             talks to are reached by messages only (use snd/cal)",
        )),
        "snd" | "cal" | "mon" | "trace" => {
            if let Some(Value::String(port)) = words.first_mut() {
                *port = resolve_port(&cmd, port, default)?;
            }
            let req = Request::parse(&cmd, &words)?;
            proto::exec(node, opts, req).await?;
            Ok(Flow::Continue)
        }
        other => Err(Failure::Usage(format!(
            "unknown shell command {other:?} (\"help\" lists them)"
        ))),
    }
}

/// Resolves a port relative to the shell's node: `#name` is `<node>#name`, a lone `#` is
/// `<node>`; anything else is returned unchanged.
fn resolve_port(cmd: &str, port: &str, default: Option<&NodeId>) -> Result<String, Failure> {
    let Some(name) = port.strip_prefix('#') else {
        return Ok(port.to_string());
    };
    let Some(node) = default else {
        return Err(Failure::Usage(format!(
            "{cmd}: {port:?} is relative to the shell's node, but none was given (aemp shell \
             <node>)"
        )));
    };
    Ok(if name.is_empty() {
        node.to_string()
    } else {
        format!("{node}#{name}")
    })
}

/// Splits a line into arguments: a JSON value (starting with `[`, `{` or `"`) extends to
/// its end and may contain spaces; everything else is a whitespace-separated string.
fn split_line(line: &str) -> Result<Vec<Value>, Failure> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (value, used) = if rest.starts_with(['[', '{', '"']) {
            let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            match values.next() {
                Some(Ok(v)) => (v, values.byte_offset()),
                // Not JSON: the command-line rules decide (a bracketed IPv6 `[addr]:port`
                // stays a string, anything else is an error).
                _ => (
                    decode_arg(&rest[..word_end]).map_err(|e| Failure::Usage(e.to_string()))?,
                    word_end,
                ),
            }
        } else {
            (Value::String(rest[..word_end].to_string()), word_end)
        };
        rest = &rest[used..];
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            return Err(Failure::Usage(format!(
                "a space must follow the JSON value before {rest:?}"
            )));
        }
        out.push(value);
        rest = rest.trim_start();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splits_words_and_json() {
        assert_eq!(
            split_line(r#"cal n#p ping [1, 2]  {"a": "b c"} "x y" plain"#).unwrap(),
            vec![
                json!("cal"),
                json!("n#p"),
                json!("ping"),
                json!([1, 2]),
                json!({"a": "b c"}),
                json!("x y"),
                json!("plain"),
            ]
        );
        assert_eq!(
            split_line("snd p [::1]:4040").unwrap(),
            vec![json!("snd"), json!("p"), json!("[::1]:4040")]
        );
        assert!(split_line("cal p [1,").is_err());
        assert!(split_line("cal p [1]x").is_err());
        assert!(split_line("cal p {nope}").is_err());
    }

    #[test]
    fn relative_ports() {
        let n = NodeId::new("there").unwrap();
        assert_eq!(resolve_port("cal", "#p", Some(&n)).unwrap(), "there#p");
        assert_eq!(resolve_port("cal", "#", Some(&n)).unwrap(), "there");
        assert_eq!(resolve_port("cal", "a#b", Some(&n)).unwrap(), "a#b");
        assert_eq!(resolve_port("cal", "a", None).unwrap(), "a");
        assert!(matches!(
            resolve_port("cal", "#p", None),
            Err(Failure::Usage(_))
        ));
    }
}
