//! `KUBE_CLIENT_QPS` and `KUBE_CLIENT_BURST`: client-go's token bucket over every request
//! kerf sends to the API server (watches included, counted once when they start), as
//! Karpenter's client is configured from the same two settings. The bucket is
//! `governor`'s GCRA limiter (a rate of `qps` a second, `burst` at once), in front of
//! kube's service stack; a request waits for its token in `poll_ready`, so the writes a
//! step sends together are paced rather than refused.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Paces the service it wraps to `qps` requests a second, `burst` at once; a `qps` of 0
/// turns pacing off.
#[derive(Clone)]
pub struct PaceLayer {
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

impl PaceLayer {
    pub fn new(qps: u32, burst: u32) -> PaceLayer {
        let limiter = NonZeroU32::new(qps).map(|qps| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            Arc::new(RateLimiter::direct(
                Quota::per_second(qps).allow_burst(burst),
            ))
        });
        PaceLayer { limiter }
    }
}

impl<S> tower::Layer<S> for PaceLayer {
    type Service = Paced<S>;

    fn layer(&self, inner: S) -> Paced<S> {
        Paced {
            inner,
            limiter: self.limiter.clone(),
            wait: None,
            permitted: false,
        }
    }
}

pub struct Paced<S> {
    inner: S,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// A token is held for the next call.
    permitted: bool,
}

impl<S, R> tower::Service<R> for Paced<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if !self.permitted {
            if let Some(limiter) = &self.limiter {
                let wait = self.wait.get_or_insert_with(|| {
                    let limiter = limiter.clone();
                    Box::pin(async move { limiter.until_ready().await })
                });
                ready!(wait.as_mut().poll(cx));
                self.wait = None;
            }
            self.permitted = true;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.permitted = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    /// Counts the requests that got through.
    #[derive(Clone, Default)]
    struct Count(Arc<std::sync::atomic::AtomicU32>);

    impl Service<()> for Count {
        type Response = ();
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<(), Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: ()) -> Self::Future {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::future::ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_burst_goes_at_once_then_each_request_waits_for_its_token() {
        let count = Count::default();
        // One token a second: the sixth request cannot be ready within the test.
        let mut paced = PaceLayer::new(1, 5).layer(count.clone());
        for _ in 0..5 {
            paced.ready().await.unwrap().call(()).await.unwrap();
        }
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 5);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(paced.poll_ready(&mut cx).is_pending(), "a sixth token");
        // The token comes, and the request goes.
        paced.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 6);
    }

    #[tokio::test]
    async fn zero_qps_does_not_pace() {
        let count = Count::default();
        let mut paced = PaceLayer::new(0, 0).layer(count.clone());
        for _ in 0..1000 {
            paced.ready().await.unwrap().call(()).await.unwrap();
        }
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 1000);
    }
}
