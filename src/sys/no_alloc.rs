//! Numbers and paths without allocating (the guardian may not allocate).

use std::ffi::CStr;

use super::Pid;

/// A pid in decimal digits.
pub(crate) fn parse_pid(digits: &[u8]) -> Option<Pid> {
    Pid::try_from(parse_u64(digits)?).ok()
}

/// Decimal digits, without allocating (the guardian uses it).
pub(crate) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    Some(n)
}

/// Hexadecimal digits (a `SigIgn:` mask), without allocating.
#[cfg(target_os = "linux")]
pub(crate) fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n * 16 + u64::from((d as char).to_digit(16)?);
    }
    Some(n)
}

/// A C string (a /proc path, `LISTEN_PID=<pid>`) built on the stack: the guardian, and the
/// server's child before exec, may not allocate.
pub(crate) struct StackPath {
    buf: [u8; 96],
    len: usize,
}

impl StackPath {
    pub(crate) fn new() -> Self {
        StackPath {
            buf: [0; 96],
            len: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> &mut Self {
        let take = bytes.len().min(self.buf.len() - 1 - self.len);
        self.buf[self.len..self.len + take].copy_from_slice(&bytes[..take]);
        self.len += take;
        self
    }

    pub(crate) fn push_pid(&mut self, pid: Pid) -> &mut Self {
        self.push_u64(u64::from(pid.unsigned_abs()))
    }

    pub(crate) fn push_u64(&mut self, mut n: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..])
    }

    pub(crate) fn as_cstr(&mut self) -> &CStr {
        self.buf[self.len] = 0;
        CStr::from_bytes_with_nul(&self.buf[..=self.len]).unwrap_or(c"/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_without_allocating() {
        assert_eq!(parse_u64(b"12345"), Some(12345));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1x"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn paths_and_masks_without_allocating() {
        assert_eq!(parse_hex(b"0000000000004000"), Some(0x4000));
        assert_eq!(parse_hex(b"zz"), None);
        let mut p = StackPath::new();
        assert_eq!(
            p.push(b"/proc/").push_pid(123).push(b"/stat").as_cstr(),
            c"/proc/123/stat"
        );
    }
}
