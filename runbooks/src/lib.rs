//! runbooks
