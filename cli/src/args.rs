//! The command line: `run` and `up`, and the `[NAME=]VALUE` options that name a server.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use process_fixture::Ready;

/// Start servers, wait until they are ready, run a test command; leave nothing behind.
#[derive(Parser, Debug)]
#[command(name = "process-fixture", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Start the servers, run COMMAND with their ports, stop them; exit with COMMAND's status.
    Run {
        #[command(flatten)]
        servers: ServerArgs,
        /// Fail (exit 124) if a server exits while COMMAND runs, even if COMMAND passed.
        #[arg(long)]
        fail_on_server_exit: bool,
        /// The test command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Start the servers, print their ports and URLs, and stop them on Ctrl-C or SIGTERM.
    Up {
        #[command(flatten)]
        servers: ServerArgs,
    },
}

/// What both commands take.
#[derive(Args, Debug)]
pub(crate) struct ServerArgs {
    /// A server: `[NAME=]COMMAND`, split into words as a shell would (quotes, no shell run);
    /// `{port}`, `{port:NAME}` and `{dir}` are filled in. Repeat for several, started in order.
    #[arg(long = "server", value_name = "[NAME=]COMMAND", required = true)]
    pub(crate) servers: Vec<String>,
    /// Readiness of a server: `[NAME=]PROBE`, one of tcp (default), http:PATH,
    /// http:PATH=200,404, stdout:REGEX, stderr:REGEX, output:REGEX, file:PATH, unix:PATH,
    /// sd-notify, none. Without NAME: the unnamed server, or every server.
    #[arg(long = "ready", value_name = "[NAME=]PROBE")]
    pub(crate) ready: Vec<String>,
    /// How long each server may take to be ready (`30s`, `500ms`, `2m`).
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub(crate) timeout: Duration,
    /// How long a server gets to exit after SIGTERM before SIGKILL.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub(crate) grace: Duration,
    /// A fixed port instead of a free one: `[NAME=]N`.
    #[arg(long = "port", value_name = "[NAME=]N")]
    pub(crate) ports: Vec<String>,
    /// Run the servers as this user (when the CLI runs as root).
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// The servers' working directory.
    #[arg(long)]
    pub(crate) dir: Option<std::path::PathBuf>,
    /// Echo the servers' output live on stderr, each line prefixed with the server's name.
    #[arg(long)]
    pub(crate) echo: bool,
    /// An environment variable for the servers: `KEY=VALUE` (placeholders filled in).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub(crate) env: Vec<String>,
}

/// One server, as the options describe it.
#[derive(Debug)]
pub(crate) struct Server {
    /// `None` for the unnamed one.
    pub(crate) name: Option<String>,
    pub(crate) words: Vec<String>,
    pub(crate) ready: Ready,
    pub(crate) port: Option<u16>,
}

impl ServerArgs {
    /// The servers, checked: names unique and valid, commands split, probes parsed, every
    /// `--ready NAME=` and `--port NAME=` naming a server.
    pub(crate) fn servers(&self) -> Result<Vec<Server>, String> {
        let mut servers = Vec::new();
        for spec in &self.servers {
            let (name, command) = named(spec);
            let words = shlex::split(command)
                .filter(|w| !w.is_empty())
                .ok_or_else(|| {
                    format!("--server {spec:?}: not a command (empty, or a quote left open)")
                })?;
            if servers.iter().any(|s: &Server| s.name == name) {
                return Err(format!("--server: two servers named {}", shown(&name)));
            }
            servers.push(Server {
                name,
                words,
                ready: Ready::tcp(),
                port: None,
            });
        }
        let ready = by_name(&self.ready, "--ready", &servers, |p| {
            p.parse::<Ready>().map_err(|e| e.to_string())
        })?;
        for (name, probe) in ready {
            for s in servers
                .iter_mut()
                .filter(|s| name.is_none() || s.name == name)
            {
                s.ready = probe.clone();
            }
        }
        let ports = by_name(&self.ports, "--port", &servers, |p| {
            p.parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port number"))
        })?;
        for (name, port) in ports {
            let s = servers
                .iter_mut()
                .find(|s| s.name == name)
                .ok_or_else(|| "--port without a NAME needs an unnamed server".to_owned())?;
            s.port = Some(port);
        }
        Ok(servers)
    }

    /// `--env KEY=VALUE`, checked.
    pub(crate) fn env(&self) -> Result<BTreeMap<String, String>, String> {
        self.env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
                _ => Err(format!("--env {kv:?}: not KEY=VALUE")),
            })
            .collect()
    }
}

/// `NAME=REST` when NAME is a name (letters, digits, `_`, `-`, not first a digit), else the
/// whole text: `--server 'python3 -c "x=1"'` has no name.
fn named(spec: &str) -> (Option<String>, &str) {
    match spec.split_once('=') {
        Some((name, rest)) if is_name(name) => (Some(name.to_owned()), rest),
        _ => (None, spec),
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn shown(name: &Option<String>) -> String {
    name.as_deref()
        .map_or("(unnamed)".to_owned(), |n| format!("{n:?}"))
}

/// `[NAME=]VALUE` options parsed by `parse`, each NAME a server's.
fn by_name<T>(
    specs: &[String],
    option: &str,
    servers: &[Server],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<(Option<String>, T)>, String> {
    specs
        .iter()
        .map(|spec| {
            let (name, value) = match named(spec) {
                (Some(n), v)
                    if servers
                        .iter()
                        .any(|s| s.name.as_deref() == Some(n.as_str())) =>
                {
                    (Some(n), v)
                }
                _ => (None, spec.as_str()),
            };
            let value = parse(value).map_err(|e| format!("{option} {spec:?}: {e}"))?;
            Ok((name, value))
        })
        .collect()
}

/// `30s`, `500ms`, `2m`, or plain seconds.
fn duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (30s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "m" => n * 60.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_told_from_commands() {
        assert_eq!(
            named("api=target/api --port {port}"),
            (Some("api".into()), "target/api --port {port}")
        );
        assert_eq!(named("python3 -c 'x=1'").0, None);
        assert_eq!(named("FOO=1 cmd").0, Some("FOO".into())); // a name: env goes in --env
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert!(duration("soon").is_err());
    }
}
