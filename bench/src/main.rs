//! `bench`: measures what BENCHMARKS.md reports, prints a table, and rewrites its section of
//! BENCHMARKS.md. All logic is in the library ([`bench::cli`]).

fn main() -> std::process::ExitCode {
    bench::cli::main()
}
