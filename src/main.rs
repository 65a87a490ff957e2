//! The `sshjit` binary: the command line (`cli`) over the library.

mod cli;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(cli::main())
}
