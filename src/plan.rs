//! From a configuration and the placeholders' values to the guardian's [`Plan`]: the program
//! found, its arguments and environment filled in and checked, its user looked up.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::Error;
use crate::guardian::{ListenEvents, Plan};
use crate::placeholders::Values;
use crate::report::Containment;
use crate::sys;

/// A user the server runs as ([`Builder::user`]).
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

/// Checks everything and prepares what the guardian needs, with placeholders filled in.
pub(crate) fn plan(cfg: &Config, values: &Values, user: Option<&User>) -> Result<Plan, Error> {
    let program = cfg.program_name();
    let signal = cfg.stop_signal.as_raw();
    if !(1..=sys::MAX_SIGNAL).contains(&signal) {
        return Err(Error::InvalidSignal { program, signal });
    }
    if cfg.containment == Some(Containment::Subreaper) && !cfg!(target_os = "linux") {
        return Err(Error::Unsupported {
            program,
            what: "Containment::Subreaper (Linux only)",
        });
    }
    let env = environment(cfg, values, user);
    // NUL bytes first: they make any file lookup fail for the wrong reason.
    let mut argv = vec![c_string(cfg, cfg.program.as_bytes(), || {
        "the program name".into()
    })?];
    let path = resolve_program(cfg, &env)?;
    for (i, arg) in cfg.args.iter().enumerate() {
        let arg = values.substitute(arg.as_bytes());
        argv.push(c_string(cfg, &arg, || format!("argument {}", i + 1))?);
    }
    let envp = env
        .iter()
        .map(|(k, v)| {
            let what = || format!("environment variable {}", k.to_string_lossy());
            c_string(cfg, k.as_bytes(), what)?;
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            c_string(cfg, &kv, what)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cwd = match working_dir(cfg, values) {
        Some(dir) => Some(check_dir(cfg, &dir)?),
        None => None,
    };
    let path = c_string(cfg, path.as_os_str().as_bytes(), || {
        "the program path".into()
    })?;
    let listen_pid_slot = (!values.fds.is_empty())
        .then(|| envp.iter().position(|kv| kv.as_bytes() == b"LISTEN_PID="))
        .flatten();
    let mut plan = Plan::new(path, argv, envp, signal, cfg.grace);
    plan.listen_pid_slot = listen_pid_slot;
    plan.cwd = cwd;
    plan.subreaper = cfg.containment != Some(Containment::ProcessGroup);
    plan.cgroup = cgroup_parent(cfg)?;
    plan.cgroup_required = cfg.containment == Some(Containment::Cgroup);
    // Joining a v1 cgroup moves the process (no CLONE_INTO_CGROUP there), which waits out an
    // RCU grace period after a quiet moment: a hybrid system's memory figure is had for
    // `Containment::Cgroup` asked for, not by default.
    if plan.cgroup.is_some() && plan.cgroup_required {
        plan.memory_cgroup = crate::cgroup::memory_parent()
            .and_then(|dir| CString::new(dir.as_os_str().as_bytes()).ok());
    }
    plan.pidfd = !crate::force::forced("no-pidfd");
    plan.listen = listen_choice(cfg);
    plan.watch_port = port_watch(cfg, values.port, &plan.listen);
    plan.uid = user.map(|u| u.uid).or(cfg.uid);
    plan.gid = user.map(|u| u.gid).or(cfg.gid);
    plan.groups = user.map(|u| u.groups.clone());
    // The guardian removes it once the server is gone, whatever becomes of the test process.
    plan.dir = match &values.dir {
        Some(dir) => Some(c_string(cfg, dir.as_os_str().as_bytes(), || {
            "the fixture's directory".into()
        })?),
        None => None,
    };
    Ok(plan)
}

/// Where the guardian makes the server's cgroup: with the default containment wherever one
/// can be made (else the subreaper contains it), with `Containment::Cgroup` there or nowhere.
fn cgroup_parent(cfg: &Config) -> Result<Option<CString>, Error> {
    let required = match cfg.containment {
        None => false,
        Some(Containment::Cgroup) => true,
        Some(_) => return Ok(None),
    };
    match crate::cgroup::parent() {
        Ok(dir) => Ok(Some(c_string(cfg, dir.as_os_str().as_bytes(), || {
            "the cgroup directory".into()
        })?)),
        Err(reason) if required => Err(Error::ContainmentUnavailable {
            program: cfg.program_name(),
            containment: Containment::Cgroup,
            reason: reason.to_owned(),
        }),
        Err(_) => Ok(None),
    }
}

/// The server's working directory, placeholders filled in.
pub(crate) fn working_dir(cfg: &Config, values: &Values) -> Option<PathBuf> {
    let dir = cfg.current_dir.as_ref()?;
    let bytes = values.substitute(dir.as_os_str().as_bytes());
    Some(PathBuf::from(OsString::from_vec(bytes)))
}

/// Looks up the user given to [`Builder::user`], if any.
pub(crate) fn lookup_user(cfg: &Config) -> Result<Option<User>, Error> {
    let Some(name) = &cfg.user else {
        return Ok(None);
    };
    let fail = |reason: String| Error::User {
        program: cfg.program_name(),
        user: name.clone(),
        reason,
    };
    let found = sys::lookup_user(name).map_err(|e| fail(e.to_string()))?;
    let (uid, gid, home) = found.ok_or_else(|| fail("no such user".into()))?;
    let groups = sys::group_list(name, gid).map_err(|e| fail(e.to_string()))?;
    Ok(Some(User {
        name: name.clone(),
        uid,
        gid,
        groups,
        home,
    }))
}

/// The uid and gid the server runs as, when set (to give its directory to).
pub(crate) fn owner(cfg: &Config, user: Option<&User>) -> Option<(u32, u32)> {
    match user {
        Some(u) => Some((u.uid, u.gid)),
        None => cfg.uid.map(|uid| (uid, cfg.gid.unwrap_or(uid))),
    }
}

/// Whether the guardian watches `listen()` calls, and at what price (see `listen_events`).
fn listen_choice(cfg: &Config) -> ListenEvents {
    // With socket activation the server never calls listen(): its sockets listen already.
    if crate::force::forced("no-seccomp")
        || cfg.listen_events == Some(false)
        || cfg.socket_activation
        || !sys::LISTEN_EVENTS
    {
        return ListenEvents::Off;
    }
    match (sys::privileged(), cfg.listen_events) {
        (true, _) => ListenEvents::On {
            no_new_privs: false,
        },
        (false, Some(true)) => ListenEvents::On { no_new_privs: true },
        (false, _) => ListenEvents::Off,
    }
}

/// The port the guardian looks for where it hears of no `listen()`: the fixture's own, when
/// that is all readiness waits for (the test side then only looks now and then). 0: none. Not
/// with the process group alone: a daemon of the server would not be the guardian's
/// descendant, and the guardian finds the listener's holder among its descendants.
fn port_watch(cfg: &Config, port: u16, listen: &ListenEvents) -> u16 {
    let watch = matches!(listen, ListenEvents::Off)
        && port != 0
        && cfg.containment != Some(Containment::ProcessGroup)
        && !cfg.socket_activation
        && !crate::force::forced("no-port-watch")
        && cfg.ready.waits_only_for_local(port);
    if watch {
        port
    } else {
        0
    }
}

/// The server's environment: inherited unless cleared, with our changes, placeholders filled
/// in; and, for a user, `HOME`, `USER` and `LOGNAME` unless set.
fn environment(cfg: &Config, values: &Values, user: Option<&User>) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = if cfg.env_clear {
        BTreeMap::new()
    } else {
        std::env::vars_os().collect()
    };
    if let Some(user) = user {
        for (key, value) in [
            ("HOME", user.home.as_os_str()),
            ("USER", OsStr::new(&user.name)),
            ("LOGNAME", OsStr::new(&user.name)),
        ] {
            if !cfg.env.contains_key(OsStr::new(key)) {
                env.insert(key.into(), value.to_owned());
            }
        }
    }
    for (key, value) in &cfg.env {
        match value {
            Some(v) => env.insert(
                key.clone(),
                OsString::from_vec(values.substitute(v.as_bytes())),
            ),
            None => env.remove(key),
        };
    }
    if let Some(notify) = &values.notify {
        env.insert("NOTIFY_SOCKET".into(), notify.clone());
    }
    if !values.fds.is_empty() {
        // The systemd protocol (sd_listen_fds(3)): LISTEN_PID is the server's own pid, written
        // into this entry in the server's child between fork and exec.
        let mut by_fd: Vec<(&i32, &String)> = values.fds.iter().map(|(n, fd)| (fd, n)).collect();
        by_fd.sort();
        let names: Vec<&str> = by_fd
            .iter()
            .map(|(_, n)| if n.is_empty() { "port" } else { n.as_str() })
            .collect();
        // A variable the test set or removed itself stays as it said: a server that takes its
        // socket from an argument (`--bind fd://{fd}`) and would pick up LISTEN_FDS too.
        for (key, value) in [
            ("LISTEN_FDS", OsString::from(by_fd.len().to_string())),
            ("LISTEN_FDNAMES", OsString::from(names.join(":"))),
            (LISTEN_PID, OsString::new()),
        ] {
            if !cfg.env.contains_key(OsStr::new(key)) {
                env.insert(key.into(), value);
            }
        }
    }
    env
}

/// The variable the server's child fills in with its own pid.
const LISTEN_PID: &str = "LISTEN_PID";

/// `bytes` as a C string, or [`Error::NulByte`] naming `what`.
fn c_string(cfg: &Config, bytes: &[u8], what: impl FnOnce() -> String) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::NulByte {
        program: cfg.program_name(),
        what: what(),
    })
}

