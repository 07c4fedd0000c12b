//! autopilotctl (placeholder while the library compiles).
