use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(weir::cli::main())
}
