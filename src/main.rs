//! The `t2s` binary: parse the command line, set up logging, dispatch, map to an exit code
//! (0 ok, 1 failure, 2 usage or configuration error).

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Die quietly on a closed pipe (`t2s show 3 | head`) like other Unix tools, instead of
    // panicking in `println!`.
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = t2s::cli::Cli::parse();
    init_logging(cli.verbose);
    t2s::commands::dispatch(cli)
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}
