//! The log writer: standard error, with log lines drawn above the progress
//! bar of `gaze run` while one is shown, so the two never mix.

use std::io::{self, Write};
use std::sync::{Mutex, OnceLock};

use indicatif::ProgressBar;
use tracing_subscriber::fmt::MakeWriter;

/// The progress bar on screen, if any.
static BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

/// Makes log lines go above `bar` until [`clear_bar`] is called.
pub fn set_bar(bar: &ProgressBar) {
    let slot = BAR.get_or_init(|| Mutex::new(None));
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
}

/// Makes log lines go straight to standard error again.
pub fn clear_bar() {
    if let Some(slot) = BAR.get() {
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A `tracing` writer factory for standard error that respects the bar.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

/// One log line's writer: buffers the line and writes it whole on drop.
pub struct LineWriter {
    buffer: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let bar = BAR
            .get()
            .and_then(|slot| slot.lock().ok().and_then(|bar| bar.clone()));
        let write = || {
            // A log line that cannot be written has nowhere else to go.
            let _ = io::stderr().lock().write_all(&self.buffer);
        };
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { buffer: Vec::new() }
    }
}
