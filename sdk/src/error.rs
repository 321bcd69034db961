//! The error a policy returns. It crosses the WebAssembly boundary as a string, so it is one.

use crate::QueryError;
use std::fmt;

/// Why a policy could not decide, or why its settings are bad. Shown to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

/// `Result` with the policy [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error(message.to_owned())
    }
}

impl From<QueryError> for Error {
    fn from(error: QueryError) -> Self {
        Error(match error {
            QueryError::NotGranted(what) => format!("query refused: {what} is not granted"),
            QueryError::Unknown(what) => format!("query failed: {what} is unknown"),
        })
    }
}
