//! Standard output for results: buffered, and quiet when the reader goes away.
//!
//! `gdq … | head -1` closes the pipe while gdq still writes. Like other Unix tools gdq then
//! stops at once, prints nothing and exits 0; arrow's writers turn the `EPIPE` into their own
//! error text, so the writer remembers that it saw one instead of reading it back from them.

use std::io::{self, BufWriter, StdoutLock, Write};
use std::process::ExitCode;

use crate::exit::{Failure, Status};

/// Stdout that notes a closed pipe.
pub struct Stdout {
    inner: BufWriter<StdoutLock<'static>>,
    closed: bool,
}

impl Stdout {
    pub fn lock() -> Self {
        Stdout {
            inner: BufWriter::with_capacity(64 << 10, io::stdout().lock()),
            closed: false,
        }
    }

    /// The command's end: a failure caused by the closed pipe is a quiet success; otherwise
    /// what is still buffered is written.
    pub fn finish(mut self, outcome: Result<ExitCode, Failure>) -> Result<ExitCode, Failure> {
        if self.closed {
            return Ok(Status::Ok.into());
        }
        let code = outcome?;
        match self.flush() {
            Ok(()) => Ok(code),
            Err(_) if self.closed => Ok(Status::Ok.into()),
            Err(e) => Err(Failure::new(
                Status::Failed,
                format!("writing to standard output: {e}"),
            )),
        }
    }

    fn note(&mut self, e: io::Error) -> io::Error {
        if e.kind() == io::ErrorKind::BrokenPipe {
            self.closed = true;
        }
        e
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.note(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| self.note(e))
    }
}
