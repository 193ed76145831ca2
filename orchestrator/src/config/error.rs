//! Config errors that point at the file, line and column, show the offending line, and say
//! what to fix. They are rendered exactly like runbook and drill errors: one error type for every
//! file niledr reads.

pub use niledr_runbooks::RunbookError as ConfigError;
