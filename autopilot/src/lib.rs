//! The Autopilot agent as a library; `main.rs` only parses the CLI and calls [`cli::main`].

pub mod config;
pub mod role;
