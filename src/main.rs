use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match grapevine::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match grapevine::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grapevine: {e}");
            ExitCode::from(2)
        }
    }
}
