//! A fixture's configuration as bytes, field by field: the keeper starts the server from the
//! first user's, and compares every later user's with it, so that a key never hands out a
//! server started with someone else's settings, and the error can say which fields differ.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::wire::{Reader, Writer};
use crate::config::Config;
use crate::output::Which;
use crate::ready::{Probe, Ready};
use crate::report::Containment;
use crate::signal::Signal;

/// Fields that are how one user waits, not what the server is: carried, never compared.
const NOT_COMPARED: &[&str] = &["ready_timeout", "linger"];

/// The fields, in this order, each one a byte string.
pub(super) fn encode(cfg: &Config) -> Result<Vec<u8>, String> {
    let fields = fields(cfg)?;
    let mut w = Writer::default();
    w.list(fields.iter(), |w, (name, body)| {
        w.bytes(name.as_bytes()).bytes(body);
    });
    Ok(w.0)
}

/// The configuration back; `None` when the bytes are not what [`encode`] wrote.
pub(super) fn decode(bytes: &[u8]) -> Option<Config> {
    let fields = split(bytes)?;
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| Reader(b))
    };
    let mut cfg = Config::new(os(get("program")?.bytes()?));
    cfg.args = get("args")?.list(|r| Some(os(r.bytes()?).to_owned()))?;
    cfg.env = get("env")?
        .list(|r| {
            Some((
                os(r.bytes()?).to_owned(),
                r.opt(|r| Some(os(r.bytes()?).to_owned()))?,
            ))
        })?
        .into_iter()
        .collect();
    cfg.env_clear = flag(get("env_clear")?)?;
    cfg.current_dir = get("current_dir")?.opt(path)?;
    cfg.port = get("port")?.opt(|r| u16::try_from(r.u32()?).ok())?;
    cfg.ready = probe(&mut get("ready")?, 0)?;
    cfg.ready_timeout = duration(&mut get("ready_timeout")?)?;
    cfg.grace = duration(&mut get("grace")?)?;
    cfg.stop_signal = Signal::from_raw(get("stop_signal")?.u32()? as i32);
    cfg.containment = get("containment")?.opt(|r| containment(r.u8()?))?;
    cfg.listen_events = get("listen_events")?.opt(flag_in)?;
    cfg.files = get("files")?.list(|r| Some((path(r)?, r.bytes()?.to_vec())))?;
    cfg.copies = get("copies")?.list(|r| Some((path(r)?, path(r)?)))?;
    cfg.temp_dir = flag(get("temp_dir")?)?;
    cfg.dir_in = get("dir_in")?.opt(path)?;
    cfg.uid = get("uid")?.opt(|r| r.u32())?;
    cfg.gid = get("gid")?.opt(|r| r.u32())?;
    cfg.user = get("user")?.opt(|r| r.string())?;
    cfg.allow_early_exit = flag(get("allow_early_exit")?)?;
    cfg.socket_activation = flag(get("socket_activation")?)?;
    cfg.inherit_output = flag(get("inherit_output")?)?;
    cfg.linger = duration(&mut get("linger")?)?;
    Some(cfg)
}

/// The names of the compared fields whose bytes differ (a field one side lacks differs).
pub(super) fn differences(running: &[u8], asked: &[u8]) -> Vec<String> {
    let (Some(a), Some(b)) = (split(running), split(asked)) else {
        return vec!["the whole configuration (unreadable)".to_owned()];
    };
    let value = |fields: &[(&str, &[u8])], name: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_vec())
    };
    let mut names: Vec<&str> = a.iter().chain(&b).map(|(n, _)| *n).collect();
    names.dedup();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter(|n| !NOT_COMPARED.contains(n) && value(&a, n) != value(&b, n))
        .map(str::to_owned)
        .collect()
}

/// One field as a person reads it, for the mismatch error.
pub(super) fn show(cfg: &Config, field: &str) -> String {
    match field {
        "program" => format!("{:?}", cfg.program),
        "args" => format!("{:?}", cfg.args),
        "env" => format!("{:?}", cfg.env),
        "env_clear" => format!("{}", cfg.env_clear),
        "current_dir" => format!("{:?}", cfg.current_dir),
        "port" => format!("{:?}", cfg.port),
        "ready" => format!("{:?}", cfg.ready),
        "grace" => format!("{:?}", cfg.grace),
        "stop_signal" => format!("{}", cfg.stop_signal),
        "containment" => format!("{:?}", cfg.containment),
        "listen_events" => format!("{:?}", cfg.listen_events),
        "files" => format!("{:?}", Vec::from_iter(cfg.files.iter().map(|(p, _)| p))),
        "copies" => format!("{:?}", cfg.copies),
        "temp_dir" => format!("{}", cfg.temp_dir),
        "dir_in" => format!("{:?}", cfg.dir_in),
        "uid" => format!("{:?}", cfg.uid),
        "gid" => format!("{:?}", cfg.gid),
        "user" => format!("{:?}", cfg.user),
        "allow_early_exit" => format!("{}", cfg.allow_early_exit),
        "socket_activation" => format!("{}", cfg.socket_activation),
        "inherit_output" => format!("{}", cfg.inherit_output),
        _ => "?".to_owned(),
    }
}

