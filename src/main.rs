//! The `hookrelay` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    hookrelay::cli::main()
}
