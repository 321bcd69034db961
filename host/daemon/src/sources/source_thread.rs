//! What every event source shares: a named thread, a stop request that wakes the thread's waits
//! at once, a join that never hangs the daemon, and the retry backoff.
//!
//! Each source (devd, `hastctl` polling, keepalived's FIFO) reads on a thread of its own and
//! hands what it hears to a sink; this module is the life cycle around that loop, so the
//! sources only say what they read.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long stopping a source waits for its thread before leaving it behind.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// A running source thread. Dropping it stops the thread, like [`SourceThread::stop`].
#[derive(Debug)]
pub struct SourceThread {
    name: &'static str,
    /// Dropping it asks the thread to stop: its receiver disconnects.
    stop: Option<Sender<()>>,
    /// Disconnects when the thread has finished (its sender is dropped, even on panic).
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl SourceThread {
    /// Run `body` on a thread named `name`. `body` gets the stop receiver: it disconnects when
    /// the source is asked to stop, so `recv_timeout` on it is an interruptible wait.
    pub fn spawn(name: &'static str, body: impl FnOnce(Receiver<()>) + Send + 'static) -> Self {
        let (stop_tx, stop_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _done = done_tx;
                body(stop_rx);
            })
            .unwrap_or_else(|error| panic!("spawning the {name} thread: {error}"));
        SourceThread {
            name,
            stop: Some(stop_tx),
            done: done_rx,
            thread: Some(thread),
        }
    }

    /// Ask the thread to stop and join it, waiting at most [`STOP_TIMEOUT`]; a thread that does
    /// not finish in time (a blocked sink) is logged and left behind.
    pub fn stop(&mut self) {
        drop(self.stop.take());
        let Some(thread) = self.thread.take() else {
            return;
        };
        let name = self.name;
        match self.done.recv_timeout(STOP_TIMEOUT) {
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {
                if thread.join().is_err() {
                    tracing::error!(thread = name, "the source thread panicked");
                }
            }
            Err(RecvTimeoutError::Timeout) => tracing::error!(
                thread = name,
                timeout = ?STOP_TIMEOUT,
                "the source thread did not stop in time (is the sink blocked?); leaving it behind"
            ),
        }
    }
}

impl Drop for SourceThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The retry wait: doubles from min to max on consecutive failures, resets on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff from `min` (at least 1 ms) to `max` (at least `min`).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait to use now; the following one is twice as long, up to the maximum.
    pub fn take(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// Back to the minimum, after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// For tests: the source thread was woken and joined by the `stop()` (or drop) that just
/// returned. Its sink holds the only sender of `rx`; a thread still stuck in a wait would have
/// been left behind after [`STOP_TIMEOUT`], still holding it. No clock is read.
#[cfg(test)]
pub(crate) fn assert_joined<T: std::fmt::Debug>(rx: &Receiver<T>) {
    let after = rx.try_recv();
    assert!(
        matches!(after, Err(mpsc::TryRecvError::Disconnected)),
        "the source thread still holds its sink after stop: {after:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_to_the_maximum_and_resets() {
        let mut backoff = Backoff::new(ms(100), ms(500));
        let waits: Vec<Duration> = (0..5).map(|_| backoff.take()).collect();
        assert_eq!(waits, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
        backoff.reset();
        assert_eq!(backoff.take(), ms(100));
        assert_eq!(Backoff::new(Duration::ZERO, Duration::ZERO).take(), ms(1));
        assert_eq!(Backoff::new(ms(50), ms(10)).take(), ms(50));
    }

    #[test]
    fn stop_wakes_a_waiting_thread_and_joins_it() {
        let (tx, rx) = mpsc::channel();
        let mut thread = SourceThread::spawn("test-source", move |stop| {
            // Waits "forever" unless stopped.
            let woken = stop.recv_timeout(Duration::from_secs(3600)).is_err();
            tx.send(woken).unwrap();
        });
        thread.stop();
        assert!(
            rx.recv_timeout(STOP_TIMEOUT).unwrap(),
            "the wait was not woken"
        );
        thread.stop(); // a second stop is harmless
    }
}
