//! A failed readiness wait, explained: what was run, what was awaited, which processes were
//! alive and where they listened (looked at before they are stopped), and the likely cause when
//! it can be known.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::config::Config;
use crate::error::{Diagnosis, Error};
use crate::output::Which;
use crate::ready::{covers, Context, Failure, Seen};
use crate::running::Running;
use crate::teardown::{self, ERROR_TAIL_LINES};

/// What a failed wait saw.
pub(crate) fn diagnose(cx: &Context, cfg: &Config, command: &str, seen: Seen) -> Diagnosis {
    let reported = cx
        .monitor
        .with(|s| s.listeners.iter().map(|l| l.addr).collect());
    let listening = cx.tree.listening(reported);
    let hint = hint(cx, cfg, &seen, &listening);
    Diagnosis {
        command: command.to_owned(),
        awaited: seen.awaited,
        waited: seen.waited,
        last_error: seen.last_error,
        alive: cx.tree.describe_alive(),
        listening,
        notify_status: cx.monitor.with(|s| s.notify_status.clone()),
        hint,
        dir: None,
    }
}

/// Turns a readiness failure into an error, after tearing the tree down. The fixture's
/// directory is kept for a look.
pub(crate) fn fail(mut run: Running, failure: Failure, mut diagnosis: Diagnosis) -> Error {
    diagnosis.dir = run.keep_dir();
    let _ = teardown::finish(&mut run);
    let output = Box::new(run.tail(ERROR_TAIL_LINES));
    let diagnosis = Box::new(diagnosis);
    let program = run.program.clone();
    match failure {
        Failure::Exited(status) => Error::ExitedBeforeReady {
            program,
            status: ExitStatus::from_raw(status),
            output,
            diagnosis,
        },
        Failure::NotReady => Error::NotReady {
            program,
            output,
            diagnosis,
        },
        Failure::Foreign { port, holder } => Error::PortInUse {
            program,
            port,
            holder,
        },
    }
}

/// A guess at the cause, where one can be known; the first that applies.
fn hint(cx: &Context, cfg: &Config, seen: &Seen, listening: &[SocketAddr]) -> Option<String> {
    http_refused(cfg, seen)
        .or_else(|| other_stream(cx, cfg))
        .or_else(|| listens_but_silent(cx, cfg, listening))
        .or_else(|| listens_elsewhere(cx, cfg, listening))
        .or_else(|| port_not_given(cx, cfg))
}

/// A 4xx is the server's considered answer: retrying will not change it.
fn http_refused(cfg: &Config, seen: &Seen) -> Option<String> {
    let status = seen.http_status.filter(|s| (400..500).contains(s))?;
    let path = cfg.ready.http_path()?;
    Some(format!(
        "GET {path} answered {status}: is the path right? To accept that answer, wait with \
         Ready::http_status({path:?}, [{status}])"
    ))
}

/// A line probe whose pattern matched a line of the stream it does not watch.
fn other_stream(cx: &Context, cfg: &Config) -> Option<String> {
    cfg.ready
        .line_patterns()
        .into_iter()
        .find_map(|(which, pattern)| {
            let regex = regex::Regex::new(pattern).ok()?;
            let (watched, other, other_probe) = match which {
                Which::Stdout => ("stdout", "stderr", "Ready::stderr"),
                Which::Stderr => ("stderr", "stdout", "Ready::stdout"),
                Which::Both => return None,
            };
            let found = cx.monitor.with(|s| {
                let stream = if which == Which::Stdout {
                    &s.stderr
                } else {
                    &s.stdout
                };
                stream.find_line(0, &regex).is_some()
            });
            found.then(|| {
                format!(
                "{pattern:?} matched a line of {other}, but the probe watches {watched}: wait with \
                 {other_probe} or Ready::output (either stream)"
            )
            })
        })
}

/// The port listens, but the line the probe waits for never came.
fn listens_but_silent(cx: &Context, cfg: &Config, listening: &[SocketAddr]) -> Option<String> {
    let (_, pattern) = cfg.ready.line_patterns().into_iter().next()?;
    let port = cx.port();
    let target = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    listening.iter().any(|a| covers(*a, target)).then(|| {
        format!(
            "its port {port} listens, but no line matched {pattern:?}: is the pattern right \
             (it is a regular expression, matched against each line)? Ready::tcp() waits for \
             the port instead"
        )
    })
}

/// It listens on the port a probe waits on, or on another, but not where the probe looks.
fn listens_elsewhere(cx: &Context, cfg: &Config, listening: &[SocketAddr]) -> Option<String> {
    let targets = cfg.ready.port_targets(cx.port());
    let missed = targets
        .into_iter()
        .find(|t| !listening.iter().any(|a| covers(*a, *t)))?;
    if let Some(addr) = listening.iter().find(|a| a.port() == missed.port()) {
        return Some(format!(
            "it listens on {addr} only, which {missed} does not reach: bind it to {} (or all \
             addresses), or wait with Ready::tcp_addr(\"{addr}\".parse()?)",
            missed.ip()
        ));
    }
    let elsewhere = listening.first()?;
    Some(format!(
        "it listens on {elsewhere}, not on {missed}: is `{{port}}` missing from its arguments \
         or config? (For another address: Ready::tcp_addr.)"
    ))
}

/// `{port}` was given nowhere, so the server cannot know it.
fn port_not_given(cx: &Context, cfg: &Config) -> Option<String> {
    if !cfg.ready.waits_for_port() {
        return None;
    }
    let port = cx.port();
    let captured = cx.monitor.with(|s| s.captured.contains_key(""));
    (!cfg.mentions_port() && cfg.port.is_none() && !captured).then(|| {
        format!(
            "`{{port}}` appears nowhere in its arguments, environment or files, so it cannot \
             know it should listen on {port}; give it `{{port}}`, fix the port with \
             Builder::port, capture the port it prints with a `(?P<port>…)` group, or wait \
             for something else (Ready::none() for a program that does not listen)"
        )
    })
}
