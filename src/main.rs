use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap prints its own errors (with usage, "a similar argument exists" tips and possible
    // values) and exits 2; --help and --version exit 0.
    let cli = grapevine::cli::Cli::parse();
    match grapevine::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grapevine: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
