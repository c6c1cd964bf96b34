//! `t2s evaluate` as a standalone binary until the CLI wires the subcommand:
//! `cargo run --example t2s_evaluate -- --predictions FILE.jsonl [--json]`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: t2s::commands::evaluate::EvaluateArgs,
}

fn main() {
    let cli = Cli::parse();
    match t2s::commands::evaluate::run(&cli.args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
