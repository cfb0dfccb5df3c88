//! The `sombrero` binary: everything lives in the library; this is the process edge.

fn main() -> std::process::ExitCode {
    pink_sombrero::cli::main()
}
