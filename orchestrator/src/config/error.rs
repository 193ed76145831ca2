//! Config errors that point at the file, line and column, show the offending line, and say
//! what to fix.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The source line and a caret under the span, when known.
    snippet: Option<String>,
}

impl ConfigError {
    /// An error at a byte span of `source` (rendered like a runbook error: one renderer for
    /// every file niledr reads).
    pub fn at(
        file: &Path,
        source: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        let e = niledr_runbooks::RunbookError::at(file, source, span, message);
        ConfigError {
            file: e.file,
            line: e.line,
            column: e.column,
            message: e.message,
            snippet: e.snippet,
        }
    }

    /// An error about the file as a whole (unreadable, ...).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
            snippet: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(s) = &self.snippet {
            write!(f, "\n{s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_and_column() {
        let src = "a = 1\nsite = \"khartom\"\n";
        let start = src.find("\"khartom").unwrap_or(0);
        let e = ConfigError::at(
            Path::new("x.toml"),
            src,
            Some(start..start + 9),
            "unknown site",
        );
        assert_eq!((e.line, e.column), (2, 8));
        let shown = e.to_string();
        assert!(shown.starts_with("x.toml:2:8: unknown site"), "{shown}");
        assert!(shown.contains("2 | site = \"khartom\""), "{shown}");
        assert!(shown.contains("^^^^^^^^^"), "{shown}");
    }
}
