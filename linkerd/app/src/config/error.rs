use std::{fmt, path::PathBuf};

/// One problem in a config file: where it is and what is wrong.
///
/// `Display` gives `FILE:LINE:COLUMN: FIELD.PATH: message`, the form editors and CI logs link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (`<embedded>` for the built-in default).
    pub file: PathBuf,
    /// 1-based line of the offending value (0 when unknown, e.g. the file is unreadable).
    pub line: usize,
    /// 1-based column of the offending value (0 when unknown).
    pub column: usize,
    /// The field path, e.g. `routes[0].rules[1].backendRefs[0].name`; empty for the document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a config file, reported together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
