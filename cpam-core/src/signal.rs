//! Process signals for programs that embed cpam.

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Writes to standard output for a command-line program ([`outln!`],
/// [`out!`]): a reader that went away (`cpam-server audit list | head -1`)
/// ends the program quietly with status 0 where `println!` would panic;
/// another write error is reported on standard error and ends it with
/// status 1.
///
/// [`outln!`]: crate::outln
/// [`out!`]: crate::out
pub fn write_stdout(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(1)
        }
    }
}

/// `println!` for command-line programs: never panics on a closed pipe
/// (see [`signal::write_stdout`](crate::signal::write_stdout)).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::signal::write_stdout(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::signal::write_stdout(format_args!($($arg)*), true)
    };
}

/// `print!` for command-line programs: never panics on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::signal::write_stdout(format_args!($($arg)*), false)
    };
}
