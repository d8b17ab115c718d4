//! Removing a directory tree with raw syscalls only (Linux): no allocation, no locks, so that a
//! guardian forked from a multithreaded test process may call it. Symlinks are removed, never
//! followed (`fstatat` with `AT_SYMLINK_NOFOLLOW`, `openat` with `O_NOFOLLOW`).

use std::ffi::CStr;
use std::os::fd::RawFd;

/// How deep a tree is followed (a stack buffer per level).
const DEPTH_MAX: usize = 64;
/// Bytes of directory entries read at once.
const BUF: usize = 2048;

/// Removes `path` and everything under it. True if it is gone (or was never there).
pub(crate) fn remove_tree(path: &CStr) -> bool {
    // SAFETY: plain syscalls on a NUL-terminated path and fds this function owns.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstatat(
            libc::AT_FDCWD,
            path.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        ) != 0
        {
            return *libc::__errno_location() == libc::ENOENT;
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return libc::unlinkat(libc::AT_FDCWD, path.as_ptr(), 0) == 0;
        }
        let fd = open_dir(libc::AT_FDCWD, path);
        if fd >= 0 {
            empty(fd, 0);
            libc::close(fd);
        }
        libc::unlinkat(libc::AT_FDCWD, path.as_ptr(), libc::AT_REMOVEDIR) == 0
    }
}

unsafe fn open_dir(at: RawFd, name: &CStr) -> RawFd {
    libc::openat(
        at,
        name.as_ptr(),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
    )
}

/// Removes everything in the directory `dir`. Entries are read again from the start after each
/// pass that removed something (removing while reading may skip entries); a pass that removes
/// nothing ends it.
unsafe fn empty(dir: RawFd, depth: usize) {
    let mut buf = [0u8; BUF];
    loop {
        let mut removed = false;
        libc::lseek(dir, 0, libc::SEEK_SET);
        loop {
            let n = libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), BUF);
            if n <= 0 {
                break;
            }
            let mut off = 0usize;
            while off + 19 < n as usize {
                // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
                let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                if reclen == 0 {
                    break;
                }
                let name = CStr::from_ptr(buf.as_ptr().add(off + 19).cast());
                off += reclen;
                let bytes = name.to_bytes();
                if bytes == b"." || bytes == b".." {
                    continue;
                }
                removed |= remove_entry(dir, name, depth);
            }
        }
        if !removed {
            return;
        }
    }
}

/// Removes one entry of `dir`: a directory after its contents, anything else as it is.
unsafe fn remove_entry(dir: RawFd, name: &CStr, depth: usize) -> bool {
    let mut st: libc::stat = std::mem::zeroed();
    if libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) != 0 {
        return false;
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        if depth + 1 < DEPTH_MAX {
            let sub = open_dir(dir, name);
            if sub >= 0 {
                empty(sub, depth + 1);
                libc::close(sub);
            }
        }
        libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) == 0
    } else {
        libc::unlinkat(dir, name.as_ptr(), 0) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_tree_without_following_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let root = tempfile::tempdir().unwrap().keep();
        let mut deep = root.clone();
        for i in 0..5 {
            deep = deep.join(format!("d{i}"));
            std::fs::create_dir(&deep).unwrap();
            for f in 0..40 {
                std::fs::write(deep.join(format!("file-with-a-long-name-{f}")), "y").unwrap();
            }
        }
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).unwrap();
        assert!(remove_tree(&c));
        assert!(!root.exists());
        assert!(outside.path().join("keep").exists(), "followed the symlink");
        assert!(remove_tree(&c), "a missing tree is gone");
    }
}
