//! The messages between a shared server's users and its keeper, over a unix stream socket: a
//! frame is a length (u32, little endian), a tag, and fields written by [`Writer`].
//!
//! ```text
//! user                                  keeper
//! HELLO {version, scope, key, config} ─▶
//!                                   ◀─ READY {port, named ports, dir, pid, output, started by you}
//!                                      | FAILED {the start's error} | MISMATCH {fields, detail}
//!                                      | RETIRED (stopping: ask the rendezvous again)
//! STATUS ─▶                         ◀─ RUNNING {bool}
//! OUTPUT ─▶                         ◀─ OUTPUT {stdout, stderr}
//! ```
//! The connection is the user's lease: the keeper counts open connections, so a user that dies
//! in any way (SIGKILL included) is counted out by the kernel closing its socket.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// Bumped whenever a message or the configuration's encoding changes.
pub(super) const WIRE_VERSION: u32 = 1;
/// The largest frame either side accepts (a configuration with big files; captured output).
const MAX_FRAME: usize = 64 << 20;

pub(super) const HELLO: u8 = 1;
pub(super) const READY: u8 = 2;
pub(super) const FAILED: u8 = 3;
pub(super) const MISMATCH: u8 = 4;
pub(super) const RETIRED: u8 = 5;
pub(super) const STATUS: u8 = 6;
pub(super) const RUNNING: u8 = 7;
pub(super) const OUTPUT: u8 = 8;

/// Sends one frame.
pub(super) fn send(mut stream: &UnixStream, tag: u8, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len() + 1)
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
    let mut frame = Vec::with_capacity(body.len() + 5);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.push(tag);
    frame.extend_from_slice(body);
    stream.write_all(&frame)
}

/// Reads one frame (within the stream's read timeout): its tag and body.
pub(super) fn recv(mut stream: &UnixStream) -> io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad frame length",
        ));
    }
    let mut frame = vec![0u8; len];
    stream.read_exact(&mut frame)?;
    let tag = frame.remove(0);
    Ok((tag, frame))
}

/// Writes fields: numbers little endian, byte strings and lists with a u32 length first.
#[derive(Default)]
pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    pub(super) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(super) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(super) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }

    /// `None` as 0, `Some(v)` as 1 then `v`.
    pub(super) fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
                self
            }
        }
    }

    /// A count, then each item.
    pub(super) fn list<T>(
        &mut self,
        items: impl ExactSizeIterator<Item = T>,
        mut f: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        self.u32(items.len() as u32);
        for item in items {
            f(self, item);
        }
        self
    }
}

/// Reads what [`Writer`] wrote; `None` on a short or malformed body.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub(super) fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    pub(super) fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.u8()? {
            0 => Some(None),
            1 => f(self).map(Some),
            _ => None,
        }
    }

    /// A list of at most as many items as bytes are left (a bad count cannot allocate much).
    pub(super) fn list<T>(&mut self, mut f: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return None;
        }
        (0..n).map(|_| f(self)).collect()
    }
}

/// What a user learns when it attaches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Attached {
    pub(super) port: u16,
    pub(super) named: Vec<(String, u16)>,
    pub(super) dir: Option<PathBuf>,
    pub(super) pid: u32,
    pub(super) keeper_pid: u32,
    pub(super) stdout: String,
    pub(super) stderr: String,
    /// This user's `HELLO` started the server.
    pub(super) started_here: bool,
}

impl Attached {
    pub(super) fn encode(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut w = Writer::default();
        w.u32(self.port.into())
            .list(self.named.iter(), |w, (name, port)| {
                w.bytes(name.as_bytes()).u32((*port).into());
            })
            .opt(self.dir.as_ref(), |w, d| {
                w.bytes(d.as_os_str().as_bytes());
            })
            .u32(self.pid)
            .u32(self.keeper_pid)
            .bytes(self.stdout.as_bytes())
            .bytes(self.stderr.as_bytes())
            .u8(self.started_here.into());
        w.0
    }

    pub(super) fn decode(body: &[u8]) -> Option<Attached> {
        use std::os::unix::ffi::OsStrExt;
        let mut r = Reader(body);
        let port = u16::try_from(r.u32()?).ok()?;
        let named = r.list(|r| Some((r.string()?, u16::try_from(r.u32()?).ok()?)))?;
        let dir = r.opt(|r| Some(PathBuf::from(std::ffi::OsStr::from_bytes(r.bytes()?))))?;
        Some(Attached {
            port,
            named,
            dir,
            pid: r.u32()?,
            keeper_pid: r.u32()?,
            stdout: r.string()?,
            stderr: r.string()?,
            started_here: r.u8()? == 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attached_round_trips() {
        let a = Attached {
            port: 8080,
            named: vec![("admin".into(), 9090)],
            dir: Some("/tmp/x".into()),
            pid: 42,
            keeper_pid: 41,
            stdout: "up\n".into(),
            stderr: String::new(),
            started_here: true,
        };
        assert_eq!(Attached::decode(&a.encode()), Some(a));
    }

    #[test]
    fn short_or_hostile_bodies_are_refused() {
        assert_eq!(Attached::decode(&[1, 2]), None);
        // A list that claims four billion items is refused before anything is allocated.
        let mut w = Writer::default();
        w.u32(1).u32(u32::MAX);
        assert_eq!(Attached::decode(&w.0), None);
    }
}
