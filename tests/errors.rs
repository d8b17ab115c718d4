//! Every way `spawn` can be misconfigured or fail comes back as a typed [`Error`], never as a
//! panic, and its `Display` says what was wrong (the contract of `process_fixture::Error`; the
//! exec failure comes back from the child over a close-on-exec pipe: docs/design.md, "The process
//! model").
//!
//! Covered: a program that does not exist (`ProgramNotFound`); a file that exists but is not
//! executable (`Exec` with `EACCES` reported from the child, stage `exec`; `ENOENT` for a script
//! whose interpreter is missing); a missing or non-directory working directory (`CurrentDir`); an
//! invalid readiness regex (`InvalidRegex`); NUL bytes in an argument or an environment value
//! (`NulByte`, naming which; in the program or working directory, a typed error too); an invalid
//! stop signal (`InvalidSignal`); a fixed port that something already listens on (`PortInUse`,
//! naming the holder, with nothing spawned); a fixed port 0 (means: pick one); a
//! server that dies before it is ready (`ExitedBeforeReady`, with its output) and one that never
//! gets ready (`NotReady`, and stopped). Also the happy paths next to them:
//! `ProcessFixture::spawn(&Command, Ready)` substitutes `{port}` in arguments and environment
//! values, and `env_clear`/`env_remove` shape the server's environment exactly.
#![cfg(target_os = "linux")] // reads /proc

mod support;

use support::{marked_processes, marker, MARKER_VAR};

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use process_fixture::{Builder, Error, ExecStage, ProcessFixture, Ready, Signal};

const EVENTUALLY: Duration = Duration::from_secs(20);
/// The environment of a running process, as `KEY=value` strings.
fn environ_of(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("reading environ");
    raw.split(|&b| b == 0)
        .filter(|kv| !kv.is_empty())
        .map(|kv| String::from_utf8_lossy(kv).into_owned())
        .collect()
}

/// A builder for `fixture-server --mode well-behaved`, marked.
fn server_builder(marker: &str) -> Builder {
    let mut b = ProcessFixture::builder(support::server());
    b.args(["--mode", "well-behaved", "--port", "{port}"])
        .env(MARKER_VAR, marker)
        .ready(Ready::tcp())
        .ready_timeout(EVENTUALLY);
    b
}

/// Spawns, expecting an error; a running fixture is a test failure (and is stopped).
fn spawn_err(b: &Builder) -> Error {
    match b.spawn() {
        Ok(fx) => panic!("expected an error, got a running fixture: {fx:?}"),
        Err(e) => e,
    }
}

/// The error's chain (its `Display`, then each `source()`), as `cargo test` and anyhow print it.
fn chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!("\nCaused by: {s}"));
        source = s.source();
    }
    text
}

/// The error's chain is non-empty and mentions each of `needles`; its cause is said once.
fn assert_says(e: &Error, needles: &[&str]) {
    if let Some(source) = std::error::Error::source(e) {
        let cause = source.to_string();
        assert!(
            !e.to_string().contains(&cause),
            "the cause {cause:?} is printed twice in the chain: {}",
            chain(e)
        );
    }
    let text = chain(e);
    assert!(!text.trim().is_empty(), "empty Display for {e:?}");
    for n in needles {
        assert!(
            text.contains(n),
            "Display of {e:?} should mention {n:?}, got: {text}"
        );
    }
}

/// A unique temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(marker(&format!("pf-errors-{tag}")));
        std::fs::create_dir(&path).expect("creating a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_missing_program_is_program_not_found() {
    for program in [
        "process-fixture-surely-no-such-program",
        "/nonexistent-process-fixture-dir/server",
        "./no-such-dir/server",
    ] {
        let m = marker("not-found");
        let mut b = ProcessFixture::builder(program);
        b.args(["--port", "{port}"]).env(MARKER_VAR, &m);
        let e = spawn_err(&b);
        match &e {
            Error::ProgramNotFound { program: p } => assert_eq!(p, program),
            other => panic!("{program}: expected ProgramNotFound, got {other:?}"),
        }
        assert_says(&e, &[program, "not found"]);
        assert!(marked_processes(&m).is_empty());
    }
}

#[test]
fn a_program_not_on_the_servers_path_is_program_not_found() {
    // `PATH` of the server's environment is searched, as execvp in the child would.
    let dir = TempDir::new("empty-path");
    let mut b = ProcessFixture::builder("sh");
    b.env("PATH", &dir.0);
    let e = spawn_err(&b);
    assert!(
        matches!(&e, Error::ProgramNotFound { program } if program == "sh"),
        "{e:?}"
    );
    assert_says(&e, &["\"sh\"", "not found"]);
}

