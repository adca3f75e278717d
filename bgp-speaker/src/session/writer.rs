//! The writing half of a session: a task of its own that owns the socket's write half and
//! writes what the session task queues, so a peer that stops reading stalls only this task.
//!
//! The session task never waits on it. It reads how many bytes are queued (and holds back
//! route updates above [`HIGH_WATER`], which then merge into one diff once the queue drains), is
//! woken when the queue drains or the connection fails, and drops a peer that accepted no byte
//! for its hold time ([`Writer::stalled_for`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;

/// Queued bytes above which route updates wait for the queue to drain.
pub const HIGH_WATER: usize = 1 << 20;
/// How long the last bytes (a NOTIFICATION) get once the session closes.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the writer task and the session task share.
struct Shared {
    /// Bytes queued and not yet accepted by the kernel.
    queued: AtomicUsize,
    /// When the kernel last accepted bytes (or the queue was last empty), in milliseconds
    /// since `epoch`.
    progress_ms: AtomicU64,
    epoch: Instant,
    failed: AtomicBool,
    /// Woken when the queue drains or the connection fails.
    wake: Arc<Notify>,
}

impl Shared {
    fn touch(&self) {
        self.progress_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// The session task's handle on its writer; dropping it lets queued bytes go for a moment,
/// then closes the connection.
pub struct Writer {
    queue: Option<mpsc::UnboundedSender<Vec<u8>>>,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn spawn(half: OwnedWriteHalf) -> Self {
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            progress_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            failed: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_loop(half, rx, shared.clone()));
        Self {
            queue: Some(tx),
            shared,
            task: Some(task),
        }
    }

    /// Queues `bytes`; false when the connection has failed.
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        if self.failed() || bytes.is_empty() {
            return !self.failed();
        }
        if self.shared.queued.fetch_add(bytes.len(), Ordering::Relaxed) == 0 {
            // Stall time counts from when bytes start waiting.
            self.shared.touch();
        }
        let len = bytes.len();
        match &self.queue {
            Some(queue) if queue.send(bytes).is_ok() => true,
            _ => {
                self.shared.queued.fetch_sub(len, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Whether route updates should wait for the queue to drain.
    pub fn backlogged(&self) -> bool {
        self.queued() > HIGH_WATER
    }

    /// How long bytes have been waiting without the peer taking any; zero when none wait.
    pub fn stalled_for(&self) -> Duration {
        if self.queued() == 0 {
            return Duration::ZERO;
        }
        let now = self.shared.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.shared.progress_ms.load(Ordering::Relaxed)))
    }

    /// When [`Self::stalled_for`] reaches `bound`, if bytes are waiting.
    pub fn stall_deadline(&self, bound: Duration) -> Option<Instant> {
        (self.queued() > 0).then(|| {
            self.shared.epoch
                + Duration::from_millis(self.shared.progress_ms.load(Ordering::Relaxed))
                + bound
        })
    }

    /// Notified when the queue drains or the connection fails (held apart from the writer so
    /// the session task can wait on it while it reads).
    pub fn waker(&self) -> Arc<Notify> {
        self.shared.wake.clone()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the loop once it is written; a peer that does not take it
        // within the grace loses it (the connection closes either way).
        self.queue = None;
        if let Some(task) = self.task.take() {
            tokio::spawn(async move {
                let abort = task.abort_handle();
                if tokio::time::timeout(CLOSE_GRACE, task).await.is_err() {
                    abort.abort();
                }
            });
        }
    }
}

async fn write_loop(
    mut half: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    while let Some(bytes) = queue.recv().await {
        let mut at = 0;
        while at < bytes.len() {
            match half.write(&bytes[at..]).await {
                Ok(n) if n > 0 => {
                    at += n;
                    shared.touch();
                    if shared.queued.fetch_sub(n, Ordering::Relaxed) == n {
                        shared.wake.notify_one();
                    }
                }
                result => {
                    debug!("write failed: {result:?}");
                    shared.failed.store(true, Ordering::Relaxed);
                    shared.wake.notify_one();
                    return;
                }
            }
        }
    }
    let _ = half.shutdown().await;
}
