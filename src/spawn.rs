//! From a configuration to a ready [`ProcessFixture`], top to bottom: read the configuration
//! once into what the spawn needs (placeholders' values, ports, directory, the guardian's plan),
//! launch the guardian and the output monitor, wait for the spawn report and for readiness; on
//! any failure, tear down what was started and say why.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::deadline::{self, Deadline};
use crate::diagnose;
use crate::dir;
use crate::error::{Error, ExecStage};
use crate::fixture::{ProcessFixture, Restart};
use crate::guardian::{self, Origin, Plan, Report, Stage};
use crate::output::{LineWatch, Monitor, Sources};
use crate::placeholders::Values;
use crate::plan::{self, User};
use crate::port::{self, Refusal, Reservation};
use crate::ready::{self, Context, FileBefore};
use crate::report::Containment;
use crate::running::Running;
use crate::sys;
use crate::teardown;
use crate::text;

/// How long the guardian may take to report the spawn, beyond the readiness timeout.
const SPAWN_REPORT_SLACK: Duration = Duration::from_secs(5);

/// What lasts for the fixture's whole life, across restarts: its ports, its directory and the
/// placeholders' values; and what is read once per fixture: its line watches and its user.
struct Lasting {
    program: String,
    watches: Vec<LineWatch>,
    user: Option<User>,
    reservation: Reservation,
    named: Vec<(String, Reservation)>,
    dir: Option<tempfile::TempDir>,
    values: Values,
    /// Socket activation: the listening sockets, the fixture's port first, then the named
    /// ones in the order of their names. Kept open for the fixture's whole life.
    listeners: Vec<OwnedFd>,
}

/// What one start of the server needs, made from the configuration and the lasting values.
struct Start {
    command: String,
    watches: Vec<LineWatch>,
    notify: Option<OwnedFd>,
    plan: Plan,
    /// The server's working directory, for relative probe paths.
    cwd: Option<PathBuf>,
    files_before: Vec<FileBefore>,
}

/// Spawns and waits for readiness; on failure, tears everything down before returning.
pub(crate) fn spawn(cfg: &Config) -> Result<ProcessFixture, Error> {
    sweep_once();
    let lasting = prepare(cfg)?;
    start(Arc::new(cfg.clone()), lasting)
}

/// One start: plan it, launch the guardian, wait for its report and for readiness. The fixture
/// it makes can start again from the same configuration (`restart`).
fn start(cfg: Arc<Config>, mut lasting: Lasting) -> Result<ProcessFixture, Error> {
    let mut planned = plan_start(&cfg, &mut lasting)?;
    let files_before = std::mem::take(&mut planned.files_before);
    let mut run = launch(&cfg, lasting, planned)?;
    let events = wait_spawned(&mut run, cfg.ready_timeout)?;
    log::debug!(
        "process-fixture: {} started: leader pid {}, guardian pid {} ({:?}), listeners reported by the guardian: {events}",
        run.program,
        run.pid,
        run.guardian_pid,
        run.origin
    );
    let again = Arc::clone(&cfg);
    let restart: Restart =
        Arc::new(move |old| start(Arc::clone(&again), Lasting::of(&again, old)?));
    wait_ready(
        &cfg,
        ProcessFixture::new(run, restart),
        &files_before,
        events,
    )
}

impl Lasting {
    /// What a stopped fixture leaves for its restart: the same ports, still reserved, and the
    /// same directory with its files as the old server left them. The watches and the user are
    /// read from the configuration again (a running fixture does not keep them).
    fn of(cfg: &Config, old: Running) -> Result<Lasting, Error> {
        Ok(Lasting {
            watches: cfg.ready.line_watches(&old.program)?,
            user: plan::lookup_user(cfg)?,
            program: old.program,
            reservation: old.reservation,
            named: old.named,
            dir: old.dir,
            values: old.values,
            listeners: old.listeners,
        })
    }
}

