use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A TLS file that cannot be used, and why: a Python exception names both.
#[derive(Debug)]
pub struct TlsError {
    pub file: PathBuf,
    pub problem: Problem,
}

#[derive(Debug)]
pub enum Problem {
    /// The file cannot be read (missing, no permission...).
    Unreadable(io::Error),
    /// The file was read; its content is not usable.
    Invalid(String),
}

impl TlsError {
    pub fn unreadable(file: &Path, error: io::Error) -> Self {
        Self {
            file: file.to_owned(),
            problem: Problem::Unreadable(error),
        }
    }

    pub fn invalid(file: &Path, problem: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            problem: Problem::Invalid(problem.into()),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::Unreadable(error) => write!(f, "{}: {error}", self.file.display()),
            Problem::Invalid(problem) => write!(f, "{}: {problem}", self.file.display()),
        }
    }
}
