//! Just enough of PostgreSQL's frontend/backend protocol (version 3, simple queries, trust
//! authentication) to create and drop databases: no client library, no `psql` process per
//! statement (a `psql` costs more than the `CREATE DATABASE` it would send).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// One connection, as the superuser `postgres`, to one database.
pub(super) struct Session(TcpStream);

/// What a query returned: each row's columns (`None` for NULL).
pub(super) type Rows = Vec<Vec<Option<String>>>;

impl Session {
    /// Connects to `127.0.0.1:port` and logs in to `database` (trust: no password).
    pub(super) fn connect(port: u16, database: &str, timeout: Duration) -> io::Result<Session> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut session = Session(stream);
        let mut body = 196_608u32.to_be_bytes().to_vec(); // protocol 3.0
        for part in ["user", "postgres", "database", database, ""] {
            body.extend_from_slice(part.as_bytes());
            body.push(0);
        }
        session.send(None, &body)?;
        session.until_ready().map_err(io::Error::other)?;
        Ok(session)
    }

    /// Runs `sql` (one or more statements) and returns the rows of the last result; a
    /// server error as its message.
    pub(super) fn query(&mut self, sql: &str) -> Result<Rows, String> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send(Some(b'Q'), &body).map_err(|e| e.to_string())?;
        self.until_ready()
    }

    fn send(&mut self, tag: Option<u8>, body: &[u8]) -> io::Result<()> {
        let mut msg = Vec::with_capacity(body.len() + 5);
        msg.extend(tag);
        msg.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        msg.extend_from_slice(body);
        self.0.write_all(&msg)
    }

    fn recv(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        self.0.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if !(4..=64 << 20).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad message length",
            ));
        }
        let mut body = vec![0u8; len - 4];
        self.0.read_exact(&mut body)?;
        Ok((head[0], body))
    }

    /// Reads until `ReadyForQuery`: the rows, or the first error.
    fn until_ready(&mut self) -> Result<Rows, String> {
        let (mut rows, mut error) = (Vec::new(), None);
        loop {
            let (tag, body) = self.recv().map_err(|e| e.to_string())?;
            match tag {
                b'Z' => return error.map_or(Ok(rows), Err),
                b'T' => rows.clear(),
                b'D' => rows.push(data_row(&body).ok_or("a malformed row")?),
                b'E' => error = Some(error_message(&body)),
                b'R' if body.get(..4) != Some(&[0, 0, 0, 0]) => {
                    return Err("the server asks for a password (not a trust cluster)".into())
                }
                _ => {} // AuthenticationOk, ParameterStatus, BackendKeyData, CommandComplete, notices
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.send(Some(b'X'), &[]); // Terminate: the backend exits at once
    }
}

fn data_row(body: &[u8]) -> Option<Vec<Option<String>>> {
    let n = u16::from_be_bytes(body.get(..2)?.try_into().ok()?) as usize;
    let mut at = 2;
    let mut row = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        if len < 0 {
            row.push(None);
            continue;
        }
        let value = body.get(at..at + len as usize)?;
        row.push(Some(String::from_utf8_lossy(value).into_owned()));
        at += len as usize;
    }
    Some(row)
}

/// The `M` (message) field of an ErrorResponse, with its `C` (SQLSTATE) code.
fn error_message(body: &[u8]) -> String {
    let mut fields = body.split(|&b| b == 0).filter(|f| !f.is_empty());
    let (mut message, mut code) = (String::new(), String::new());
    for field in fields.by_ref() {
        let text = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'M' => message = text,
            b'C' => code = text,
            _ => {}
        }
    }
    format!("{message} (SQLSTATE {code})")
}
