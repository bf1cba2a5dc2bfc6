use crate::{Format, Record, format::LineState};
use std::{
    borrow::Borrow,
    cell::RefCell,
    fmt,
    io::{self, Write},
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
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
    /// How many formatted lines may wait for the writer thread (default 4096, at least 1).
    /// When full, records are dropped and counted, never waited for.
    pub capacity: usize,
    /// The dropped-records counter to increment (default: a fresh one). Share it with the
    /// metrics registry to report `access_log_dropped_total`.
    pub dropped: Arc<AtomicU64>,
}

/// Formats each record on the thread that sends it, into a bounded buffer of lines that a
/// background thread writes out in batches.
///
/// [`send`](Self::send) never blocks on the output and never allocates once the buffers have
/// grown: the line is formatted into a per-thread scratch buffer and appended to the shared
/// one under a lock held for the copy. A record that finds `capacity` lines already waiting
/// is dropped and counted. Lines the output fails to take (an I/O error) are counted as
/// dropped too, so [`dropped`](Self::dropped) is the number of lines lost. The thread ends
/// once every clone of the writer is dropped and the buffer is written.
///
/// Formatting where the record ends (as nginx does) rather than on the writer thread keeps
/// the thread's turns short: on a proxy pinned to one core, a thread that formatted a whole
/// batch took the core from the request path for a few hundred microseconds every few
/// milliseconds, which showed in the latency tail.
///
/// Cloning it (the layer does for each request, for the response body to send the record
/// when it ends) is one reference-count increment.
#[derive(Clone)]
pub struct AccessLogWriter(Arc<Handle>);

/// Dropped with the last clone of the writer: tells the thread to finish.
struct Handle {
    shared: Arc<Shared>,
    format: Format,
    thread: std::thread::Thread,
}

struct Shared {
    capacity: usize,
    /// Lines formatted and not yet taken by a writer.
    pending: Mutex<Lines>,
    /// The output; held by whoever writes a batch (the thread, or `flush_blocking`), taken
    /// before the batch so batches reach the output in the order they were made.
    out: Mutex<Out>,
    /// Every handle is gone: the thread writes what is left and ends.
    closed: AtomicBool,
    /// The thread has ended (it only does so once closed, or by a panic).
    stopped: AtomicBool,
    written: AtomicU64,
    dropped: Arc<AtomicU64>,
}

#[derive(Default)]
struct Lines {
    bytes: Vec<u8>,
    count: u64,
}

enum Sink {
    Io(Box<dyn Write + Send>),
    Tracing(tracing::Dispatch),
}

/// The output and the buffer the last batch was written from, swapped with the pending one
/// for the next batch: both keep their capacity, so a steady load reallocates nothing.
struct Out {
    sink: Sink,
    spare: Vec<u8>,
}

thread_local! {
    /// Each sending thread's formatting buffer and line state (the cached timestamp).
    static SCRATCH: RefCell<(Vec<u8>, LineState)> = RefCell::new((Vec::with_capacity(512), LineState::default()));
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
        let shared = Arc::new(Shared {
            capacity,
            pending: Mutex::new(Lines::default()),
            out: Mutex::new(Out {
                sink,
                spare: Vec::new(),
            }),
            closed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            written: AtomicU64::new(0),
            dropped,
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || run(&thread_shared))?
            .thread()
            .clone();
        Ok(Self(Arc::new(Handle {
            shared,
            format,
            thread,
        })))
    }

    /// Formats `record` and queues the line; returns `false` (and counts it) when
    /// `capacity` lines are already waiting. Never blocks on the output.
    pub fn send(&self, record: impl Borrow<Record>) -> bool {
        let handle = &*self.0;
        let shared = &*handle.shared;
        SCRATCH.with_borrow_mut(|(line, state)| {
            line.clear();
            handle.format.write_bytes(record.borrow(), line, state);
            let mut pending = shared.pending();
            if pending.count >= shared.capacity as u64 {
                drop(pending);
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            pending.bytes.extend_from_slice(line);
            pending.count += 1;
            let first = pending.count == 1;
            drop(pending);
            // The thread waits for the first line of a batch only: later ones find it
            // gathering (or writing) and go out with that batch.
            if first {
                handle.thread.unpark();
            }
            true
        })
    }

    /// Lines lost so far: buffer full, or output errors.
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

    /// Lines waiting to be written (not counting a batch being written).
    pub fn queued(&self) -> usize {
        usize::try_from(self.0.shared.pending().count).unwrap_or(usize::MAX)
    }

    /// The bound on waiting lines.
    pub fn capacity(&self) -> usize {
        self.0.shared.capacity
    }

    /// Blocks the calling thread until every line queued before this call is written (it
    /// writes them itself, after any batch being written) and the output flushed; `false`
    /// if the writer thread has stopped. Lines the output fails to take are counted as
    /// dropped, as the thread's are.
    ///
    /// For shutdown and tests only: it blocks as long as the output does.
    pub fn flush_blocking(&self) -> bool {
        self.0.shared.write_pending();
        !self.0.shared.stopped.load(Ordering::Acquire)
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

// === impl Handle ===

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

// === impl Shared ===

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Lines> {
        // A panic while appending cannot leave a half line: the bytes are extended in one
        // call, after formatting.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the waiting lines as one batch; `false` if the output failed (the batch's
    /// lines are counted as dropped).
    fn write_pending(&self) -> bool {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let Out { sink, spare } = &mut *out;
        let count = {
            let mut pending = self.pending();
            if pending.count == 0 {
                return true;
            }
            std::mem::swap(&mut pending.bytes, spare);
            // Room for a batch like this one, so the next does not grow its buffer line by
            // line (the writer may take a batch half-made, so the two buffers would not both
            // reach a full batch's size otherwise).
            pending.bytes.reserve(spare.len());
            std::mem::take(&mut pending.count)
        };
        let ok = match sink {
            Sink::Io(w) => w.write_all(spare).and_then(|()| w.flush()).is_ok(),
            Sink::Tracing(d) => {
                for line in spare.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let line = String::from_utf8_lossy(line);
                    tracing::dispatcher::with_default(d, || {
                        tracing::info!(target: "access_log", "{line}");
                    });
                }
                true
            }
        };
        spare.clear();
        let counter = if ok { &self.written } else { &*self.dropped };
        counter.fetch_add(count, Ordering::Relaxed);
        ok
    }
}

/// Marks the thread stopped when `run` returns or unwinds.
struct Stopped<'a>(&'a AtomicBool);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn run(shared: &Shared) {
    let _stopped = Stopped(&shared.stopped);
    loop {
        if shared.pending().count == 0 {
            if shared.closed.load(Ordering::Acquire) {
                return;
            }
            // Woken by the first line of a batch, or by the last handle going away (a
            // wake-up that came first makes this return at once).
            std::thread::park();
            continue;
        }
        // Let the batch gather: lines sent meanwhile are only appended (no wake-up, no
        // write of their own), so under load one `write` carries an interval's lines.
        if !shared.closed.load(Ordering::Acquire) {
            pause();
        }
        shared.write_pending();
    }
}

/// How long the writer rests between batches: bounds how stale a line can be under load.
const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

// A dedicated OS thread, never a runtime worker: sleeping here blocks nothing else.
#[allow(clippy::disallowed_methods)]
fn pause() {
    std::thread::sleep(BATCH_INTERVAL);
}
