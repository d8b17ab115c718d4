//! Figures for BENCHMARKS.md, "Ready-made PostgreSQL": what `process_fixture::servers::Postgres`
//! costs. Skipped, saying so, where PostgreSQL is not installed.
//!
//! ```text
//! PF_BENCH_N=100 cargo bench -p fixtures-bin --bench postgres
//! ```
//!
//! - a fresh database from a running cluster (`database()`, then its drop), with and without a
//!   template of 20 tables;
//! - a cluster start with the `initdb` cache warm (`spawn()` to ready), and its stop;
//! - N tests each needing a database: one cluster and N databases, against N clusters.
//!
//! Nothing is asserted about time: this prints figures.

use std::time::{Duration, Instant};

use fixtures_bin::summary;
use process_fixture::servers::Postgres;
use process_fixture::Error;

fn rounds() -> usize {
    fixtures_bin::rounds(50)
}

fn schema() -> String {
    (0..20)
        .map(|i| format!("CREATE TABLE t{i} (id bigint PRIMARY KEY, name text, at timestamptz);"))
        .collect()
}

fn fresh_databases(pg: &Postgres, label: &str) -> Result<(), Error> {
    let cluster = pg.spawn()?;
    drop(cluster.database()?); // the template is made by the first one
    let (mut create, mut dropped) = (Vec::new(), Vec::new());
    for _ in 0..rounds() {
        let t = Instant::now();
        let db = cluster.database()?;
        create.push(t.elapsed());
        let t = Instant::now();
        drop(db);
        dropped.push(t.elapsed());
    }
    println!("fresh database{label}: {}", summary(&mut create));
    println!("  its drop: {}", summary(&mut dropped));
    Ok(())
}

fn cluster_starts() -> Result<(), Error> {
    drop(Postgres::new().spawn()?); // warms the initdb cache
    let (mut start, mut stop) = (Vec::new(), Vec::new());
    for _ in 0..rounds().min(30) {
        let t = Instant::now();
        let pg = Postgres::new().spawn()?;
        start.push(t.elapsed());
        let t = Instant::now();
        drop(pg);
        stop.push(t.elapsed());
    }
    println!("cluster start, initdb cache warm: {}", summary(&mut start));
    println!("  its stop: {}", summary(&mut stop));
    Ok(())
}

fn per_test(tests: usize) -> Result<(), Error> {
    let t = Instant::now();
    let cluster = Postgres::new().spawn()?;
    for _ in 0..tests {
        drop(cluster.database()?);
    }
    drop(cluster);
    let shared: Duration = t.elapsed();
    let t = Instant::now();
    for _ in 0..tests {
        let pg = Postgres::new().spawn()?;
        drop(pg.database()?);
    }
    let own = t.elapsed();
    println!(
        "{tests} tests: one cluster + a database each {:.2} s, a cluster each {:.2} s ({:.1}x)",
        shared.as_secs_f64(),
        own.as_secs_f64(),
        own.as_secs_f64() / shared.as_secs_f64()
    );
    Ok(())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let run = || -> Result<(), Error> {
        fresh_databases(&Postgres::new(), "")?;
        fresh_databases(
            &Postgres::new().template_sql(&schema()),
            " (template: 20 tables)",
        )?;
        cluster_starts()?;
        per_test(rounds().min(100))
    };
    match run() {
        Err(Error::NotInstalled { program, hint }) => println!("skipped: {program}: {hint}"),
        other => other.expect("the postgres bench"),
    }
}
