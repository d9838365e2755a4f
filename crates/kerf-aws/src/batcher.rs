//! Karpenter's API-call batcher (`pkg/batcher`), for EC2 calls that take many resources
//! at once: calls that arrive close together go out as one request, and each caller
//! gets its own part of the answer.
//!
//! A window opens with the first call and closes when no call has joined it for `idle`,
//! when `max` has passed since it opened, or as soon as it holds `max_items` calls (what
//! one request may carry). The calls it holds then go to the executor together; calls
//! arriving meanwhile open the next window. Karpenter's windows: CreateFleet idle 35 ms,
//! max 1 s; DescribeInstances and TerminateInstances idle 100 ms, max 1 s.
//!
//! The executor answers each input in order; an error it meets it hands to every caller
//! it concerns. A caller whose input the executor left unanswered (or whose batch
//! panicked) gets [`Unanswered`], never a hang.

use std::future::Future;
use std::ops::Add;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// When a batch goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Sent once no call has joined for this long.
    pub idle: Duration,
    /// Sent at the latest this long after its first call.
    pub max: Duration,
    /// Sent as soon as it holds this many calls: the most one request takes.
    pub max_items: usize,
}

impl Window {
    /// When a window opened at `opened`, joined last at `last` and holding `held` calls
    /// closes: at once when full, else `idle` after the last call but no later than `max`
    /// after the first.
    pub fn closes_at<T>(&self, opened: T, last: T, held: usize) -> T
    where
        T: Copy + Ord + Add<Duration, Output = T>,
    {
        if held >= self.max_items {
            return last;
        }
        (last + self.idle).min(opened + self.max)
    }
}

/// The batch a call was in ended without an answer for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the {batcher} batch ended without an answer for this call")]
pub struct Unanswered {
    pub batcher: &'static str,
}

type Execute<I, O> = Box<dyn Fn(Vec<I>) -> BoxFuture<'static, Vec<O>> + Send + Sync>;

/// Merges calls with inputs `I` into batches, answered with outputs `O`.
pub struct Batcher<I, O> {
    shared: Arc<Shared<I, O>>,
}

struct Shared<I, O> {
    name: &'static str,
    window: Window,
    execute: Execute<I, O>,
    open: Mutex<Open<I, O>>,
    /// A call joined the open window (so its closing time may have moved).
    joined: Notify,
}

