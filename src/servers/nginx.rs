//! [`Nginx`]: nginx serving a `server {}` block of yours on a port of its own.

use crate::builder::Builder;
use crate::error::Error;
use crate::ready::Ready;

use super::handle::Server;
use super::lookup;

/// nginx in the foreground (`daemon off`), logging to stderr, with its pid file and temporary
/// paths in the fixture's directory, serving one `server {}` on `127.0.0.1:{port}` whose body
/// is yours. Without a `location /` of yours, `/` answers 200 `ok`, so that `Ready::http("/")`
/// (the readiness used) works. `{port}`, `{port:NAME}` and `{dir}` are filled in. `nginx`
/// from `$NGINX`, `PATH`, `/usr/sbin` or `/usr/local/sbin`.
///
/// ```
/// use process_fixture::servers::Nginx;
/// # if Nginx::new().builder().is_err() { return Ok(()); }
/// let web = Nginx::with_config("location /hello { return 200 'hi'; }").spawn()?;
/// assert!(web.url().starts_with("http://127.0.0.1:"));
/// # Ok::<(), process_fixture::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Nginx {
    server: String,
    http: String,
    workers: usize,
}

impl Nginx {
    /// `/` answers 200, one worker.
    pub fn new() -> Nginx {
        Nginx::with_config("")
    }

    /// With `server` as the body of the `server {}` block (locations, `root {dir}/www`, …).
    pub fn with_config(server: &str) -> Nginx {
        Nginx {
            server: server.to_owned(),
            http: String::new(),
            workers: 1,
        }
    }

    /// Directives for the `http {}` block, outside the server (an `upstream`, a `map`).
    pub fn http(mut self, directives: &str) -> Nginx {
        self.http = directives.to_owned();
        self
    }

    /// How many worker processes (`worker_processes`).
    pub fn workers(mut self, n: usize) -> Nginx {
        self.workers = n.max(1);
        self
    }

    /// The whole `nginx.conf` this writes into the fixture's directory.
    pub fn config(&self) -> String {
        let root = regex::Regex::new(r"location\s+(=\s*)?/\s*\{").expect("a valid pattern");
        let default = match root.is_match(&self.server) {
            true => "",
            false => "location / { default_type text/plain; return 200 \"ok\\n\"; }",
        };
        format!(
            "daemon off;\nworker_processes {};\npid {{dir}}/nginx.pid;\nerror_log stderr notice;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {{dir}}/client_body;\n    \
             proxy_temp_path {{dir}}/proxy;\n    fastcgi_temp_path {{dir}}/fastcgi;\n    \
             uwsgi_temp_path {{dir}}/uwsgi;\n    scgi_temp_path {{dir}}/scgi;\n    {}\n    \
             server {{\n        listen 127.0.0.1:{{port}};\n        {}\n        {default}\n    }}\n}}\n",
            self.workers, self.http, self.server
        )
    }

    /// The builder this makes: change anything before spawning it yourself.
    pub fn builder(&self) -> Result<Builder, Error> {
        let bin = lookup::program(
            "nginx",
            "NGINX",
            &["/usr/sbin", "/usr/local/sbin", "/opt/homebrew/bin"],
            "nginx (apt-get install nginx-light, brew install nginx)",
        )?;
        let mut b = Builder::new(bin);
        b.file("nginx.conf", self.config())
            .args(["-p", "{dir}", "-c", "{dir}/nginx.conf", "-e", "stderr"])
            .ready(Ready::http("/"));
        Ok(b)
    }

    /// A server for this test alone.
    pub fn spawn(&self) -> Result<Server, Error> {
        Ok(Server::own(self.builder()?.spawn()?, "http://"))
    }

    /// The run's server for this configuration.
    pub fn spawn_shared(&self) -> Result<Server, Error> {
        let key = format!(
            "process-fixture-nginx {:016x}",
            crate::text::fnv1a(self.config().as_bytes())
        );
        Ok(Server::shared_of(
            self.builder()?.spawn_shared(&key)?,
            "http://",
        ))
    }
}
