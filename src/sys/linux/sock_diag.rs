//! Listening TCP sockets through sock_diag netlink (`linux/inet_diag.h`), with
//! `/proc/net/tcp{,6}` as the fallback where netlink is refused. The test side's, but for
//! [`ListenerScan::listener_on`], which the guardian's port watch calls too: it does not
//! allocate (a request and its answer on the stack).

use crate::sys::{Pid, TcpListener};

use super::procfs::socket_owner;

/// Every listening TCP socket of this network namespace, through sock_diag netlink (one request
/// per address family, no /proc text to parse); `/proc/net/tcp{,6}` when netlink is refused (a
/// sandbox). `None` when neither can be read.
pub(crate) fn tcp_listeners() -> Option<Vec<TcpListener>> {
    ListenerScan::new().listeners()
}

/// Repeated looks at the listening sockets, through one netlink socket (a readiness wait looks
/// every few milliseconds: a socket per look would double its cost).
pub(crate) struct ListenerScan {
    sock: Option<std::os::fd::OwnedFd>,
}

impl ListenerScan {
    pub(crate) fn new() -> ListenerScan {
        ListenerScan { sock: diag::open() }
    }

    pub(crate) fn listeners(&mut self) -> Option<Vec<TcpListener>> {
        let by_diag = self.sock.as_ref().and_then(diag::listeners);
        if by_diag.is_none() {
            self.sock = None; // refused once: /proc from now on
        }
        by_diag.or_else(proc_net_listeners)
    }

    /// Whether sock_diag can be asked (it may be refused in a sandbox).
    pub(crate) fn is_open(&self) -> bool {
        self.sock.is_some()
    }

    /// The listening socket a connection to `addr` would reach (an exact address, a wildcard
    /// one, or an IPv6 socket that takes IPv4 too), asked of the kernel by address: a lookup in
    /// its listener hash, where `listeners()` walks every bucket of it (≈ 5 µs against ≈ 29 µs
    /// here). `Some(None)`: nothing listens there. `None`: it cannot be asked (no sock_diag);
    /// use `listeners()`. With `SO_REUSEPORT`, one socket of the group is named.
    pub(crate) fn listener_on(
        &mut self,
        addr: std::net::SocketAddr,
    ) -> Option<Option<TcpListener>> {
        let found = diag::lookup(self.sock.as_ref()?, addr);
        if found.is_none() {
            self.sock = None;
        }
        found
    }
}

fn proc_net_listeners() -> Option<Vec<TcpListener>> {
    let mut out = Vec::new();
    let mut any = false;
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        any = true;
        out.extend(
            text.lines()
                .skip(1)
                .filter_map(|l| parse_proc_net_line(l, v6)),
        );
    }
    any.then_some(out)
}

