//! `RunbookError`: a refused runbook, pointing at file, line and column, showing the offending
//! line with a caret, and saying what to fix.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunbookError {
    pub file: PathBuf,
    /// 1-based; 0 when the error is about the file as a whole.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    /// The source line and a caret under the span, when known.
    pub snippet: Option<String>,
}

impl RunbookError {
    /// An error at a byte span of `source` (`None`: the start of the file).
    pub fn at(
        file: &Path,
        source: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        let span = span.unwrap_or(0..0);
        let start = floor_char_boundary(source, span.start.min(source.len()));
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_no = source[..start].matches('\n').count() + 1;
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let text = source[line_start..line_end].trim_end_matches('\r');
        let column = source[line_start..start].chars().count() + 1;
        let end = floor_char_boundary(source, span.end.min(line_end).max(start));
        let width = source[start..end].chars().count().max(1);
        let gutter = line_no.to_string().len();
        let snippet = format!(
            "{:gutter$} |\n{line_no} | {text}\n{:gutter$} | {}{}",
            "",
            "",
            " ".repeat(column - 1),
            "^".repeat(width),
        );
        RunbookError {
            file: file.to_path_buf(),
            line: line_no,
            column,
            message,
            snippet: Some(snippet),
        }
    }

    /// An error about the file as a whole (unreadable, ...).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        RunbookError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
            snippet: None,
        }
    }

    /// The error toml reported while reading the text (syntax, unknown key, wrong type).
    pub(crate) fn from_toml(file: &Path, source: &str, e: &toml::de::Error) -> Self {
        let message = tidy_toml_message(e.message().trim_end());
        match e.span() {
            Some(span) => Self::at(file, source, Some(span), message),
            None => RunbookError {
                file: file.to_path_buf(),
                line: 0,
                column: 0,
                message,
                snippet: None,
            },
        }
    }
}

/// serde lists every key the flat step table knows, which misleads more than it helps:
/// suggest the nearest key instead, and keep the list only when it is short.
fn tidy_toml_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let nearest = candidates
        .iter()
        .map(|c| (edit_distance(field, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min();
    match nearest {
        Some((_, c)) => format!("unknown field `{field}`; did you mean `{c}`?"),
        None if candidates.len() <= 10 && !candidates.is_empty() => format!(
            "unknown field `{field}`; expected one of {}",
            candidates.join(", ")
        ),
        None => format!("unknown field `{field}`; remove it or check the step kind's parameters"),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for RunbookError {
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

impl std::error::Error for RunbookError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_and_column() {
        let src = "a = 1\nservice = \"khartom\"\n";
        let start = src.find("\"khartom").unwrap();
        let e = RunbookError::at(
            Path::new("x.toml"),
            src,
            Some(start..start + 9),
            "unknown service",
        );
        assert_eq!((e.line, e.column), (2, 11));
        let shown = e.to_string();
        assert!(shown.starts_with("x.toml:2:11: unknown service"), "{shown}");
        assert!(shown.contains("2 | service = \"khartom\""), "{shown}");
        assert!(shown.contains("          ^^^^^^^^^"), "{shown}");
    }

    #[test]
    fn unknown_field_suggests_the_nearest() {
        let long = "unknown field `max_lagg`, expected one of `id`, `kind`, `description`, `timeout`, `retries`, `backoff`, `verify`, `rollback`, `irreversible`, `reason`, `max_lag_bytes`";
        assert_eq!(
            tidy_toml_message(long),
            "unknown field `max_lagg`; remove it or check the step kind's parameters"
        );
        let near = "unknown field `timout`, expected one of `id`, `timeout`";
        assert_eq!(
            tidy_toml_message(near),
            "unknown field `timout`; did you mean `timeout`?"
        );
        let short = "unknown field `x`, expected `lag_bytes` or `lag_seconds`";
        assert_eq!(
            tidy_toml_message(short),
            "unknown field `x`; expected one of lag_bytes, lag_seconds"
        );
        assert_eq!(tidy_toml_message("expected a string"), "expected a string");
    }
}