/// Reads the configuration for the fixture's life: reserves the ports, makes and fills the
/// directory.
fn prepare(cfg: &Config) -> Result<Lasting, Error> {
    let program = cfg.program_name();
    let watches = cfg.ready.line_watches(&program)?; // a bad pattern fails before anything is made
    let user = plan::lookup_user(cfg)?;
    let mut reservation = reserve_port(cfg.port, &program)?;
    let mut named = cfg
        .port_names()
        .into_iter()
        .map(|name| Ok((name, reserve_port(None, &program)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let dir = match cfg.wants_dir() {
        true => Some(dir::make(&program, cfg.dir_in.as_deref())?),
        false => None,
    };
    let (listeners, fds) = match cfg.socket_activation {
        true => listen_on(cfg, &program, &mut reservation, &mut named)?,
        false => Default::default(),
    };
    let values = Values {
        port: reservation.port(),
        named: named.iter().map(|(n, r)| (n.clone(), r.port())).collect(),
        dir: dir.as_ref().map(|d| d.path().to_owned()),
        notify: None,
        fds,
    };
    if let Some(dir) = &dir {
        dir::copy_trees(cfg, dir.path())?;
        dir::write_files(cfg, dir.path(), &values)?;
        dir::give(dir.path(), plan::owner(cfg, user.as_ref()), &program)?;
    }
    Ok(Lasting {
        program,
        watches,
        user,
        reservation,
        named,
        dir,
        values,
        listeners,
    })
}

/// Socket activation: listens on 127.0.0.1 on the fixture's port and each named one, before
/// the server exists, so no other process can take them. A picked port that a process outside
/// our locks bound since its check is picked again. Returns the sockets, the fixture's port
/// first, and the fd each will be in the server (3, 4, …).
fn listen_on(
    cfg: &Config,
    program: &str,
    reservation: &mut Reservation,
    named: &mut [(String, Reservation)],
) -> Result<(Vec<OwnedFd>, BTreeMap<String, i32>), Error> {
    if 1 + named.len() > guardian::MAX_LISTENERS {
        return Err(Error::Unsupported {
            program: program.to_owned(),
            what: "socket activation of more than 8 ports",
        });
    }
    let fixed = cfg.port.filter(|&p| p != 0).is_some();
    let mut listeners = vec![listen(program, reservation, fixed)?];
    let mut fds = BTreeMap::from([(String::new(), 3)]);
    for (i, (name, r)) in named.iter_mut().enumerate() {
        listeners.push(listen(program, r, false)?);
        fds.insert(name.clone(), 4 + i as i32);
    }
    Ok((listeners, fds))
}

/// A listening socket on the reserved port; a picked port already bound is picked again.
fn listen(program: &str, reservation: &mut Reservation, fixed: bool) -> Result<OwnedFd, Error> {
    const ATTEMPTS: usize = 5;
    for attempt in 1.. {
        let port = reservation.port();
        match std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)) {
            Ok(listener) => return Ok(OwnedFd::from(listener)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && !fixed && attempt < ATTEMPTS => {
                *reservation = reserve_port(None, program)?;
            }
            Err(source) => {
                return Err(Error::PortUnavailable {
                    program: program.to_owned(),
                    port,
                    source,
                })
            }
        }
    }
    unreachable!("the loop returns by its last attempt")
}

/// Plans one start of the server with every placeholder filled in: its line watches, a fresh
/// sd_notify socket, the guardian's plan, and the files a file probe must not take for ready.
fn plan_start(cfg: &Config, lasting: &mut Lasting) -> Result<Start, Error> {
    let program = &lasting.program;
    let notify = match cfg.ready.wants_notify() {
        true => Some(notify_socket().map_err(Error::io(program, "creating NOTIFY_SOCKET"))?),
        false => None,
    };
    let values = &mut lasting.values;
    values.notify = notify.as_ref().map(|(_, name)| name.clone());
    let plan = plan::plan(cfg, values, lasting.user.as_ref())?;
    let argv = std::iter::once(cfg.program.as_bytes().to_vec())
        .chain(cfg.args.iter().map(|a| values.substitute(a.as_bytes())));
    let command = text::shorten(text::shell_words(argv), COMMAND_MAX);
    let cwd = server_cwd(cfg, values);
    let files_before = cfg
        .ready
        .file_paths()
        .map(|p| FileBefore::look(ready::resolve(values, cwd.as_deref(), p)))
        .collect();
    Ok(Start {
        command,
        watches: lasting.watches.clone(),
        notify: notify.map(|(fd, _)| fd),
        plan,
        cwd,
        files_before,
    })
}

/// The longest command line an error shows.
const COMMAND_MAX: usize = 300;

/// The server's working directory: its own, or the test process's.
fn server_cwd(cfg: &Config, values: &Values) -> Option<PathBuf> {
    plan::working_dir(cfg, values).or_else(|| std::env::current_dir().ok())
}

/// Starts the guardian (which starts the server) and the monitor that reads its reports and the
/// server's output.
fn launch(cfg: &Config, lasting: Lasting, p: Start) -> Result<Running, Error> {
    let io = |context| Error::io(&lasting.program, context);
    let (out_r, mut out_w) = sys::pipe().map_err(io("creating a pipe"))?;
    let (err_r, mut err_w) = sys::pipe().map_err(io("creating a pipe"))?;
    if cfg.inherit_output {
        // The server gets our own stdout and stderr; the pipes' write ends are dropped, so the
        // monitor reads an empty output at once (there is nothing to drain).
        out_w = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(io("duplicating stdout"))?;
        err_w = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(io("duplicating stderr"))?;
    }
    let listeners: Vec<RawFd> = lasting.listeners.iter().map(AsRawFd::as_raw_fd).collect();
    let launched =
        guardian::launch(&p.plan, out_w, err_w, &listeners).map_err(io("starting the guardian"))?;
    let writer = launched
        .ctl
        .try_clone()
        .map_err(io("duplicating a socket"))?;
    let guardian_exit = match launched.origin {
        // Our child, unreaped: a pidfd opened now names it for sure.
        // SAFETY: `pidfd_open` returned a new fd that nothing else owns.
        Origin::Forked(pid) => sys::pidfd_open(pid).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
        Origin::Zygote => None,
    };
    let sources = Sources {
        stdout: out_r,
        stderr: err_r,
        ctl: launched.ctl,
        notify: p.notify,
        guardian_exit,
    };
    let monitor = match Monitor::start(sources, p.watches, cfg.echo()) {
        Ok(m) => m,
        Err(e) => {
            teardown::send_stop(&writer, false, None); // the guardian stops what it started
            return Err(io("starting the output monitor")(e));
        }
    };
    Ok(Running {
        cwd: p.cwd,
        program: lasting.program,
        command: p.command,
        pid: 0,
        guardian_pid: 0,
        origin: launched.origin,
        containment: Containment::ProcessGroup, // the guardian's first report says
        cgroup: None,
        ctl: Some(writer),
        monitor,
        grace: cfg.grace,
        reservation: lasting.reservation,
        named: lasting.named,
        values: lasting.values,
        dir: lasting.dir,
        listeners: lasting.listeners,
        allow_early_exit: cfg.allow_early_exit,
        cursor: Arc::new(Mutex::new((0, 0))),
        pause: Mutex::default(),
    })
}

/// Waits for the guardian's first report: the leader's pid, or why it could not start.
/// Returns whether the guardian reports listeners (`listen()` events, or its port watch).
fn wait_spawned(run: &mut Running, timeout: Duration) -> Result<bool, Error> {
    let deadline = Deadline::after(deadline::add(timeout, SPAWN_REPORT_SLACK));
    let first = run.monitor.wait_for(deadline, |s| {
        s.spawn
            .map(Some)
            .or_else(|| (s.guardian_closed || s.guardian_died.is_some()).then_some(None))
    });
    match first.flatten() {
        Some(Report::Spawned {
            pid,
            guardian,
            listen_events,
            port_watch,
            subreaper,
            cgroup,
            ..
        }) => {
            run.pid = pid;
            run.guardian_pid = guardian;
            run.cgroup = cgroup.map(|start| crate::cgroup::Named { guardian, start });
            run.containment = match (cgroup, subreaper) {
                (Some(_), _) => Containment::Cgroup,
                (None, true) => Containment::Subreaper,
                (None, false) => Containment::ProcessGroup,
            };
            Ok(listen_events || port_watch)
        }
        Some(Report::SpawnFailed { stage, errno, .. }) => {
            let _ = teardown::finish(run);
            Err(Error::Exec {
                program: run.program.clone(),
                stage: exec_stage(stage),
                source: io::Error::from_raw_os_error(errno),
            })
        }
        _ => {
            let _ = teardown::finish(run);
            Err(teardown::guardian_died(run, None))
        }
    }
}

/// Waits for readiness; a failure is diagnosed while the processes still run, then they are
/// stopped.
fn wait_ready(
    cfg: &Config,
    fixture: ProcessFixture,
    files_before: &[FileBefore],
    events: bool,
) -> Result<ProcessFixture, Error> {
    let run = fixture.running();
    let cx = Context {
        program: &run.program,
        monitor: &run.monitor,
        tree: run.tree(),
        reserved_port: run.reservation.port(),
        values: &run.values,
        cwd: run.cwd.as_deref(),
        files_before,
        timeout: cfg.ready_timeout,
        fixture: &fixture,
    };
    let (failure, seen) = match ready::wait(&cx, &cfg.ready, events) {
        Ok(_) => return Ok(fixture),
        Err(failed) => failed,
    };
    let diagnosis = diagnose::diagnose(&cx, cfg, &run.command, seen);
    Err(diagnose::fail(fixture.into_running(), failure, diagnosis))
}

/// The stage a `SpawnFailed` report names, as the public error says it.
fn exec_stage(stage: Stage) -> ExecStage {
    match stage {
        Stage::Fork => ExecStage::Fork,
        Stage::Chdir => ExecStage::WorkingDir,
        Stage::Exec => ExecStage::Exec,
        Stage::Credentials => ExecStage::Credentials,
        Stage::Setup => ExecStage::Setup,
        Stage::Cgroup => ExecStage::Cgroup,
    }
}

/// Kept directories of earlier test processes are swept by the first spawn of each process.
fn sweep_once() {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(dir::sweep_kept);
}

/// The fixture's port: fixed (refused if in use) or picked.
fn reserve_port(fixed: Option<u16>, program: &str) -> Result<Reservation, Error> {
    let result = match fixed {
        Some(port) if port != 0 => port::reserve(port).map_err(|r| (port, r)),
        _ => port::pick().map_err(|r| (0, r)),
    };
    result.map_err(|(port, refusal)| match refusal {
        Refusal::InUse(holder) => Error::PortInUse {
            program: program.to_owned(),
            port,
            holder,
        },
        Refusal::Unavailable(source) => Error::PortUnavailable {
            program: program.to_owned(),
            port,
            source,
        },
    })
}

/// A private datagram socket for sd_notify, and the `NOTIFY_SOCKET` value naming it: an abstract
/// address on Linux (no file, no permissions: a server running as another user can send), a
/// path in the temporary directory elsewhere.
fn notify_socket() -> io::Result<(OwnedFd, std::ffi::OsString)> {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "process-fixture/{}/{}/{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::collections::hash_map::RandomState::new().hash_one(Instant::now())
    );
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let sock = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
        Ok((sock.into(), format!("@{name}").into()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let path = std::env::temp_dir().join(name.replace('/', "-"));
        let sock = std::os::unix::net::UnixDatagram::bind(&path)?;
        Ok((sock.into(), path.into_os_string()))
    }
}
