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
    /// An error at a byte span of `source`.
    pub fn at(
        file: &Path,
        source: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        let Some(span) = span else {
            return ConfigError {
                file: file.to_path_buf(),
                line: 1,
                column: 1,
                message,
                snippet: None,
            };
        };
        let start = span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_no = source[..start].matches('\n').count() + 1;
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let text = &source[line_start..line_end];
        let column = source[line_start..start].chars().count() + 1;
        let width = source[start..span.end.min(line_end).max(start)]
            .chars()
            .count()
            .max(1);
        let gutter = line_no.to_string().len();
        let snippet = format!(
            "{:gutter$} |\n{line_no} | {text}\n{:gutter$} | {}{}",
            "",
            "",
            " ".repeat(column - 1),
            "^".repeat(width),
        );
        ConfigError {
            file: file.to_path_buf(),
            line: line_no,
            column,
            message,
            snippet: Some(snippet),
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
