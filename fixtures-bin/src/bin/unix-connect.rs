//! `unix-connect PATH`: connects to the unix socket at PATH and prints `connected`, or the
//! error number (`13` for EACCES). Used to show that another user cannot reach a shared
//! server's rendezvous.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: unix-connect PATH");
        std::process::exit(2)
    };
    match std::os::unix::net::UnixStream::connect(&path) {
        Ok(_) => println!("connected"),
        Err(e) => println!("{}", e.raw_os_error().unwrap_or(-1)),
    }
}
