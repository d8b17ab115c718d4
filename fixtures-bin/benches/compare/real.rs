//! The real servers of figure 6, each given to every tool as the same [`Spec`]: nginx with 4
//! workers, redis, gunicorn with 2 workers, PostgreSQL (a cluster made once by `initdb`, copied
//! before each start, outside the timing: `{data}` in its arguments). Readiness is the port
//! accepting, for every tool alike. A server that is not installed is skipped with the reason.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::Spec;

/// A real server, with what its spec borrows.
pub struct Real {
    pub name: &'static str,
    program: String,
    args: Vec<String>,
    files: Vec<(&'static str, String)>,
    seed: Option<PathBuf>,
    user: Option<(String, u32, u32)>,
}

impl Real {
    /// A fresh copy of the server's data (made before a start, removed after its stop), if it
    /// has any.
    pub fn data(&self) -> Option<Data> {
        let seed = self.seed.as_ref()?;
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("pf-compare-data-{}-{n}", std::process::id()));
        let copied = Command::new("cp").arg("-a").arg(seed).arg(&path).status();
        assert!(
            copied.is_ok_and(|s| s.success()),
            "cp -a {}",
            seed.display()
        );
        Some(Data(path))
    }

    /// Calls `f` with the spec (borrowed from `self`), `{data}` standing for `data`.
    pub fn with_spec<R>(&self, data: Option<&Data>, f: impl FnOnce(&Spec) -> R) -> R {
        let data = data
            .map(|d| d.0.to_string_lossy().into_owned())
            .unwrap_or_default();
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| a.replace("{data}", &data))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let files: Vec<(&str, &str)> = self.files.iter().map(|(n, c)| (*n, c.as_str())).collect();
        let spec = Spec {
            files: &files,
            user: self.user.as_ref().map(|(n, u, g)| (n.as_str(), *u, *g)),
            ..Spec::new(&self.program, &args)
        };
        f(&spec)
    }
}

/// A copy of a server's data, removed when dropped.
pub struct Data(PathBuf);

impl Drop for Data {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The servers found here, and a line for each one that is not.
pub fn servers(scratch: &Path, venv_bin: Option<&Path>) -> (Vec<Real>, Vec<String>) {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for made in [nginx(), redis(), gunicorn(venv_bin), postgres(scratch)] {
        match made {
            Ok(real) => found.push(real),
            Err(reason) => skipped.push(reason),
        }
    }
    (found, skipped)
}

fn plain(name: &'static str, program: PathBuf, args: &[&str]) -> Real {
    Real {
        name,
        program: program.to_string_lossy().into_owned(),
        args: args.iter().map(|a| a.to_string()).collect(),
        files: Vec::new(),
        seed: None,
        user: None,
    }
}

const NGINX_CONF: &str = "daemon off;\nworker_processes 4;\npid {dir}/nginx.pid;\n\
    error_log stderr notice;\nevents { worker_connections 256; }\n\
    http {\n  access_log off;\n  client_body_temp_path {dir}/client_body;\n  \
    proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n  \
    uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n  \
    server { listen 127.0.0.1:{port}; location / { return 200 \"ok\\n\"; } }\n}\n";

fn nginx() -> Result<Real, String> {
    let bin = find("nginx", &["/usr/sbin", "/usr/local/sbin"])?;
    let mut real = plain(
        "nginx (4 workers)",
        bin,
        &["-p", "{dir}", "-c", "{dir}/nginx.conf", "-e", "stderr"],
    );
    real.files.push(("nginx.conf", NGINX_CONF.to_owned()));
    Ok(real)
}

fn redis() -> Result<Real, String> {
    let bin = find("redis-server", &[])?;
    let args = ["--port", "{port}", "--bind", "127.0.0.1", "--save", ""];
    Ok(plain(
        "redis",
        bin,
        &[&args[..], &["--appendonly", "no"]].concat(),
    ))
}

const WSGI_APP: &str = "def app(environ, start_response):\n    \
    start_response('200 OK', [('Content-Length', '3')])\n    return [b'ok\\n']\n";

fn gunicorn(venv_bin: Option<&Path>) -> Result<Real, String> {
    let bin = std::env::var_os("GUNICORN")
        .map(PathBuf::from)
        .or_else(|| venv_bin.map(|b| b.join("gunicorn")).filter(|p| p.is_file()))
        .map_or_else(|| find("gunicorn", &[]), Ok)?;
    let args = ["--bind", "127.0.0.1:{port}", "--chdir", "{dir}"];
    let mut real = plain(
        "gunicorn (2 workers)",
        bin,
        &[&args[..], &["--workers", "2", "app:app"]].concat(),
    );
    real.files.push(("app.py", WSGI_APP.to_owned()));
    Ok(real)
}

/// PostgreSQL on a copy of a cluster made here once; as `postgres` when this runs as root (it
/// refuses to run as root).
fn postgres(scratch: &Path) -> Result<Real, String> {
    let more: Vec<String> = glob_bins("/usr/lib/postgresql");
    let more: Vec<&str> = more.iter().map(String::as_str).collect();
    let postgres = find("postgres", &more)?;
    let initdb = postgres.with_file_name("initdb");
    // SAFETY: plain syscall.
    let user = if unsafe { libc::geteuid() } == 0 {
        Some(user_ids("postgres")?)
    } else {
        None
    };
    let template = scratch.join("compare-pg-template");
    if !template.join("PG_VERSION").exists() {
        let _ = std::fs::remove_dir_all(&template);
        std::fs::create_dir_all(&template).map_err(|e| format!("postgres: {e}"))?;
        let mut cmd = Command::new(&initdb);
        cmd.arg("-D").arg(&template);
        cmd.args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
        if let Some((_, uid, gid)) = &user {
            std::os::unix::fs::chown(&template, Some(*uid), Some(*gid))
                .map_err(|e| format!("postgres: chown: {e}"))?;
            cmd.uid(*uid).gid(*gid);
        }
        let out = cmd.output().map_err(|e| format!("postgres: initdb: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&template);
            return Err(format!(
                "postgres skipped: initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let args = ["-D", "{data}", "-p", "{port}", "-k", "{data}"];
    let settings = ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"];
    let mut real = plain("PostgreSQL", postgres, &[&args[..], &settings[..]].concat());
    real.seed = Some(template);
    real.user = user;
    Ok(real)
}

fn user_ids(name: &str) -> Result<(String, u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .and_then(|f| Some((name.to_owned(), f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| format!("postgres skipped: no user {name} to run it as (we are root)"))
}

/// `<base>/<version>/bin` directories.
fn glob_bins(base: &str) -> Vec<String> {
    std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").to_string_lossy().into_owned())
        .collect()
}

fn find(program: &str, more: &[&str]) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(more.iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{program} skipped: not installed"))
}
