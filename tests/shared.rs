//! `spawn_shared`: one server for many tests, in threads of one process and in separate test
//! processes (as nextest runs them), stopped after the last user; starts counted by the server
//! itself (`fixture-server --starts FILE`), leftovers found by an environment marker that the
//! keeper, its zygote, its guardian and the server all inherit.
//!
//! The other processes are this test binary again, running the ignored test [`member`]
//! (`--exact member --ignored`), which is what nextest does for every test.
#![cfg(target_os = "linux")] // support reads /proc

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use process_fixture::{Error, ProcessFixture, Ready, SharedFailure, SharedFixture, SCOPE_ENV};
use support::fixture_server::server;
use support::{marked_processes, marker, wait_until, Proc, MARKER_VAR, SOON};

/// The linger the tests use: long enough for processes started together to overlap.
const LINGER: Duration = Duration::from_millis(300);

/// The shared server of one test: `fixture-server` noting each start in `starts`.
fn shared(starts: &Path, mark: &str) -> process_fixture::Builder {
    let mut b = server("well-behaved", &[], Ready::tcp());
    b.arg("--starts")
        .arg(starts)
        .env(MARKER_VAR, mark)
        .temp_dir()
        .linger(LINGER);
    b
}

fn starts(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().expect("a pid"))
        .collect()
}

fn euid() -> u32 {
    // SAFETY: geteuid takes no argument and cannot fail.
    unsafe { libc::geteuid() }
}

fn gone(pid: u32) -> bool {
    Proc::read(pid).map_or(true, |p| !p.is_live())
}

