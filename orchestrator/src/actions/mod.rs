//! Actions on infrastructure: each idempotent, each able to check the world before acting.
//!
//! Every action takes plain parameters (addresses, credentials, names), returns what it did
//! (before → after, timings) and has an observe/check side used for in-doubt steps after a
//! crash; `rollback` (or the same action with old and new exchanged) undoes it.

mod atomic_file;
pub mod checks;
pub mod connstr;
pub mod dns;
pub mod pgbouncer;
pub mod postgres;
pub mod redis;
