//! Configuration: YAML → raw serde structs → validated [`Config`].
//!
//! Every error names the file, line, column and field and says what was expected.

mod model;

pub use model::*;
// TEMP until the config branch lands
pub fn load(_p: &std::path::Path) -> Result<Config, String> { Err("x".into()) }
impl Config { pub fn to_effective_yaml(&self) -> String { String::new() } }