/// One field: a name and what `body` writes.
macro_rules! field {
    ($name:literal, |$w:ident| $body:expr) => {{
        let mut $w = Writer::default();
        $body;
        ($name, $w.0)
    }};
}

fn fields(cfg: &Config) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let mut ready = Writer::default();
    write_probe(&mut ready, &cfg.ready)?;
    let u32_of = |w: &mut Writer, v: u32| {
        w.u32(v);
    };
    Ok(vec![
        field!("program", |w| w.bytes(cfg.program.as_bytes())),
        field!("args", |w| w.list(cfg.args.iter(), |w, a| {
            w.bytes(a.as_bytes());
        })),
        field!("env", |w| w.list(cfg.env.iter(), write_var)),
        field!("env_clear", |w| w.u8(cfg.env_clear.into())),
        field!("current_dir", |w| w.opt(
            cfg.current_dir.as_deref(),
            |w, p| {
                write_path(w, p);
            }
        )),
        field!("port", |w| w.opt(cfg.port.map(u32::from), u32_of)),
        ("ready", ready.0),
        field!("ready_timeout", |w| write_duration(
            &mut w,
            cfg.ready_timeout
        )),
        field!("grace", |w| write_duration(&mut w, cfg.grace)),
        field!("stop_signal", |w| w.u32(cfg.stop_signal.as_raw() as u32)),
        field!("containment", |w| w.opt(cfg.containment, |w, c| {
            w.u8(c as u8);
        })),
        field!("listen_events", |w| w.opt(cfg.listen_events, |w, b| {
            w.u8(b.into());
        })),
        field!("files", |w| w.list(cfg.files.iter(), |w, (p, body)| {
            write_path(w, p).bytes(body);
        })),
        field!("copies", |w| w.list(cfg.copies.iter(), |w, (from, to)| {
            write_path(write_path(w, from), to);
        })),
        field!("temp_dir", |w| w.u8(cfg.temp_dir.into())),
        field!("dir_in", |w| w.opt(cfg.dir_in.as_deref(), |w, p| {
            write_path(w, p);
        })),
        field!("uid", |w| w.opt(cfg.uid, u32_of)),
        field!("gid", |w| w.opt(cfg.gid, u32_of)),
        field!("user", |w| w.opt(cfg.user.as_deref(), |w, u| {
            w.bytes(u.as_bytes());
        })),
        field!("allow_early_exit", |w| w.u8(cfg.allow_early_exit.into())),
        field!("socket_activation", |w| w.u8(cfg.socket_activation.into())),
        field!("inherit_output", |w| w.u8(cfg.inherit_output.into())),
        field!("linger", |w| write_duration(&mut w, cfg.linger)),
    ])
}

fn split(bytes: &[u8]) -> Option<Vec<(&str, &[u8])>> {
    let mut r = Reader(bytes);
    let fields = r.list(|r| Some((std::str::from_utf8(r.bytes()?).ok()?, r.bytes()?)))?;
    r.0.is_empty().then_some(fields)
}

fn write_var(w: &mut Writer, (key, value): (&std::ffi::OsString, &Option<std::ffi::OsString>)) {
    w.bytes(key.as_bytes()).opt(value.as_ref(), |w, v| {
        w.bytes(v.as_bytes());
    });
}

fn write_path<'w>(w: &'w mut Writer, p: &Path) -> &'w mut Writer {
    w.bytes(p.as_os_str().as_bytes())
}

fn write_duration(w: &mut Writer, d: Duration) {
    w.u64(d.as_secs()).u32(d.subsec_nanos());
}

/// Probes as a tree: a tag, then what the variant holds. A custom check is a closure of this
/// process: it cannot be sent.
fn write_probe(w: &mut Writer, ready: &Ready) -> Result<(), String> {
    match &ready.0 {
        Probe::None => {
            w.u8(0);
        }
        Probe::Tcp(addr) => {
            w.u8(1).opt(addr.as_ref(), |w, a| {
                w.bytes(a.to_string().as_bytes());
            });
        }
        Probe::Http {
            path,
            codes,
            timeout,
        } => {
            w.u8(2).bytes(path.as_bytes());
            w.list(codes.iter(), |w, c| {
                w.u32((*c).into());
            });
            write_duration(w, *timeout);
        }
        Probe::Line { which, pattern } => {
            w.u8(3).u8(*which as u8).bytes(pattern.as_bytes());
        }
        Probe::UnixSocket(p) => {
            write_path(w.u8(4), p);
        }
        Probe::File(p) => {
            write_path(w.u8(5), p);
        }
        Probe::SdNotify => {
            w.u8(6);
        }
        Probe::Custom(_) => {
            return Err(
                "its readiness has a Ready::custom check, a closure of this process, \
                        which another process cannot run"
                    .to_owned(),
            )
        }
        Probe::All(list) | Probe::Any(list) => {
            w.u8(if matches!(ready.0, Probe::All(_)) {
                7
            } else {
                8
            });
            w.u32(list.len() as u32);
            for r in list {
                write_probe(w, r)?;
            }
        }
    }
    Ok(())
}

