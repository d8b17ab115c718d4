//! Starting the servers, running the test command under a guardian of its own, and the exit
//! status: the command's own; 125 when a server never became ready; 124 with
//! `--fail-on-server-exit` when a server exited meanwhile; 128 + the signal on SIGINT/SIGTERM.

use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use process_fixture::{Builder, Error, ProcessFixture, Ready, Signal};

use crate::args::{Server, ServerArgs};

/// A server never became ready (or could not be started).
pub(crate) const EXIT_NOT_READY: i32 = 125;
/// `--fail-on-server-exit`: a server exited while the test command ran.
pub(crate) const EXIT_SERVER_EXITED: i32 = 124;
/// A usage error (as clap's own).
const EXIT_USAGE: i32 = 2;
/// The longest pause between two looks at the test command and the servers.
const POLL_MAX: Duration = Duration::from_millis(50);

/// A started server.
struct Started {
    name: Option<String>,
    fixture: ProcessFixture,
}

/// `process-fixture run`.
pub(crate) fn run(
    args: &ServerArgs,
    command: &[String],
    fail_on_exit: bool,
    signals: &Receiver<i32>,
) -> i32 {
    let started = match start_all(args) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let mut test = Builder::new(&command[0]);
    test.args(&command[1..])
        .envs(test_env(&started))
        .ready(Ready::none())
        .allow_early_exit()
        .inherit_output()
        .grace_period(args.grace);
    let test = match test.spawn() {
        Ok(test) => test,
        Err(e) => {
            eprintln!("process-fixture: the test command: {e}");
            return if matches!(e, Error::ProgramNotFound { .. }) {
                127
            } else {
                126
            };
        }
    };
    let mut server_exited = false;
    let mut wait = Duration::from_millis(1);
    while test.is_running() {
        match signals.recv_timeout(wait) {
            Ok(sig) => {
                // Passed on to the test command; then its grace, SIGKILL, its whole tree.
                let _ = test.stop_with(Signal::from_raw(sig));
                stop_all(started);
                return 128 + sig;
            }
            Err(RecvTimeoutError::Timeout) => wait = (wait * 2).min(POLL_MAX),
            Err(RecvTimeoutError::Disconnected) => wait = POLL_MAX,
        }
        server_exited |= warn_exited(&started);
    }
    let code = match test.stop() {
        Ok(report) => report.exit_status.map_or(1, exit_code),
        Err(e) => {
            eprintln!("process-fixture: stopping the test command: {e}");
            1
        }
    };
    server_exited |= warn_exited(&started);
    stop_all(started);
    match (code, fail_on_exit && server_exited) {
        (0, true) => EXIT_SERVER_EXITED,
        (code, _) => code,
    }
}

/// `process-fixture up`: start, print where, wait for Ctrl-C or SIGTERM, stop.
pub(crate) fn up(args: &ServerArgs, signals: &Receiver<i32>) -> i32 {
    let started = match start_all(args) {
        Ok(started) => started,
        Err(code) => return code,
    };
    // Written with errors ignored: a reader that went away must not end us before the stop.
    let mut out = std::io::stdout().lock();
    for s in &started {
        let name = s.name.as_deref().unwrap_or("server");
        let (port, url, pid) = (s.fixture.port(), s.fixture.url(), s.fixture.pid());
        let _ = writeln!(out, "{name}: port={port} url={url} pid={pid}");
    }
    let _ = writeln!(out, "up: Ctrl-C to stop");
    let _ = out.flush();
    drop(out);
    let _ = signals.recv();
    stop_all(started);
    0
}

/// Starts the servers in order; on a failure, stops those started and gives the exit status.
fn start_all(args: &ServerArgs) -> Result<Vec<Started>, i32> {
    let (servers, env) = match args.servers().and_then(|s| Ok((s, args.env()?))) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("process-fixture: {e}");
            return Err(EXIT_USAGE);
        }
    };
    let mut started = Vec::new();
    for server in servers {
        let mut b = builder(&server, args);
        b.envs(&env);
        match b.spawn() {
            Ok(fixture) => started.push(Started {
                name: server.name,
                fixture,
            }),
            Err(e) => {
                let name = server
                    .name
                    .as_deref()
                    .map_or(String::new(), |n| format!(" {n}"));
                eprintln!("process-fixture: server{name} did not start: {e}");
                stop_all(started);
                return Err(EXIT_NOT_READY);
            }
        }
    }
    Ok(started)
}

fn builder(server: &Server, args: &ServerArgs) -> Builder {
    let mut b = Builder::new(&server.words[0]);
    b.args(&server.words[1..])
        .ready(server.ready.clone())
        .ready_timeout(args.timeout)
        .grace_period(args.grace)
        .allow_early_exit(); // a server that exits is reported here, not by a panic
    if args.echo {
        let name = server.name.clone();
        let program = std::path::Path::new(&server.words[0])
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        b.echo_as(&name.or(program).unwrap_or_default(), true);
    }
    if let Some(port) = server.port {
        b.port(port);
    }
    if let Some(user) = &args.user {
        b.user(user.clone());
    }
    if let Some(dir) = &args.dir {
        b.current_dir(dir);
    }
    b
}

/// `PORT` and `URL` for the unnamed server, `<NAME>_PORT` and `<NAME>_URL` for the others.
fn test_env(started: &[Started]) -> Vec<(String, String)> {
    started
        .iter()
        .flat_map(|s| {
            let prefix = s.name.as_ref().map_or(String::new(), |n| {
                format!("{}_", n.to_ascii_uppercase().replace('-', "_"))
            });
            [
                (format!("{prefix}PORT"), s.fixture.port().to_string()),
                (format!("{prefix}URL"), s.fixture.url()),
            ]
        })
        .collect()
}

/// Warns (on stderr) about servers that are no longer running; whether there is one.
fn warn_exited(started: &[Started]) -> bool {
    let mut any = false;
    for s in started.iter().filter(|s| !s.fixture.is_running()) {
        any = true;
        let name = s.name.as_deref().unwrap_or("the server");
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            eprintln!("process-fixture: warning: {name} exited while the test command ran");
        });
    }
    any
}

fn stop_all(started: Vec<Started>) {
    for s in started.into_iter().rev() {
        if let Err(e) = s.fixture.stop() {
            let name = s.name.as_deref().unwrap_or("server");
            eprintln!("process-fixture: stopping {name}: {e}");
        }
    }
}

/// A wait status as a shell reports it: the exit code, or 128 + the signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
