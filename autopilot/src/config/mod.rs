//! Configuration: YAML → raw serde structs → validated [`Config`].
//!
//! Every error names the file, line, column and field and says what was expected.

mod error;
mod locate;
mod model;

pub use error::{ConfigError, Problem};
pub use model::*;
