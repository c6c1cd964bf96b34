//! `t2s-worker <spec.json>`: runs one job of the libtorch worker and reports JSON-lines events
//! on stdout (see `t2s::worker::protocol`). Exit status 0 with one `result` event on success;
//! an `error` event and status 1 on failure; 2 for a usage error.
fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(t2s_torch::jobs::main_entry(&args));
}
