//! Socket queries: is a socket listening, and on which address.

use std::os::fd::RawFd;

/// An integer socket option at `SOL_SOCKET` level.
fn socket_option(fd: RawFd, option: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals, and `len` gives the size of `value`.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (ret == 0).then_some(value)
}

/// Whether socket `fd` is listening (`SO_ACCEPTCONN`).
pub(crate) fn is_listening(fd: RawFd) -> bool {
    socket_option(fd, libc::SO_ACCEPTCONN).is_some_and(|on| on != 0)
}

/// The local address of a TCP socket: `(family, address bytes (4 or 16 used), port)`.
pub(crate) fn tcp_local_address(fd: RawFd) -> Option<(u16, [u8; 16], u16)> {
    if socket_option(fd, libc::SO_PROTOCOL) != Some(libc::IPPROTO_TCP) {
        return None;
    }
    // SAFETY: sockaddr_storage is plain old data: all zeros is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` are live locals, and `len` gives the size of `storage`,
    // large enough for any address.
    let ret = unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return None;
    }
    let mut addr = [0u8; 16];
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the kernel wrote a sockaddr_in, which fits in (and is no more
            // aligned than) the sockaddr_storage it is read from.
            let sin = unsafe { &*(&storage as *const _ as *const libc::sockaddr_in) };
            addr[..4].copy_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
            Some((libc::AF_INET as u16, addr, u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the kernel wrote a sockaddr_in6, which fits in (and is no more
            // aligned than) the sockaddr_storage it is read from.
            let sin6 = unsafe { &*(&storage as *const _ as *const libc::sockaddr_in6) };
            addr.copy_from_slice(&sin6.sin6_addr.s6_addr);
            Some((libc::AF_INET6 as u16, addr, u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}
