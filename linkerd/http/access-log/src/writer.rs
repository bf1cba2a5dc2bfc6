use crate::{Format, Record, format::LineState};
use std::{
    fmt,
    io::{self, Write},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
};

/// Where records go.
pub enum Output {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
    /// A file, opened for appending (created if missing).
    File(PathBuf),
    /// A `tracing` event per record (target `access_log`, level INFO, the formatted line as
    /// its message), sent to the dispatcher that was the default when the writer was
    /// spawned, so `tracing-subscriber` can route records.
    Tracing,
    /// Any writer (tests, custom sinks).
    Writer(Box<dyn Write + Send>),
}

/// Settings of an [`AccessLogWriter`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WriterConfig {
    /// The line format (default [`Format::Json`]).
    pub format: Format,
    /// How many records may wait for the writer thread (default 4096, at least 1). When full,
    /// records are dropped and counted, never waited for.
    pub capacity: usize,
    /// The dropped-records counter to increment (default: a fresh one). Share it with the
    /// metrics registry to report `access_log_dropped_total`.
    pub dropped: Arc<AtomicU64>,
}

/// A bounded, non-blocking record queue drained by a background thread that formats and
/// writes each record.
///
/// [`send`](Self::send) never blocks (and, given a boxed record, never allocates): a record
/// that does not fit in the queue is dropped and counted. Lines the output fails to take (an I/O error) are counted
/// as dropped too, so [`dropped`](Self::dropped) is the number of lines lost. The thread ends
/// once every clone of the writer is dropped and the queue is drained.
///
/// Cloning it (the layer does for each request, for the response body to send the record
/// when it ends) is one reference-count increment.
#[derive(Clone)]
pub struct AccessLogWriter(Arc<Handle>);

struct Handle {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

struct Shared {
    capacity: usize,
    sent: AtomicU64,
    received: AtomicU64,
    written: AtomicU64,
    dropped: Arc<AtomicU64>,
}

enum Msg {
    Record(Box<Record>),
    Flush(mpsc::Sender<()>),
}

enum Sink {
    Io(Box<dyn Write + Send>),
    Tracing(tracing::Dispatch),
}

// === impl Output ===

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdout => f.write_str("Stdout"),
            Self::Stderr => f.write_str("Stderr"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Tracing => f.write_str("Tracing"),
            Self::Writer(_) => f.write_str("Writer(..)"),
        }
    }
}

// === impl WriterConfig ===

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            format: Format::Json,
            capacity: 4096,
            dropped: Arc::default(),
        }
    }
}

impl WriterConfig {
    /// The default settings with `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            ..Self::default()
        }
    }
}

// === impl AccessLogWriter ===