#[test]
fn a_file_that_is_not_executable_is_an_exec_error_with_eacces() {
    let dir = TempDir::new("noexec");
    let script = dir.0.join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("writing the script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let m = marker("noexec");
    let mut b = ProcessFixture::builder(&script);
    b.env(MARKER_VAR, &m).ready(Ready::none());
    let e = spawn_err(&b);
    match &e {
        Error::Exec {
            program,
            stage,
            source,
        } => {
            assert_eq!(Path::new(program), script);
            assert_eq!(*stage, ExecStage::Exec);
            assert_eq!(source.raw_os_error(), Some(libc::EACCES), "{source:?}");
        }
        other => panic!("expected Exec, got {other:?}"),
    }
    assert_says(
        &e,
        &[&script.display().to_string(), "exec", "ermission denied"],
    );
    assert!(
        std::error::Error::source(&e).is_some(),
        "Exec carries its OS error as source"
    );
    assert!(marked_processes(&m).is_empty());
}

#[test]
fn a_script_with_a_missing_interpreter_is_an_exec_error_with_enoent() {
    let dir = TempDir::new("interp");
    let script = dir.0.join("bad-interpreter.sh");
    std::fs::write(&script, "#!/nonexistent-process-fixture-interpreter\n").expect("writing");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
    let e = spawn_err(ProcessFixture::builder(&script).ready(Ready::none()));
    match &e {
        Error::Exec { stage, source, .. } => {
            assert_eq!(*stage, ExecStage::Exec);
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT), "{source:?}");
        }
        other => panic!("expected Exec, got {other:?}"),
    }
    assert_says(&e, &[&script.display().to_string(), "exec"]);
}

#[test]
fn a_bad_working_directory_is_current_dir() {
    let dir = TempDir::new("cwd");
    let missing = dir.0.join("missing");
    let m = marker("cwd");
    let e = spawn_err(server_builder(&m).current_dir(&missing));
    match &e {
        Error::CurrentDir { path, source, .. } => {
            assert_eq!(path, &missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{source:?}");
        }
        other => panic!("expected CurrentDir, got {other:?}"),
    }
    assert_says(&e, &[&missing.display().to_string()]);

    let file = dir.0.join("a-file");
    std::fs::write(&file, "").expect("writing a file");
    let e = spawn_err(server_builder(&m).current_dir(&file));
    assert!(
        matches!(&e, Error::CurrentDir { path, .. } if path == &file),
        "a file as working directory: {e:?}"
    );
    assert_says(&e, &[&file.display().to_string()]);
    assert!(marked_processes(&m).is_empty());
}

#[test]
fn an_invalid_readiness_regex_is_invalid_regex() {
    for ready in [Ready::stdout("("), Ready::stderr("("), Ready::output("(")] {
        let m = marker("regex");
        let e = spawn_err(server_builder(&m).ready(ready.clone()));
        match &e {
            Error::InvalidRegex {
                pattern, message, ..
            } => {
                assert_eq!(pattern, "(");
                assert!(!message.is_empty());
            }
            other => panic!("{ready:?}: expected InvalidRegex, got {other:?}"),
        }
        assert_says(&e, &["\"(\"", "pattern"]);
        assert!(marked_processes(&m).is_empty());
    }
}

#[test]
fn nul_bytes_are_nul_byte_errors_naming_where() {
    let m = marker("nul");
    let mut b = server_builder(&m);
    b.arg("--fine").arg("bad\0arg");
    // The four arguments of server_builder come first: --mode well-behaved --port {port}.
    let e = spawn_err(&b);
    assert!(
        matches!(&e, Error::NulByte { what, .. } if what == "argument 6"),
        "{e:?}"
    );
    assert_says(&e, &["argument 6", "NUL"]);

    let mut b = ProcessFixture::builder(support::server());
    b.arg("ok").arg("x\0y");
    let e = spawn_err(&b);
    assert!(
        matches!(&e, Error::NulByte { what, .. } if what == "argument 2"),
        "{e:?}"
    );
    assert_says(&e, &["argument 2", "NUL"]);

    let e = spawn_err(server_builder(&m).env("PF_NUL_VALUE", "x\0y"));
    assert!(
        matches!(&e, Error::NulByte { what, .. } if what == "environment variable PF_NUL_VALUE"),
        "{e:?}"
    );
    assert_says(&e, &["environment variable PF_NUL_VALUE", "NUL"]);
    assert!(marked_processes(&m).is_empty());
}

#[test]
fn nul_bytes_in_the_program_or_working_directory_are_typed_errors() {
    // NUL bytes are checked before any file lookup, so the error names the real culprit.
    for program in ["fixture\0server", "/bin/sh\0x"] {
        match spawn_err(&ProcessFixture::builder(program)) {
            Error::NulByte { what, .. } => assert_eq!(what, "the program name", "{program:?}"),
            e => panic!("{program:?}: expected NulByte, got {e:?}"),
        }
    }
    match spawn_err(server_builder(&marker("nul-cwd")).current_dir("/tmp\0x")) {
        Error::NulByte { what, .. } => assert_eq!(what, "the working directory"),
        e => panic!("expected NulByte, got {e:?}"),
    }
}

#[test]
fn an_invalid_stop_signal_is_invalid_signal() {
    for raw in [0, 999, -1, 65] {
        let m = marker("signal");
        let e = spawn_err(server_builder(&m).stop_signal(Signal::from_raw(raw)));
        assert!(
            matches!(e, Error::InvalidSignal { signal, .. } if signal == raw),
            "{raw}: {e:?}"
        );
        assert_says(&e, &[&raw.to_string(), "signal"]);
        assert!(marked_processes(&m).is_empty());
    }
}

#[test]
fn a_fixed_port_we_listen_on_is_port_in_use_and_nothing_is_spawned() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let port = listener.local_addr().expect("local_addr").port();
    let m = marker("port-ours");
    let e = spawn_err(server_builder(&m).port(port));
    match &e {
        Error::PortInUse {
            port: p, holder, ..
        } => {
            assert_eq!(*p, port);
            assert_eq!(
                holder.as_ref().map(|h| h.pid),
                Some(std::process::id()),
                "the holder is this process"
            );
        }
        other => panic!("expected PortInUse, got {other:?}"),
    }
    assert_says(
        &e,
        &[&port.to_string(), "in use", &std::process::id().to_string()],
    );
    assert!(
        marked_processes(&m).is_empty(),
        "a server was spawned although the port was refused"
    );
    // The listener is untouched and still ours.
    assert_eq!(listener.local_addr().expect("local_addr").port(), port);
    drop(listener);
}

