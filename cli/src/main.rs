//! `process-fixture`: the crate's guarantees for any test suite. `run` starts servers, waits
//! until they are ready, runs the test command with their ports, and stops everything; `up`
//! starts them for a look by hand. See `process-fixture --help` and the README.
//!
//! Files: [`args`] the command line; [`run`] the servers and the test command; [`signals`]
//! SIGINT and SIGTERM as messages.

mod args;
mod run;
mod signals;

use clap::Parser;

fn main() {
    let signals = signals::listen();
    let cli = args::Cli::parse(); // usage errors: exit 2
    let code = match cli.command {
        args::Command::Run {
            servers,
            fail_on_server_exit,
            command,
        } => run::run(&servers, &command, fail_on_server_exit, &signals),
        args::Command::Up { servers } => run::up(&servers, &signals),
    };
    std::process::exit(code)
}