/// The deepest `all`/`any` nesting decoded (a hostile body cannot overflow the stack).
const MAX_DEPTH: u32 = 32;

fn probe(r: &mut Reader<'_>, depth: u32) -> Option<Ready> {
    let p = match r.u8()? {
        0 => Probe::None,
        1 => Probe::Tcp(r.opt(|r| r.string()?.parse::<SocketAddr>().ok())?),
        2 => Probe::Http {
            path: r.string()?,
            codes: r.list(|r| u16::try_from(r.u32()?).ok())?,
            timeout: duration(r)?,
        },
        3 => Probe::Line {
            which: which(r.u8()?)?,
            pattern: r.string()?,
        },
        4 => Probe::UnixSocket(path(r)?),
        5 => Probe::File(path(r)?),
        6 => Probe::SdNotify,
        tag @ (7 | 8) if depth < MAX_DEPTH => {
            let list = r.list(|r| probe(r, depth + 1))?;
            if tag == 7 {
                Probe::All(list)
            } else {
                Probe::Any(list)
            }
        }
        _ => return None,
    };
    Some(Ready(p))
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn path(r: &mut Reader<'_>) -> Option<PathBuf> {
    Some(PathBuf::from(os(r.bytes()?)))
}

fn flag(mut r: Reader<'_>) -> Option<bool> {
    flag_in(&mut r)
}

fn flag_in(r: &mut Reader<'_>) -> Option<bool> {
    match r.u8()? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

fn duration(r: &mut Reader<'_>) -> Option<Duration> {
    let secs = r.u64()?;
    let nanos = r.u32()?;
    (nanos < 1_000_000_000).then(|| Duration::new(secs, nanos))
}

fn containment(v: u8) -> Option<Containment> {
    [
        Containment::Subreaper,
        Containment::ProcessGroup,
        Containment::Cgroup,
    ]
    .into_iter()
    .find(|c| *c as u8 == v)
}

fn which(v: u8) -> Option<Which> {
    [Which::Stdout, Which::Stderr, Which::Both]
        .into_iter()
        .find(|w| *w as u8 == v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Builder;

    fn config(b: &Builder) -> Vec<u8> {
        encode(b.config()).unwrap()
    }

    #[test]
    fn a_configuration_round_trips_field_by_field() {
        let mut b = Builder::new("my-server");
        b.args(["--port", "{port}"])
            .env("A", "1")
            .env_remove("B")
            .current_dir("/srv")
            .port(8080)
            .ready(Ready::all([
                Ready::http_status("/health", [200, 204]),
                Ready::any([Ready::stderr("up"), Ready::file("{dir}/pid")]),
            ]))
            .grace_period(Duration::from_millis(1500))
            .stop_signal(Signal::INT)
            .file("conf", b"port={port}\n")
            .copy_dir("/seed", "data")
            .uid(1000)
            .user("postgres")
            .allow_early_exit()
            .linger(Duration::from_secs(3));
        let bytes = config(&b);
        let back = decode(&bytes).expect("decodes");
        assert_eq!(encode(&back).unwrap(), bytes);
        assert_eq!(back.linger, Duration::from_secs(3));
        assert_eq!(
            format!("{:?}", back.ready),
            format!("{:?}", b.config().ready)
        );
    }

    #[test]
    fn differences_name_the_fields_and_ignore_how_one_waits() {
        let mut a = Builder::new("srv");
        a.args(["--x"]).ready_timeout(Duration::from_secs(1));
        let mut b = a.clone();
        b.args(["--y"])
            .env("K", "v")
            .ready_timeout(Duration::from_secs(9));
        b.linger(Duration::ZERO);
        assert_eq!(differences(&config(&a), &config(&b)), ["args", "env"]);
        assert!(differences(&config(&a), &config(&a)).is_empty());
    }

    #[test]
    fn a_custom_check_cannot_be_shared() {
        let mut b = Builder::new("srv");
        b.ready(Ready::custom(|_| Ok::<_, std::io::Error>(true)));
        assert!(encode(b.config()).unwrap_err().contains("Ready::custom"));
    }

    #[test]
    fn hostile_bytes_do_not_decode() {
        assert!(decode(&[0xff; 64]).is_none());
        let mut deep = Writer::default();
        for _ in 0..1000 {
            deep.u8(7).u32(1);
        }
        assert!(probe(&mut Reader(&deep.0), 0).is_none());
    }
}
