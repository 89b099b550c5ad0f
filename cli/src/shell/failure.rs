//! Why a shell command did not complete.

use std::fmt;

/// A failed statement or dot-command. The shell prints it and goes on
/// (unless `-bail`); [`Failure::BrokenPipe`] ends the session quietly.
#[derive(Debug)]
pub enum Failure {
    /// A SQL error, with the statement text it came from.
    Sql(entidb::Error),
    /// The reader of standard output went away (`| head`).
    BrokenPipe,
    /// Anything else: I/O, bad dot-command arguments, formatting.
    Other(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Sql(e) => write!(f, "{e}"),
            Failure::BrokenPipe => write!(f, "broken pipe"),
            Failure::Other(m) => write!(f, "{m}"),
        }
    }
}

impl From<entidb::Error> for Failure {
    fn from(e: entidb::Error) -> Self {
        Failure::Sql(e)
    }
}

impl From<datafusion::error::DataFusionError> for Failure {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Failure::Sql(entidb::Error::from(e))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::Other(e.to_string())
        }
    }
}

impl From<arrow::error::ArrowError> for Failure {
    fn from(e: arrow::error::ArrowError) -> Self {
        match e {
            arrow::error::ArrowError::IoError(_, io) => Failure::from(io),
            other => Failure::Other(other.to_string()),
        }
    }
}
