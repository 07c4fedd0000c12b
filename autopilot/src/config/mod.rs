//! Configuration: YAML → raw serde structs → validated [`Config`].
//!
//! Every error names the file, line, column and field and says what was expected.

mod model;

pub use model::*;
