//! Passing fds over a Unix socket (`SCM_RIGHTS`).

use std::io;
use std::os::fd::RawFd;

use super::errno;
use super::fd::{close, NOSIGNAL};

/// The most fds one message carries: a guardian's three, and the listening sockets of socket
/// activation.
pub(crate) const MAX_FDS: usize = 16;

/// Sends `bytes` and the fds `fds` (SCM_RIGHTS, at most [`MAX_FDS`]) over a Unix socket.
pub(crate) fn send_with_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut control = CmsgBuf::new();
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain old data: all zeros is a valid, empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if fds.len() > MAX_FDS {
        // More would not fit in `control` (EINVAL: no allocation on the guardian's side).
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    if !fds.is_empty() {
        let len = std::mem::size_of_val(fds);
        msg.msg_control = control.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(len as u32) } as _;
        // SAFETY: `msg_control` points to `control`, aligned for u64 (so for cmsghdr), which is
        // room for the header and MAX_FDS fds; CMSG_FIRSTHDR is therefore non-null and
        // CMSG_DATA points inside it, with room for `fds.len()` ints.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(len as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        }
    }
    let n = loop {
        // SAFETY: `msg` points to `iov` (over `bytes`) and `control`, all alive for the call;
        // the kernel only reads them.
        let n = unsafe { libc::sendmsg(sock, &msg, NOSIGNAL) };
        if n != -1 || errno() != libc::EINTR {
            break n;
        }
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one message and up to `fds.len()` (at most [`MAX_FDS`]) fds, close-on-exec; any
/// more are closed. Returns the bytes received; 0 is EOF. Unused slots of `fds` are -1.
pub(crate) fn recv_with_fds(sock: RawFd, buf: &mut [u8], fds: &mut [RawFd]) -> isize {
    fds.fill(-1);
    let mut control = CmsgBuf::new();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data: all zeros is a valid, empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control.0) as _;
    let n = loop {
        // SAFETY: `msg` points to `iov` (over `buf`, borrowed mutably) and `control`, whose
        // sizes it gives; the kernel writes within them during the call.
        let n = unsafe { libc::recvmsg(sock, &mut msg, RECV_CLOEXEC) };
        if n != -1 || errno() != libc::EINTR {
            break n;
        }
    };
    if n < 0 {
        return n;
    }
    // SAFETY: the control messages are those the kernel wrote into `control` (the length it
    // left in `msg_controllen` bounds them; CMSG_NXTHDR stops at it). Each SCM_RIGHTS payload
    // holds `count` ints, read unaligned; every fd received is ours, kept or closed.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        let mut got = 0;
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    if got < fds.len() {
                        fds[got] = fd;
                        got += 1;
                    } else {
                        close(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        #[cfg(not(target_os = "linux"))]
        for &fd in fds.iter().filter(|&&fd| fd >= 0) {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    n
}

#[cfg(target_os = "linux")]
const RECV_CLOEXEC: libc::c_int = libc::MSG_CMSG_CLOEXEC;
#[cfg(not(target_os = "linux"))]
const RECV_CLOEXEC: libc::c_int = 0;

/// Room for one SCM_RIGHTS message of up to MAX_FDS fds (a 16-byte header and 64 bytes of
/// ints, rounded up), aligned for `cmsghdr`.
struct CmsgBuf([u64; 12]);

impl CmsgBuf {
    fn new() -> CmsgBuf {
        CmsgBuf([0; 12])
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::super::fd::{pipe, read_exact, socketpair, write_all};
    use super::*;

    #[test]
    fn fds_travel_over_a_socket() {
        let (a, b) = socketpair(true).unwrap();
        let (r, w) = pipe().unwrap();
        send_with_fds(a.as_raw_fd(), b"hi", &[w.as_raw_fd()]).unwrap();
        drop(w);
        let mut buf = [0u8; 8];
        let mut fds = [-1; 4];
        assert_eq!(recv_with_fds(b.as_raw_fd(), &mut buf, &mut fds), 2);
        assert_eq!(&buf[..2], b"hi");
        assert!(fds[0] >= 0 && fds[1] == -1);
        assert!(write_all(fds[0], b"x"));
        close(fds[0]);
        let mut one = [0u8; 1];
        assert!(read_exact(r.as_raw_fd(), &mut one));
        assert_eq!(&one, b"x");
    }
}
