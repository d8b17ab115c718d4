//! Ready-made fixtures for the servers tests need most: [`Postgres`] (a fresh database per
//! test in milliseconds, from one cluster per run), [`Redis`] and [`Nginx`]. Each finds its
//! binaries, writes what the server needs, and waits for the right readiness signal; each
//! exposes its [`Builder`](crate::Builder), so anything can still be changed.
//!
//! ```no_run
//! use process_fixture::servers::Postgres;
//! let pg = Postgres::shared()?;   // one cluster for the run, across nextest's processes too
//! let db = pg.database()?;        // a fresh, empty database of its own
//! println!("{}", db.url());       // postgres://postgres@127.0.0.1:PORT/NAME
//! // drop(db): the database is dropped; the cluster stops after the run's last user
//! # Ok::<(), process_fixture::Error>(())
//! ```

mod handle;
mod lookup;
mod nginx;
mod pg_wire;
mod postgres;
mod redis;

pub use handle::Server;
pub use nginx::Nginx;
pub use postgres::{Database, Postgres, PostgresServer};
pub use redis::Redis;
