//! The `entidb` shell: statements and dot-commands from a terminal, a pipe
//! or `-c`, results in the output modes of `render.rs`.
//!
//! `input.rs` splits the input into items as it arrives, `statement.rs`
//! classifies statements, `driver.rs` runs an item on the session and
//! reports failures (`report.rs`), `dot.rs` and `import.rs` are the
//! dot-commands, `repl.rs` the input loops, `open.rs` which paths may
//! become databases.

mod dot;
mod driver;
mod failure;
mod import;
mod input;
mod render;
mod repl;
mod report;
mod sql_type;
mod statement;

pub use dot::HELP;
pub use driver::{Settings, Shell, Stop, TERMINAL_ROWS, open_database};
pub use failure::Failure;
pub use input::{Item, Splitter};
pub use render::{Mode, Style};
pub use repl::{run_commands, run_stream, run_terminal};