fn check_dir(cfg: &Config, dir: &Path) -> Result<CString, Error> {
    let c_dir = c_string(cfg, dir.as_os_str().as_bytes(), || {
        "the working directory".into()
    })?;
    let bad = |source| Error::CurrentDir {
        program: cfg.program_name(),
        path: dir.into(),
        source,
    };
    let meta = std::fs::metadata(dir).map_err(bad)?;
    if !meta.is_dir() {
        let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a directory");
        return Err(bad(source));
    }
    Ok(c_dir)
}

/// Finds the program as `execvp` would, but before the fork, so that "not found" is a clear
/// error and the guardian need not search. A name with a `/` is a path (relative to the test
/// process's working directory); otherwise `PATH` (the server's, if set) is searched.
fn resolve_program(cfg: &Config, env: &BTreeMap<OsString, OsString>) -> Result<PathBuf, Error> {
    let not_found = || Error::ProgramNotFound {
        program: cfg.program_name(),
    };
    if cfg.program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(&cfg.program);
        let path = if path.is_relative() {
            std::env::current_dir()
                .map_err(Error::io(
                    &cfg.program_name(),
                    "reading the working directory",
                ))?
                .join(path)
        } else {
            path
        };
        return if path.is_file() {
            Ok(path)
        } else {
            Err(not_found())
        };
    }
    if cfg.program.is_empty() {
        return Err(not_found());
    }
    let search = env
        .get(OsStr::new("PATH"))
        .cloned()
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let candidates: Vec<PathBuf> = std::env::split_paths(&search)
        .map(|dir| dir.join(&cfg.program))
        .filter(|p| p.is_file())
        .collect();
    let executable = |p: &&PathBuf| {
        p.metadata()
            .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    };
    // A file that is found but not executable is exec'd anyway, to report EACCES as execvp does.
    candidates
        .iter()
        .find(executable)
        .or(candidates.first())
        .cloned()
        .ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Builder;

    #[test]
    fn nul_bytes_are_named() {
        let mut b = Builder::new("true");
        b.arg("ok").arg("bad\0arg");
        match plan(b.config(), &Values::example(), None) {
            Err(Error::NulByte { what, .. }) => assert_eq!(what, "argument 2"),
            other => panic!("expected NulByte, got {:?}", other.err()),
        }
        let mut b = Builder::new("true");
        b.env("FOO", "x\0y");
        match plan(b.config(), &Values::example(), None) {
            Err(Error::NulByte { what, .. }) => assert_eq!(what, "environment variable FOO"),
            other => panic!("expected NulByte, got {:?}", other.err()),
        }
    }

    #[test]
    fn environment_applies_changes_in_order() {
        let mut b = Builder::new("true");
        b.env("A", "1")
            .env_clear()
            .env("B", "{port}")
            .env("C", "3")
            .env_remove("C");
        let env = environment(b.config(), &Values::example(), None);
        assert_eq!(env.len(), 1);
        assert_eq!(env[OsStr::new("B")], "8080");
    }

    #[test]
    fn a_user_brings_home_and_name_unless_set() {
        let user = User {
            name: "pg".into(),
            uid: 70,
            gid: 70,
            groups: vec![70],
            home: "/var/lib/pg".into(),
        };
        let mut b = Builder::new("true");
        b.env_clear().env("HOME", "/elsewhere");
        let env = environment(b.config(), &Values::example(), Some(&user));
        assert_eq!(env[OsStr::new("HOME")], "/elsewhere");
        assert_eq!(env[OsStr::new("USER")], "pg");
    }

    #[test]
    fn program_lookup() {
        let b = Builder::new("sh");
        assert!(resolve_program(
            b.config(),
            &environment(b.config(), &Values::example(), None)
        )
        .unwrap()
        .is_absolute());
        let b = Builder::new("surely-no-such-program-here");
        assert!(matches!(
            resolve_program(
                b.config(),
                &environment(b.config(), &Values::example(), None)
            ),
            Err(Error::ProgramNotFound { .. })
        ));
    }
}
