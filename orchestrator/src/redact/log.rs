//! Log lines are redacted before they are written: the tracing subscriber writes through
//! `Writer`, which masks passwords in each formatted event (one `write` per event).

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Redacting stdout for `tracing_subscriber::fmt().with_writer(..)`.
#[derive(Clone, Copy, Default)]
pub struct Writer;

impl<'a> MakeWriter<'a> for Writer {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line
    }
}

pub struct Line;

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stdout()
            .lock()
            .write_all(super::text(&text).as_bytes())?;
        // The whole buffer was taken (masked), so `write_all` never splits an event.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}
