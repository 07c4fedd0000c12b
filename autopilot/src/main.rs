//! The `autopilot` binary: everything lives in the library so tests can drive it.

fn main() {
    std::process::exit(autopilot::cli::main());
}