/// A `/proc/net/tcp{,6}` line in state 0A (listening): its address and inode.
fn parse_proc_net_line(line: &str, v6: bool) -> Option<TcpListener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if *fields.get(3)? != "0A" {
        return None;
    }
    let (ip_hex, port_hex) = fields.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    // The address is printed as 32-bit words in host byte order.
    let mut bytes = [0u8; 16];
    let words = ip_hex.len() / 8;
    for w in 0..words {
        let word = u32::from_str_radix(ip_hex.get(w * 8..w * 8 + 8)?, 16).ok()?;
        bytes[w * 4..w * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    let ip: std::net::IpAddr = if v6 {
        std::net::Ipv6Addr::from(bytes).into()
    } else {
        std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()
    };
    Some(TcpListener {
        addr: std::net::SocketAddr::new(ip, port),
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// sock_diag netlink (linux/inet_diag.h): a dump of TCP sockets in state LISTEN.
mod diag {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::TcpListener;

    const NETLINK_SOCK_DIAG: i32 = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const TCP_LISTEN: u32 = 10;

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct SockId {
        sport: [u8; 2],
        dport: [u8; 2],
        src: [u8; 16],
        dst: [u8; 16],
        interface: u32,
        cookie: [u32; 2],
    }

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Request {
        // struct nlmsghdr
        len: u32,
        kind: u16,
        flags: u16,
        seq: u32,
        pid: u32,
        // struct inet_diag_req_v2
        family: u8,
        protocol: u8,
        ext: u8,
        pad: u8,
        states: u32,
        id: SockId,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Message {
        family: u8,
        state: u8,
        timer: u8,
        retrans: u8,
        id: SockId,
        expires: u32,
        rqueue: u32,
        wqueue: u32,
        uid: u32,
        inode: u32,
    }

    pub(super) fn open() -> Option<OwnedFd> {
        // SAFETY: socket takes integers only; the new fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        // SAFETY: `fd` was just created here and is owned by nobody else.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub(super) fn listeners(sock: &OwnedFd) -> Option<Vec<TcpListener>> {
        let mut out = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            dump(sock, family as u8, &mut out)?;
        }
        Some(out)
    }

    /// The listener that takes connections to `addr`: an exact request (no dump), which the
    /// kernel answers with `inet_lookup`, as for an incoming connection to `addr` from nowhere
    /// (no established socket has the peer 0.0.0.0:0, so only listeners match).
    pub(super) fn lookup(sock: &OwnedFd, addr: SocketAddr) -> Option<Option<TcpListener>> {
        let mut id = SockId {
            sport: addr.port().to_be_bytes(),
            cookie: [u32::MAX; 2], // INET_DIAG_NOCOOKIE: any socket
            ..SockId::default()
        };
        let family = match addr.ip() {
            IpAddr::V4(ip) => {
                id.src[..4].copy_from_slice(&ip.octets());
                libc::AF_INET
            }
            IpAddr::V6(ip) => {
                id.src = ip.octets();
                libc::AF_INET6
            }
        };
        send(sock, family as u8, NLM_F_REQUEST, id)?;
        let mut buf = [0u8; 1024];
        let n = crate::sys::fd::read(sock.as_raw_fd(), &mut buf);
        if n < 16 {
            return None;
        }
        let n = n as usize;
        let len = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().ok()?);
        if len < 16 || len > n {
            return None;
        }
        if kind == NLMSG_ERROR {
            let code = i32::from_ne_bytes(buf[16..20].try_into().ok()?);
            return (code == -libc::ENOENT).then_some(None);
        }
        Some(listener(&buf[16..len]))
    }

    fn send(sock: &OwnedFd, family: u8, flags: u16, id: SockId) -> Option<()> {
        let req = Request {
            len: std::mem::size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags,
            family,
            protocol: libc::IPPROTO_TCP as u8,
            states: 1 << TCP_LISTEN,
            id,
            ..Request::default()
        };
        // SAFETY: sockaddr_nl is plain old data (all zeros, then the family, addresses the
        // kernel); the kernel reads `req.len` bytes from `req` and the address from `kernel`,
        // both locals alive for the call.
        let sent = unsafe {
            let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
            kernel.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                sock.as_raw_fd(),
                (&req as *const Request).cast(),
                req.len as usize,
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        (sent >= 0).then_some(())
    }

    fn dump(sock: &OwnedFd, family: u8, out: &mut Vec<TcpListener>) -> Option<()> {
        send(sock, family, NLM_F_REQUEST | NLM_F_DUMP, SockId::default())?;
        let mut buf = vec![0u8; 32 << 10];
        loop {
            let n = crate::sys::fd::read(sock.as_raw_fd(), &mut buf);
            if n <= 0 {
                return None;
            }
            let mut off = 0usize;
            while off + 16 <= n as usize {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into().ok()?) as usize;
                let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().ok()?);
                if len < 16 || off + len > n as usize {
                    return None;
                }
                match kind {
                    NLMSG_DONE => return Some(()),
                    NLMSG_ERROR => return None,
                    _ => out.extend(listener(&buf[off + 16..off + len])),
                }
                off += (len + 3) & !3;
            }
        }
    }

    fn listener(payload: &[u8]) -> Option<TcpListener> {
        if payload.len() < std::mem::size_of::<Message>() {
            return None;
        }
        // SAFETY: `payload` holds at least size_of::<Message>() bytes (checked above), and
        // Message is plain old data (any bytes are valid); read unaligned.
        let msg: Message = unsafe { std::ptr::read_unaligned(payload.as_ptr().cast()) };
        let ip: IpAddr = match msg.family as i32 {
            libc::AF_INET => {
                Ipv4Addr::new(msg.id.src[0], msg.id.src[1], msg.id.src[2], msg.id.src[3]).into()
            }
            libc::AF_INET6 => Ipv6Addr::from(msg.id.src).into(),
            _ => return None,
        };
        Some(TcpListener {
            addr: SocketAddr::new(ip, u16::from_be_bytes(msg.id.sport)),
            inode: u64::from(msg.inode),
        })
    }
}

/// A process listening on TCP `port`, on any address.
pub(crate) fn tcp_listener_pid(port: u16) -> Option<Pid> {
    let inodes: Vec<u64> = tcp_listeners()?
        .into_iter()
        .filter(|l| l.addr.port() == port)
        .map(|l| l.inode)
        .collect();
    if inodes.is_empty() {
        return None;
    }
    socket_owner(&inodes)
}

#[cfg(test)]
mod tests {
    use super::super::procfs::socket_inodes;
    use super::*;

    #[test]
    fn parses_a_proc_net_tcp_line() {
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000";
        let l = parse_proc_net_line(line, false).unwrap();
        assert_eq!(l.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(l.inode, 123456);
        let closed = line.replace(" 0A ", " 06 ");
        assert_eq!(parse_proc_net_line(&closed, false), None);
    }

    #[test]
    fn sock_diag_and_proc_agree_on_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mine = socket_inodes(crate::sys::process::getpid());
        let by_diag = diag::open()
            .and_then(|s| diag::listeners(&s))
            .expect("sock_diag");
        let by_proc = proc_net_listeners().expect("/proc/net/tcp");
        for (how, list) in [("sock_diag", by_diag), ("/proc", by_proc)] {
            let found = list.iter().find(|l| l.addr == addr);
            let found = found.unwrap_or_else(|| panic!("{how} misses {addr}"));
            assert!(
                mine.contains(&found.inode),
                "{how}: inode {} is ours",
                found.inode
            );
        }
        assert_eq!(
            tcp_listener_pid(addr.port()),
            Some(crate::sys::process::getpid())
        );
    }
}
