//! Everything the process logs, into one buffer: a `MakeWriter` and the one
//! process-wide subscriber writing to it, shared by the test files that read
//! their own logs (`#[path = "common/log_capture.rs"] mod log_capture;`).
//! (Thread-local `set_default` subscribers race on tracing's global callsite
//! interest cache when tests run in parallel, so they can miss lines.)

use std::sync::{Arc, Mutex};

/// A `MakeWriter` collecting everything logged.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// The process-wide subscriber at `level` writing to one buffer, installed
/// by the first caller (later callers share it, whatever level they ask).
pub fn capture_logs(level: tracing::Level) -> Capture {
    static CAP: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAP.get_or_init(|| {
        let cap = Capture::default();
        let sub = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(cap.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(sub).expect("first subscriber");
        cap
    })
    .clone()
}