/// The window being filled.
struct Open<I, O> {
    calls: Vec<(I, oneshot::Sender<O>)>,
    /// When it opened; `None` while no window is open.
    opened: Option<Instant>,
    last: Instant,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// A batcher named `name` (its metric label, Karpenter's `batcher`), running
    /// `execute` on each batch's inputs; `execute` returns one output per input, in order.
    pub fn new<F, Fut>(name: &'static str, window: Window, execute: F) -> Batcher<I, O>
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<O>> + Send + 'static,
    {
        Batcher {
            shared: Arc::new(Shared {
                name,
                window,
                execute: Box::new(move |inputs| Box::pin(execute(inputs))),
                open: Mutex::new(Open {
                    calls: Vec::new(),
                    opened: None,
                    last: Instant::now(),
                }),
                joined: Notify::new(),
            }),
        }
    }

    /// `input`'s answer, once its batch has been sent and answered.
    pub async fn call(&self, input: I) -> Result<O, Unanswered> {
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let opens = {
            let mut open = self.shared.lock();
            open.calls.push((input, tx));
            open.last = now;
            let opens = open.opened.is_none();
            if opens {
                open.opened = Some(now);
            }
            opens
        };
        if opens {
            // The window is its own task, not the first caller's: a caller that gives up
            // (a timeout drops its future) must not strand the others' calls. It ends
            // when its batch is answered; a panic in it drops the senders, which every
            // caller then sees as `Unanswered`.
            tokio::spawn(fill_and_send(self.shared.clone()));
        } else {
            self.shared.joined.notify_one();
        }
        rx.await.map_err(|_| Unanswered {
            batcher: self.shared.name,
        })
    }
}

impl<I, O> Shared<I, O> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open<I, O>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Waits for the open window to close, sends its batch and routes the answers; calls
/// left over beyond `max_items` open the next window at once. (Boxed: it spawns itself
/// for the leftovers, and a recursive `async fn` has no nameable `Send` type.)
fn fill_and_send<I: Send + 'static, O: Send + 'static>(
    shared: Arc<Shared<I, O>>,
) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        loop {
            let closes = {
                let open = shared.lock();
                let opened = open.opened.unwrap_or(open.last);
                shared.window.closes_at(opened, open.last, open.calls.len())
            };
            if Instant::now() >= closes {
                break;
            }
            tokio::select! {
                () = shared.joined.notified() => {}
                () = tokio::time::sleep_until(closes) => {}
            }
        }
        let (batch, opened, more) = {
            let mut open = shared.lock();
            let n = open.calls.len().min(shared.window.max_items);
            let batch: Vec<(I, oneshot::Sender<O>)> = open.calls.drain(..n).collect();
            let opened = open.opened.take();
            let more = !open.calls.is_empty();
            if more {
                open.opened = Some(Instant::now());
            }
            (batch, opened, more)
        };
        if more {
            tokio::spawn(fill_and_send(shared.clone()));
        }
        if let Some(opened) = opened {
            metrics::histogram!("karpenter_cloudprovider_batcher_batch_time_seconds", "batcher" => shared.name)
                .record(opened.elapsed().as_secs_f64());
        }
        metrics::histogram!("karpenter_cloudprovider_batcher_batch_size", "batcher" => shared.name)
            .record(batch.len() as f64);
        let (inputs, answer_to): (Vec<I>, Vec<oneshot::Sender<O>>) = batch.into_iter().unzip();
        let outputs = (shared.execute)(inputs).await;
        for (to, output) in answer_to.into_iter().zip(outputs) {
            // A caller that gave up no longer listens; its answer is dropped.
            let _ = to.send(output);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const WINDOW: Window = Window {
        idle: Duration::from_millis(35),
        max: Duration::from_secs(1),
        max_items: 4,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_window_closes_when_idle_at_its_max_or_when_full() {
        // A lone call waits the idle window, no more.
        assert_eq!(WINDOW.closes_at(ms(0), ms(0), 1), ms(35));
        // Each call that joins moves the close out by the idle window…
        assert_eq!(WINDOW.closes_at(ms(0), ms(30), 2), ms(65));
        // …but never past the max from the first call.
        assert_eq!(WINDOW.closes_at(ms(0), ms(990), 3), ms(1000));
        // A full window closes at once.
        assert_eq!(WINDOW.closes_at(ms(0), ms(10), 4), ms(10));
        assert_eq!(WINDOW.closes_at(ms(0), ms(10), 9), ms(10));
    }

    /// The batches an executor was handed, in order.
    type Sent = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A batcher whose executor answers `input * 10` and records each batch it sends.
    fn recording(window: Window) -> (Batcher<u32, u32>, Sent) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let seen = sent.clone();
        let b = Batcher::new("test", window, move |inputs: Vec<u32>| {
            seen.lock().unwrap().push(inputs.clone());
            async move { inputs.iter().map(|i| i * 10).collect() }
        });
        (b, sent)
    }

    // The current-thread runtime (`#[tokio::test]`'s default) runs no window before the
    // test's calls have all been made: they join one window whatever the machine's load.

    #[tokio::test]
    async fn calls_within_a_window_make_one_request_and_each_gets_its_answer() {
        let window = Window {
            max_items: 100,
            ..WINDOW
        };
        let (b, sent) = recording(window);
        let answers = futures::future::join_all((1..=5).map(|i| b.call(i))).await;
        assert_eq!(
            answers,
            vec![Ok(10), Ok(20), Ok(30), Ok(40), Ok(50)],
            "each caller gets the answer to its own input"
        );
        assert_eq!(*sent.lock().unwrap(), vec![vec![1, 2, 3, 4, 5]]);
    }

    #[tokio::test]
    async fn a_full_window_is_sent_and_the_rest_open_the_next() {
        let (b, sent) = recording(WINDOW);
        let answers = futures::future::join_all((1..=10).map(|i| b.call(i))).await;
        assert_eq!(answers, (1..=10).map(|i| Ok(i * 10)).collect::<Vec<_>>());
        assert_eq!(
            *sent.lock().unwrap(),
            vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10]],
            "at most max_items a request, in arrival order"
        );
    }

    #[tokio::test]
    async fn an_error_reaches_every_caller_of_its_batch() {
        let b: Batcher<u32, Result<u32, String>> =
            Batcher::new("test", WINDOW, |inputs| async move {
                inputs
                    .iter()
                    .map(|_| Err("RequestLimitExceeded".to_string()))
                    .collect()
            });
        let answers = futures::future::join_all((1..=3).map(|i| b.call(i))).await;
        assert_eq!(
            answers,
            vec![Ok(Err("RequestLimitExceeded".to_string())); 3]
        );
    }

    #[tokio::test]
    async fn a_call_the_executor_leaves_unanswered_is_told_so() {
        let b: Batcher<u32, u32> =
            Batcher::new("short", WINDOW, |inputs| async move { vec![inputs[0]] });
        let answers = futures::future::join_all((1..=2).map(|i| b.call(i))).await;
        assert_eq!(answers, vec![Ok(1), Err(Unanswered { batcher: "short" })]);
    }

    #[tokio::test]
    async fn a_lone_call_is_sent_when_the_idle_window_ends_not_at_the_max() {
        // With a max of an hour, only the idle window can send a lone call; the timeout
        // (far longer than 35 ms, far shorter than the hour) tells the two apart.
        let window = Window {
            max: Duration::from_secs(3600),
            ..WINDOW
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let b = Batcher::new("lone", window, move |inputs: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { inputs }
        });
        let answer = tokio::time::timeout(Duration::from_secs(60), b.call(7)).await;
        assert_eq!(answer, Ok(Ok(7)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The next call opens a window of its own.
        assert_eq!(b.call(8).await, Ok(8));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_call_joining_a_waiting_window_goes_in_its_batch() {
        // The first call's window waits (an hour of idle); a second call joins it, fills
        // it, and both go out together at once.
        let (b, sent) = recording(Window {
            idle: Duration::from_secs(3600),
            max: Duration::from_secs(3600),
            max_items: 2,
        });
        let b = Arc::new(b);
        let first = tokio::spawn({
            let b = b.clone();
            async move { b.call(1).await }
        });
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let second = tokio::time::timeout(Duration::from_secs(60), b.call(2)).await;
        assert_eq!(second, Ok(Ok(20)));
        assert_eq!(first.await.unwrap(), Ok(10));
        assert_eq!(*sent.lock().unwrap(), vec![vec![1, 2]]);
    }
}