#[test]
fn a_fixed_port_another_process_listens_on_names_that_process() {
    // A server that is not a fixture: started directly, on a port the kernel picks.
    let mut other = Command::new(support::server())
        .args(["--mode", "well-behaved", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning fixture-server");
    let mut line = String::new();
    let _ = BufReader::new(other.stdout.take().expect("piped stdout")).read_line(&mut line);
    let port: Option<u16> = line
        .trim()
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|p| p.parse().ok());
    let result = port.map(|port| {
        let m = marker("port-other");
        (port, spawn_err(server_builder(&m).port(port)), m)
    });
    let _ = other.kill();
    let _ = other.wait();
    let (port, e, m) = result.unwrap_or_else(|| panic!("unexpected server line {line:?}"));
    match &e {
        Error::PortInUse {
            port: p, holder, ..
        } => {
            assert_eq!(*p, port);
            let holder = holder.as_ref().expect("the holder is named");
            assert_eq!(holder.pid, other.id(), "the holder is the other server");
            assert!(holder.command.contains("fixture-server"), "{holder:?}");
        }
        other => panic!("expected PortInUse, got {other:?}"),
    }
    assert_says(&e, &[&port.to_string(), &other.id().to_string()]);
    assert!(marked_processes(&m).is_empty());
}

/// `.port(0)` means "pick one", as it does for `bind` (`Builder::port`): never a fixture that
/// probes 127.0.0.1:0 until the readiness timeout and then fails with `NotReady`.
#[test]
fn a_fixed_port_of_zero_means_pick_one() {
    let m = marker("port-zero");
    let result = server_builder(&m)
        .port(0)
        .ready_timeout(Duration::from_secs(5))
        .spawn();
    let fx = match result {
        Ok(fx) => fx,
        Err(e) => panic!("port(0) must pick a port, got: {e}"),
    };
    assert_ne!(fx.port(), 0, "a fixture on port 0");
    let body = support::http_get(fx.port(), "/").expect("the server answers on the picked port");
    assert_eq!(body.trim(), format!("ok pid={}", fx.pid()));
    let (pgid, port) = (fx.pgid(), fx.port());
    drop(fx);
    support::assert_nothing_left(pgid, &[], port);
    assert!(marked_processes(&m).is_empty());
}

#[test]
fn a_server_that_dies_before_ready_is_exited_before_ready_with_its_output() {
    let m = marker("crash");
    let mut b = ProcessFixture::builder(support::server());
    b.args(["--mode", "crash-before-bind", "--exit-code", "3"])
        .env(MARKER_VAR, &m)
        .ready(Ready::tcp())
        .ready_timeout(EVENTUALLY);
    let e = spawn_err(&b);
    match &e {
        Error::ExitedBeforeReady {
            program,
            status,
            output,
            ..
        } => {
            assert_eq!(Path::new(program), support::server());
            assert_eq!(status.code(), Some(3), "{status:?}");
            assert!(
                output.stderr.contains("fatal: simulated crash before bind"),
                "{output:?}"
            );
            assert!(output.stdout.contains("starting"), "{output:?}");
        }
        other => panic!("expected ExitedBeforeReady, got {other:?}"),
    }
    assert_says(
        &e,
        &["exited before it was ready", "fatal: simulated crash"],
    );
    assert!(marked_processes(&m).is_empty());
}

#[test]
fn a_server_that_never_gets_ready_is_not_ready_and_is_stopped() {
    let m = marker("never");
    let mut b = ProcessFixture::builder(support::server());
    b.args(["--mode", "never-binds"])
        .env(MARKER_VAR, &m)
        .ready(Ready::tcp())
        .ready_timeout(Duration::from_millis(500));
    let e = spawn_err(&b);
    match &e {
        Error::NotReady {
            output, diagnosis, ..
        } => {
            let (awaited, waited) = (&diagnosis.awaited, diagnosis.waited);
            assert!(awaited.contains("127.0.0.1:"), "{awaited}");
            assert!(waited >= Duration::from_millis(500), "{waited:?}");
            assert!(
                output.stdout.contains("will never bind"),
                "the error carries the output tail: {output:?}"
            );
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    assert_says(&e, &["not ready", "127.0.0.1:"]);
    // The server was stopped before the error was returned.
    assert!(
        marked_processes(&m).is_empty(),
        "the unready server is still running: {:?}",
        marked_processes(&m)
    );
}

#[test]
fn spawn_from_a_command_substitutes_the_port() {
    let mut cmd = Command::new(support::server());
    cmd.args(["--mode", "well-behaved", "--port", "{port}"])
        .env("PF_PORT_IN_ENV", "port={port}");
    let fx = ProcessFixture::spawn(&cmd, Ready::tcp()).expect("spawning from a Command");
    let port = fx.port();
    let body = support::http_get(port, "/").expect("the server answers on fx.port()");
    assert_eq!(body.trim(), format!("ok pid={}", fx.pid()));
    let env = environ_of(fx.pid());
    assert!(
        env.contains(&format!("PF_PORT_IN_ENV=port={port}")),
        "{{port}} replaced in environment values: {env:?}"
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", fx.pid())).expect("cmdline");
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    assert!(
        args.contains(&port.to_string().as_bytes()),
        "{{port}} replaced in arguments"
    );
    assert!(
        support::wait_until(EVENTUALLY, || fx
            .stdout()
            .contains(&format!("listening on 127.0.0.1:{port}"))),
        "stdout: {}",
        fx.stdout()
    );
    let pgid = fx.pgid();
    let report = fx.stop().expect("stop");
    assert!(
        report.exit_status.is_some_and(|s| s.success()),
        "{report:?}"
    );
    support::assert_nothing_left(pgid, &[], port);
}

#[test]
fn env_clear_and_env_remove_shape_the_servers_environment() {
    let fx = ProcessFixture::builder(support::server())
        .args(["--mode", "well-behaved", "--port", "{port}"])
        .env("PF_DROPPED", "1")
        .env_clear()
        .env("PF_ONLY", "{port}")
        .env("PF_REMOVED", "x")
        .env_remove("PF_REMOVED")
        .ready(Ready::tcp())
        .ready_timeout(EVENTUALLY)
        .spawn()
        .expect("spawning with a cleared environment");
    assert_eq!(environ_of(fx.pid()), vec![format!("PF_ONLY={}", fx.port())]);
    drop(fx);

    // Without env_clear the test's environment is inherited, minus what env_remove names.
    let Some((key, _)) = std::env::vars().find(|(k, _)| !k.is_empty()) else {
        return; // an empty environment: nothing to inherit
    };
    let fx = ProcessFixture::builder(support::server())
        .args(["--mode", "well-behaved", "--port", "{port}"])
        .env("PF_ADDED", "yes")
        .env_remove(&key)
        .ready(Ready::tcp())
        .ready_timeout(EVENTUALLY)
        .spawn()
        .expect("spawning with an inherited environment");
    let env = environ_of(fx.pid());
    assert!(env.contains(&"PF_ADDED=yes".to_string()), "{env:?}");
    assert!(
        !env.iter().any(|kv| kv.starts_with(&format!("{key}="))),
        "{key} was removed: {env:?}"
    );
    assert!(
        std::env::vars().filter(|(k, _)| k != &key).count() <= env.len(),
        "the rest is inherited: {env:?}"
    );
}
