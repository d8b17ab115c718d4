//! The placeholders: `{port}`, `{port:NAME}`, `{dir}`, and with socket activation `{fd}` and
//! `{fd:NAME}`, found in the configuration before the spawn (which ports and whether a
//! directory are needed) and filled in once their values exist.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// What the placeholders stand for in one spawn, and what else the environment gets.
#[derive(Clone, Debug, Default)]
pub(crate) struct Values {
    pub port: u16,
    pub named: BTreeMap<String, u16>,
    pub dir: Option<PathBuf>,
    /// `NOTIFY_SOCKET` for `Ready::sd_notify()`.
    pub notify: Option<OsString>,
    /// Socket activation: the fds the server gets its listening sockets on, `""` for the
    /// fixture's port, else the port's NAME.
    pub fds: BTreeMap<String, i32>,
}

impl Values {
    /// `text` with every `{port}`, `{port:NAME}`, `{dir}`, `{fd}` and `{fd:NAME}` replaced. One
    /// without a value (`{fd}` without socket activation) is left as it is.
    pub(crate) fn substitute(&self, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.iter().position(|&b| b == b'{') {
            out.extend_from_slice(&rest[..open]);
            rest = &rest[open..];
            let close = rest.iter().position(|&b| b == b'}');
            let key = close.map(|c| &rest[1..c]);
            match key.and_then(|k| self.value(k)) {
                Some(value) => {
                    out.extend_from_slice(&value);
                    rest = &rest[close.unwrap_or(0) + 1..];
                }
                None => {
                    out.push(b'{');
                    rest = &rest[1..];
                }
            }
        }
        out.extend_from_slice(rest);
        out
    }

    fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        match key {
            b"port" => Some(self.port.to_string().into_bytes()),
            b"dir" => self.dir.as_ref().map(|d| d.as_os_str().as_bytes().to_vec()),
            b"fd" => self.fds.get("").map(|fd| fd.to_string().into_bytes()),
            _ => {
                if let Some(name) = key.strip_prefix(b"fd:") {
                    let name = std::str::from_utf8(name).ok()?;
                    return self.fds.get(name).map(|fd| fd.to_string().into_bytes());
                }
                let name = std::str::from_utf8(key.strip_prefix(b"port:")?).ok()?;
                self.named.get(name).map(|p| p.to_string().into_bytes())
            }
        }
    }
}

/// The NAMEs of the `{port:NAME}` and `{fd:NAME}` placeholders in `text` (NAME: letters,
/// digits, `_`, `-`).
pub(crate) fn named_ports(text: &[u8]) -> Vec<String> {
    let mut names = names_after(text, b"{port:");
    names.extend(names_after(text, b"{fd:"));
    names
}

fn names_after(text: &[u8], prefix: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(i) = find(rest, prefix) {
        rest = &rest[i + prefix.len()..];
        let end = rest
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        if let Some(end) = end.filter(|&e| e > 0 && rest[e] == b'}') {
            names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            rest = &rest[end..];
        }
    }
    names
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Values for unit tests here and in `plan`: port 8080, port `admin` 9090, directory /tmp/fx.
#[cfg(test)]
impl Values {
    pub(crate) fn example() -> Values {
        Values {
            port: 8080,
            named: [("admin".to_owned(), 9090)].into(),
            dir: Some("/tmp/fx".into()),
            notify: None,
            fds: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_everywhere() {
        let v = Values::example();
        assert_eq!(
            v.substitute(b"--listen=127.0.0.1:{port}"),
            b"--listen=127.0.0.1:8080"
        );
        assert_eq!(v.substitute(b"{port}{port}"), b"80808080");
        assert_eq!(
            v.substitute(b"{port:admin} in {dir}/x"),
            b"9090 in /tmp/fx/x"
        );
        assert_eq!(v.substitute(b"{por} {port:nope} {"), b"{por} {port:nope} {");
        assert_eq!(v.substitute(b"json {\"a\": {port}}"), b"json {\"a\": 8080}");
        assert_eq!(v.substitute(b"{fd}"), b"{fd}", "no socket activation");
        let activated = Values {
            fds: [(String::new(), 3), ("admin".to_owned(), 4)].into(),
            ..Values::example()
        };
        assert_eq!(activated.substitute(b"fd://{fd} {fd:admin}"), b"fd://3 4");
    }

    #[test]
    fn named_ports_are_found() {
        assert_eq!(
            named_ports(b"a {port:admin} b {port:metrics-2}"),
            ["admin", "metrics-2"]
        );
        assert!(named_ports(b"{port:} {port:a b} {port}").is_empty());
        assert_eq!(named_ports(b"--fd {fd:admin}"), ["admin"]);
    }
}
