//! [`Ready`] from text: what the command line (`--ready`) and a config file can say.

use std::fmt;
use std::str::FromStr;

use super::probe::Ready;

/// Why a text is not a readiness probe (see [`Ready::from_str`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseReadyError {
    text: String,
    reason: String,
}

impl fmt::Display for ParseReadyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid readiness probe {:?}: {} (one of: tcp, http:PATH, http:PATH=CODE,CODE, \
             stdout:REGEX, stderr:REGEX, output:REGEX, file:PATH, unix:PATH, sd-notify, none)",
            self.text, self.reason
        )
    }
}

impl std::error::Error for ParseReadyError {}

impl FromStr for Ready {
    type Err = ParseReadyError;

    /// Parses `tcp`, `http:PATH`, `http:PATH=200,404`, `stdout:REGEX`, `stderr:REGEX`,
    /// `output:REGEX`, `file:PATH`, `unix:PATH`, `sd-notify` or `none`. The pattern of a line
    /// probe is checked by `spawn`, as for [`Ready::stdout`].
    ///
    /// ```
    /// use process_fixture::Ready;
    /// let ready: Ready = "http:/health=200,503".parse()?;
    /// assert_eq!(format!("{ready:?}"), format!("{:?}", Ready::http_status("/health", [200, 503])));
    /// assert!("htp:/".parse::<Ready>().is_err());
    /// # Ok::<(), process_fixture::ParseReadyError>(())
    /// ```
    fn from_str(text: &str) -> Result<Ready, ParseReadyError> {
        let fail = |reason: &str| ParseReadyError {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (kind, arg) = match text.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg)),
            None => (text, None),
        };
        let needs = |what: &str| arg.filter(|a| !a.is_empty()).ok_or_else(|| fail(what));
        match kind {
            "tcp" | "none" | "sd-notify" if arg.is_some() => Err(fail("takes no argument")),
            "tcp" => Ok(Ready::tcp()),
            "none" => Ok(Ready::none()),
            "sd-notify" => Ok(Ready::sd_notify()),
            "http" => http(needs("http needs a path: http:/health")?).map_err(|r| fail(&r)),
            "stdout" => Ok(Ready::stdout(needs("stdout needs a pattern")?)),
            "stderr" => Ok(Ready::stderr(needs("stderr needs a pattern")?)),
            "output" => Ok(Ready::output(needs("output needs a pattern")?)),
            "file" => Ok(Ready::file(needs("file needs a path")?)),
            "unix" => Ok(Ready::unix_socket(needs("unix needs a path")?)),
            _ => Err(fail("unknown kind")),
        }
    }
}

/// `PATH` or `PATH=CODE,CODE`.
fn http(arg: &str) -> Result<Ready, String> {
    let (path, codes) = match arg.rsplit_once('=') {
        Some((path, codes)) => (path, Some(codes)),
        None => (arg, None),
    };
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        return Err(format!(
            "the HTTP path {path:?} must start with / and have no space"
        ));
    }
    let codes = match codes {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (100..600).contains(c))
            })
            .collect::<Option<Vec<u16>>>()
            .ok_or_else(|| format!("{list:?} is not a list of HTTP status codes"))?,
    };
    Ok(Ready::http_status(path, codes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(text: &str, ready: Ready) {
        let parsed: Ready = text.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{parsed:?}"), format!("{ready:?}"), "{text}");
    }

    #[test]
    fn every_kind_parses() {
        same("tcp", Ready::tcp());
        same("none", Ready::none());
        same("sd-notify", Ready::sd_notify());
        same("http:/", Ready::http("/"));
        same("http:/a?b=c=200", Ready::http_status("/a?b=c", [200]));
        same(
            "http:/health=200,404",
            Ready::http_status("/health", [200, 404]),
        );
        same("stdout:Ready to accept", Ready::stdout("Ready to accept"));
        same(
            "stderr:listening on (?P<port>\\d+)",
            Ready::stderr("listening on (?P<port>\\d+)"),
        );
        same("output:a:b", Ready::output("a:b"));
        same("file:{dir}/pid", Ready::file("{dir}/pid"));
        same("unix:/tmp/s.sock", Ready::unix_socket("/tmp/s.sock"));
    }

    #[test]
    fn bad_probes_say_what_is_wrong() {
        for (text, reason) in [
            ("htp:/", "unknown kind"),
            ("http:", "needs a path"),
            ("http:health", "must start with /"),
            ("http:/=2000", "not a list of HTTP status codes"),
            ("http:/=ok", "not a list"),
            ("tcp:80", "takes no argument"),
            ("stdout:", "needs a pattern"),
            ("", "unknown kind"),
        ] {
            let e = text.parse::<Ready>().unwrap_err().to_string();
            assert!(e.contains(reason), "{text}: {e}");
        }
    }
}