/// Waits until the keeper, the server and its directory are gone.
fn assert_stopped(keeper: u32, server: u32, dir: Option<&Path>) {
    let deadline = LINGER + SOON;
    assert!(
        wait_until(deadline, || gone(keeper) && gone(server)),
        "keeper {keeper} or server {server} still alive after {deadline:?}"
    );
    if let Some(dir) = dir {
        assert!(
            wait_until(SOON, || !dir.exists()),
            "{} is left",
            dir.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Another test process: this binary running `member`
// ---------------------------------------------------------------------------------------------

/// A test process attached to the shared server: what it printed, and its stdin (closing it
/// ends the process).
struct Member {
    child: Child,
    out: BufReader<ChildStdout>,
    line: String,
}

/// Starts `member` in a new process with `env` (and none of the runner's scope variables).
fn start_member(starts: &Path, mark: &str, hold: bool, env: &[(&str, &str)]) -> Member {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "member",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env_remove("NEXTEST_RUN_ID")
    .env_remove(SCOPE_ENV)
    .env("PF_MEMBER_STARTS", starts)
    .env("PF_MEMBER_MARK", mark)
    .env("PF_MEMBER_HOLD", if hold { "1" } else { "0" })
    .env(MARKER_VAR, mark)
    .envs(env.iter().copied())
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("starting a member");
    let out = BufReader::new(child.stdout.take().unwrap());
    Member {
        child,
        out,
        line: String::new(),
    }
}

impl Member {
    /// Its `attached …` or `error …` line (libtest may have printed `test member ... ` first).
    fn report(&mut self) -> &str {
        while !self.line.starts_with("attached ") && !self.line.starts_with("error ") {
            let mut line = String::new();
            if self.out.read_line(&mut line).expect("reading a member") == 0 {
                let status = self.child.wait().unwrap();
                panic!("the member ended ({status}) without a report");
            }
            let start = line.find("attached ").or_else(|| line.find("error "));
            self.line = start.map_or_else(String::new, |i| line[i..].to_owned());
        }
        &self.line
    }

    fn number(&mut self, name: &str) -> u32 {
        support::holder::number(self.report(), name)
    }

    /// Asks a holding member whether its handle says the server runs.
    fn running(&mut self) -> bool {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "status").unwrap();
        let mut line = String::new();
        while !line.starts_with("running=") {
            line.clear();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "member ended");
        }
        line.trim() == "running=true"
    }

    /// Lets it go: it drops its handle and exits.
    fn finish(mut self) {
        drop(self.child.stdin.take());
        let done = wait_until(SOON, || self.child.try_wait().unwrap().is_some());
        assert!(done, "a member did not finish");
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Not a test of its own: the body of the other test processes (see the module docs).
#[test]
#[ignore = "run by the other tests, as a separate process"]
fn member() {
    let var = |name| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    let starts = PathBuf::from(var("PF_MEMBER_STARTS"));
    let mark = var("PF_MEMBER_MARK");
    let key = std::env::var("PF_MEMBER_KEY").unwrap_or_else(|_| mark.clone());
    let mut b = shared(&starts, &mark);
    if let Ok(args) = std::env::var("PF_MEMBER_ARGS") {
        b.args(args.split(' '));
    }
    let srv = match b.spawn_shared(&key) {
        Ok(srv) => srv,
        Err(e) => {
            println!("error {}", e.to_string().replace('\n', " | "));
            return;
        }
    };
    println!(
        "attached port={} pid={} keeper={} started_here={}",
        srv.port(),
        srv.pid(),
        srv.keeper_pid(),
        srv.started_here()
    );
    support::http_get(srv.port(), "/").expect("the shared server answers");
    if var("PF_MEMBER_HOLD") == "1" {
        for line in std::io::stdin().lines() {
            if line.unwrap() == "status" {
                println!("running={}", srv.is_running());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[test]
fn threads_of_one_process_share_one_server() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("starts");
    let mark = marker("threads");
    let handles: Vec<SharedFixture> = std::thread::scope(|s| {
        let spawned: Vec<_> = (0..6)
            .map(|_| s.spawn(|| shared(&file, &mark).spawn_shared(&mark).unwrap()))
            .collect();
        spawned.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(starts(&file).len(), 1, "started once");
    let first = &handles[0];
    assert!(handles
        .iter()
        .all(|h| h.pid() == first.pid() && h.port() == first.port()));
    assert_eq!(handles.iter().filter(|h| h.started_here()).count(), 1);
    assert!(first.is_running());
    assert!(first.stdout().contains("listening on 127.0.0.1"));
    support::http_get(first.port(), "/").unwrap();
    let (keeper, pid, dir) = (
        first.keeper_pid(),
        first.pid(),
        first.dir().map(PathBuf::from),
    );
    assert!(dir.as_ref().is_some_and(|d| d.exists()));
    drop(handles);
    assert_stopped(keeper, pid, dir.as_deref());
    assert!(marked_processes(&mark).is_empty());
}

/// `n` test processes of one run, started at once and attached: their server's pid (checked
/// to be one for all) and the members.
fn one_run(n: usize, file: &Path, mark: &str) -> (u32, Vec<Member>) {
    let run = [("NEXTEST_RUN_ID", mark)];
    let mut members: Vec<Member> = (0..n)
        .map(|_| start_member(file, mark, true, &run))
        .collect();
    let pids: Vec<u32> = members.iter_mut().map(|m| m.number("pid")).collect();
    assert!(pids.iter().all(|&p| p == pids[0]), "one server: {pids:?}");
    (pids[0], members)
}

#[test]
fn test_processes_of_one_run_share_one_server_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("starts");
    let mark = marker("processes");
    let (pid, mut members) = one_run(4, &file, &mark);
    let creators = members
        .iter_mut()
        .filter_map(|m| m.report().contains("started_here=true").then_some(()))
        .count();
    assert_eq!(creators, 1);
    assert_eq!(starts(&file), [pid]);
    let keeper = members[0].number("keeper");
    for m in members {
        m.finish();
    }
    assert_stopped(keeper, pid, None);
    assert!(
        wait_until(SOON, || marked_processes(&mark).is_empty()),
        "left: {:?}",
        marked_processes(&mark)
    );
}

#[test]
fn eight_processes_racing_start_exactly_one_server() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("starts");
    let mark = marker("race");
    let (_, members) = one_run(8, &file, &mark);
    assert_eq!(starts(&file).len(), 1);
    for m in members {
        m.finish();
    }
}

#[test]
fn the_scope_without_nextest_is_the_parent_process_and_two_runs_never_share() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("starts");
    let mark = marker("scope");
    // No run id: both are children of this process, as the binaries of one `cargo test` are
    // of cargo.
    let mut a = start_member(&file, &mark, true, &[]);
    let mut b = start_member(&file, &mark, true, &[]);
    assert_eq!(a.number("pid"), b.number("pid"));
    // Two nextest runs at once: two servers.
    let mut c = start_member(&file, &mark, true, &[("NEXTEST_RUN_ID", "run-one")]);
    let mut d = start_member(&file, &mark, true, &[("NEXTEST_RUN_ID", "run-two")]);
    let (pc, pd) = (c.number("pid"), d.number("pid"));
    assert_ne!(pc, pd);
    assert_ne!(pc, a.number("pid"));
    // An explicit scope wins over the run id.
    let mut e = start_member(
        &file,
        &mark,
        true,
        &[("NEXTEST_RUN_ID", "x"), (SCOPE_ENV, "mine")],
    );
    let mut f = start_member(
        &file,
        &mark,
        true,
        &[("NEXTEST_RUN_ID", "y"), (SCOPE_ENV, "mine")],
    );
    assert_eq!(e.number("pid"), f.number("pid"));
    assert_eq!(starts(&file).len(), 4);
    for m in [a, b, c, d, e, f] {
        m.finish();
    }
}

#[test]
fn the_creator_killed_leaves_the_server_to_the_others_and_all_killed_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("starts");
    let mark = marker("killed");
    let run = [("NEXTEST_RUN_ID", mark.as_str())];
    let mut creator = start_member(&file, &mark, true, &run);
    assert!(creator.report().contains("started_here=true"));
    let mut others: Vec<Member> = (0..2)
        .map(|_| start_member(&file, &mark, true, &run))
        .collect();
    let pid = others[0].number("pid");
    let keeper = others[0].number("keeper");
    creator.kill();
    // Longer than the linger: the others' leases keep it.
    assert!(
        !wait_until(LINGER * 2, || gone(pid)),
        "stopped while in use"
    );
    assert!(others[0].running());
    support::http_get(others[0].number("port") as u16, "/").unwrap();
    for m in others {
        m.kill();
    }
    assert_stopped(keeper, pid, None);
    assert!(wait_until(SOON, || marked_processes(&mark).is_empty()));
    assert_eq!(starts(&file).len(), 1);
}

#[test]
fn a_configuration_that_differs_is_refused_naming_the_key_and_the_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("starts");
    let mark = marker("mismatch");
    let srv = shared(&file, &mark).spawn_shared(&mark).unwrap();
    let mut other = shared(&file, &mark);
    other.env("EXTRA", "1").grace_period(Duration::from_secs(1));
    let e = other.spawn_shared(&mark).unwrap_err();
    let Error::Shared {
        key,
        failure: SharedFailure::Mismatch { fields, detail },
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!(key, &mark);
    assert_eq!(fields, &["env", "grace"]);
    assert!(detail.contains("grace: running 5s, asked 1s"), "{detail}");
    assert!(e.to_string().contains(&mark), "{e}");
    // How one waits is not the server's configuration.
    let mut patient = shared(&file, &mark);
    patient.ready_timeout(Duration::from_secs(99));
    assert_eq!(patient.spawn_shared(&mark).unwrap().pid(), srv.pid());
    assert_eq!(starts(&file).len(), 1);
}

#[test]
fn a_crashed_server_is_reported_and_the_next_request_starts_a_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("starts");
    let mark = marker("crash");
    let srv = shared(&file, &mark).spawn_shared(&mark).unwrap();
    // SAFETY: kill takes no pointer; the pid is the live server's (its keeper keeps it unreaped).
    assert_eq!(unsafe { libc::kill(srv.pid() as i32, libc::SIGKILL) }, 0);
    assert!(
        wait_until(SOON, || !srv.is_running()),
        "the crash is reported"
    );
    let again = shared(&file, &mark).spawn_shared(&mark).unwrap();
    assert_ne!(again.pid(), srv.pid());
    assert_ne!(again.keeper_pid(), srv.keeper_pid());
    assert!(again.started_here() && again.is_running());
    assert_eq!(starts(&file).len(), 2);
    let (old_keeper, old_pid) = (srv.keeper_pid(), srv.pid());
    drop(srv);
    assert_stopped(old_keeper, old_pid, None);
}

#[test]
fn a_failed_start_reaches_every_user_with_the_same_diagnosis() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("starts");
    let mark = marker("failed");
    let mut b = server("crash-before-bind", &[], Ready::tcp());
    b.arg("--starts").arg(&file).linger(Duration::from_secs(2));
    let errors: Vec<String> = std::thread::scope(|s| {
        let spawned: Vec<_> = (0..4)
            .map(|_| s.spawn(|| b.spawn_shared(&mark).unwrap_err()))
            .collect();
        spawned
            .into_iter()
            .map(|t| match t.join().unwrap() {
                Error::Shared {
                    failure: SharedFailure::StartFailed { message },
                    ..
                } => message,
                e => panic!("{e}"),
            })
            .collect()
    });
    assert!(errors.iter().all(|e| e == &errors[0]), "{errors:#?}");
    assert!(
        errors[0].contains("simulated crash before bind"),
        "{}",
        errors[0]
    );
    assert_eq!(starts(&file).len(), 1, "one attempt for all");
}

#[test]
fn a_request_while_the_server_stops_gets_a_new_server() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("starts");
    let mark = marker("stopping");
    // It blocks SIGTERM, so its stop takes the whole grace.
    let mut b = server("block-term", &[], Ready::tcp());
    b.arg("--starts")
        .arg(&file)
        .grace_period(Duration::from_secs(2))
        .linger(Duration::ZERO);
    let old = b.spawn_shared(&mark).unwrap();
    let (old_pid, socket) = (old.pid(), old.socket_path().to_owned());
    drop(old);
    // No linger: the keeper retires (removes its socket) and stops the server, which takes the
    // grace. A request now must not get the dying server.
    assert!(wait_until(SOON, || !socket.exists()), "retired");
    let new = b.spawn_shared(&mark).unwrap();
    assert!(!gone(old_pid), "the old server is still in its grace");
    assert_ne!(new.pid(), old_pid);
    assert!(new.started_here() && new.is_running());
    assert_eq!(starts(&file).len(), 2);
}

#[test]
fn a_custom_readiness_check_cannot_be_shared() {
    let mut b = ProcessFixture::builder("sleep");
    b.arg("60")
        .ready(Ready::custom(|_| Ok::<_, std::io::Error>(true)));
    let e = b.spawn_shared("custom").unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Shared {
                failure: SharedFailure::NotShareable { .. },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_rendezvous_directory_that_is_not_private_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let uid = euid();
    let dir = base.path().join(format!("pf-{uid}"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("starts");
    let mark = marker("squat");
    let base = base.path().to_str().unwrap();
    let mut m = start_member(&file, &mark, false, &[("TMPDIR", base)]);
    let line = m.report().to_owned();
    assert!(line.contains("rendezvous cannot be used"), "{line}");
    assert!(line.contains("open to other users (mode 777)"), "{line}");
    m.finish();
    assert!(starts(&file).is_empty());
}

#[test]
fn another_user_can_neither_connect_nor_squat() {
    if euid() != 0 {
        println!("skipped: needs root to act as a second user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("starts");
    let mark = marker("other-user");
    let srv = shared(&file, &mark).spawn_shared(&mark).unwrap();
    let socket = srv.socket_path().to_owned();
    // nobody tries our socket: the directory (0700, ours) stops it before the socket does.
    let out = Command::new(support::bin("unix-connect"))
        .arg(&socket)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("unix-connect as nobody");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.trim(), libc::EACCES.to_string(), "{said}");
    // A directory of ours that another user made (chown'd to nobody) is refused, not used.
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("pf-0");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut m = start_member(
        &file,
        &mark,
        false,
        &[("TMPDIR", base.path().to_str().unwrap())],
    );
    let line = m.report().to_owned();
    assert!(line.contains("belongs to uid 65534"), "{line}");
    m.finish();
}

// ---------------------------------------------------------------------------------------------
// A group of tests that share one server: under nextest, one process each
// ---------------------------------------------------------------------------------------------

/// One test of the group: attaches with the default linger, and checks that the server was
/// started once (it notes its starts in its own directory, which all the group's processes
/// see). With `PF_GROUP_REPORT` set, notes `<server pid> <keeper pid> <dir>` there: `.ci/run`
/// runs the group under nextest and checks that the four processes got one server, and that
/// nothing of it is alive or on disk the linger + 100 ms after nextest returns.
fn group_member() {
    let srv = ProcessFixture::builder(support::server())
        .args([
            "--mode",
            "well-behaved",
            "--port",
            "{port}",
            "--starts",
            "{dir}/starts",
        ])
        .spawn_shared("nextest-group")
        .expect("the group's server");
    let dir = srv.dir().expect("a directory").to_owned();
    assert_eq!(starts(&dir.join("starts")), [srv.pid()], "started once");
    support::http_get(srv.port(), "/").expect("it serves");
    if let Some(report) = std::env::var_os("PF_GROUP_REPORT") {
        let line = format!("{} {} {}\n", srv.pid(), srv.keeper_pid(), dir.display());
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(report)
            .unwrap();
        f.write_all(line.as_bytes()).unwrap();
    }
}

#[test]
fn nextest_group_1() {
    group_member();
}

#[test]
fn nextest_group_2() {
    group_member();
}

#[test]
fn nextest_group_3() {
    group_member();
}

#[test]
fn nextest_group_4() {
    group_member();
}