impl AccessLogWriter {
    /// Opens `output` and starts the writer thread.
    ///
    /// # Errors
    /// When the file cannot be opened or the thread cannot be spawned.
    pub fn spawn(output: Output, config: WriterConfig) -> io::Result<Self> {
        let WriterConfig {
            format,
            capacity,
            dropped,
        } = config;
        let capacity = capacity.max(1);
        let sink = match output {
            Output::Stdout => Sink::Io(Box::new(io::stdout())),
            Output::Stderr => Sink::Io(Box::new(io::stderr())),
            Output::File(path) => Sink::Io(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
            Output::Writer(w) => Sink::Io(w),
            Output::Tracing => Sink::Tracing(tracing::dispatcher::get_default(Clone::clone)),
        };
        let (tx, rx) = mpsc::sync_channel(capacity);
        let shared = Arc::new(Shared {
            capacity,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            written: AtomicU64::new(0),
            dropped,
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || run(&rx, sink, &format, &thread_shared))?;
        Ok(Self(Arc::new(Handle { tx, shared })))
    }

    /// Queues `record`; returns `false` (and counts it) when the queue is full or the writer
    /// thread has stopped. Never blocks; a record given unboxed is boxed (the queue holds
    /// boxes, so a boxed record is queued without a copy or an allocation).
    pub fn send(&self, record: impl Into<Box<Record>>) -> bool {
        match self.0.tx.try_send(Msg::Record(record.into())) {
            Ok(()) => {
                self.0.shared.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.0.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Lines lost so far: queue full, writer stopped, or output errors.
    pub fn dropped(&self) -> u64 {
        self.0.shared.dropped.load(Ordering::Relaxed)
    }

    /// The dropped-records counter (shared with [`WriterConfig::dropped`]).
    pub fn dropped_counter(&self) -> &Arc<AtomicU64> {
        &self.0.shared.dropped
    }

    /// Lines written to the output so far.
    pub fn written(&self) -> u64 {
        self.0.shared.written.load(Ordering::Relaxed)
    }

    /// Records waiting in the queue (approximate while records are being sent).
    pub fn queued(&self) -> usize {
        let sent = self.0.shared.sent.load(Ordering::Relaxed);
        let received = self.0.shared.received.load(Ordering::Relaxed);
        usize::try_from(sent.saturating_sub(received)).unwrap_or(usize::MAX)
    }

    /// The queue's bound.
    pub fn capacity(&self) -> usize {
        self.0.shared.capacity
    }

    /// Blocks the calling thread until every record queued before this call is written and
    /// the output flushed; `false` if the writer thread has stopped.
    ///
    /// For shutdown and tests only: it waits for room in the queue, so it blocks as long as
    /// the output does.
    pub fn flush_blocking(&self) -> bool {
        let (ack, done) = mpsc::channel();
        if self.0.tx.send(Msg::Flush(ack)).is_err() {
            return false;
        }
        done.recv().is_ok()
    }
}

impl fmt::Debug for AccessLogWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLogWriter")
            .field("capacity", &self.0.shared.capacity)
            .field("queued", &self.queued())
            .field("dropped", &self.dropped())
            .finish()
    }
}

fn run(rx: &mpsc::Receiver<Msg>, mut sink: Sink, format: &Format, shared: &Shared) {
    // Lines are batched and written together once the queue is drained (or the batch is
    // large), so a burst costs one write; a failed write loses, and counts, the whole batch.
    let mut batch = Batch::default();
    while let Ok(msg) = rx.recv() {
        let mut next = Some(msg);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Record(record) => {
                    shared.received.fetch_add(1, Ordering::Relaxed);
                    match &mut sink {
                        Sink::Io(_) => {
                            format.write_bytes(&record, &mut batch.bytes, &mut batch.state);
                            batch.lines += 1;
                            if batch.bytes.len() >= BATCH_BYTES {
                                batch.write(&mut sink, shared);
                            }
                        }
                        Sink::Tracing(d) => {
                            // Formatting into a String cannot fail.
                            let mut text = String::with_capacity(384);
                            let _ = format.write(&record, &mut text);
                            let line = text.trim_end_matches('\n');
                            tracing::dispatcher::with_default(d, || {
                                tracing::info!(target: "access_log", "{line}");
                            });
                            shared.written.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Msg::Flush(ack) => {
                    batch.write(&mut sink, shared);
                    let _ = ack.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        batch.write(&mut sink, shared);
        // Rest before waiting on the queue again: records sent meanwhile only enqueue (no
        // thread wake-up per record), and the next pass writes them as one batch. Under load
        // this turns one futex wake and one `write` per request into one per interval.
        pause();
    }
    batch.write(&mut sink, shared);
}

const BATCH_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
    state: LineState,
}

impl Batch {
    fn write(&mut self, sink: &mut Sink, shared: &Shared) {
        if self.lines == 0 {
            return;
        }
        let ok = match sink {
            Sink::Io(w) => w.write_all(&self.bytes).and_then(|()| w.flush()).is_ok(),
            Sink::Tracing(_) => true,
        };
        let counter = if ok {
            &shared.written
        } else {
            &*shared.dropped
        };
        counter.fetch_add(self.lines, Ordering::Relaxed);
        self.bytes.clear();
        self.lines = 0;
    }
}

/// How long the writer rests between batches: bounds how stale a line can be under load.
const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

// A dedicated OS thread, never a runtime worker: sleeping here blocks nothing else.
#[allow(clippy::disallowed_methods)]
fn pause() {
    std::thread::sleep(BATCH_INTERVAL);
}
