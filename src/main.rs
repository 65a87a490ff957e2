//! The `sshjit` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(sshjit::cli::main())
}
