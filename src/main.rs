use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match grapevine::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line that names the flag, as operators' scripts expect.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("grapevine: {first}");
            return ExitCode::from(2);
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
