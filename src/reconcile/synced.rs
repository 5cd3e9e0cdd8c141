//! Whether a cache has been filled: set when its watch stream delivers the end of its first
//! complete list. Any number of tasks may wait for it.
//!
//! (kube-runtime's `Store::wait_until_ready` wakes only the task that polled it last: with
//! several reconciles waiting at once, the others would never wake. This flag is a
//! `tokio::sync::watch`, which wakes every waiter.)

use futures::{Stream, TryStreamExt};
use kube::runtime::watcher;
use tokio::sync::watch;

/// A cache's "filled" flag.
#[derive(Debug, Clone)]
pub struct Synced(watch::Sender<bool>);

impl Default for Synced {
    fn default() -> Self {
        Synced(watch::Sender::new(false))
    }
}

impl Synced {
    /// Passes `events` through, setting the flag at the end of each complete list.
    pub fn track<K, S>(
        &self,
        events: S,
    ) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + use<K, S>
    where
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    {
        let flag = self.0.clone();
        events.inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                flag.send_replace(true);
            }
        })
    }

    /// Whether the cache has been filled.
    pub fn is_filled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the cache has been filled.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`: the wait ends only when the flag is set.
        let _ = rx.wait_for(|filled| *filled).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::time::Duration;

    #[tokio::test]
    async fn every_waiter_wakes_when_the_first_list_ends() {
        let synced = Synced::default();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let s = synced.clone();
                tokio::spawn(async move { s.wait().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let events = futures::stream::iter(vec![
            Ok::<_, watcher::Error>(watcher::Event::<u8>::Init),
            Ok(watcher::Event::InitApply(1)),
        ]);
        let _: Vec<_> = synced.track(events).collect().await;
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "not before InitDone"
        );
        let done = futures::stream::iter(vec![Ok::<_, watcher::Error>(
            watcher::Event::<u8>::InitDone,
        )]);
        let _: Vec<_> = synced.track(done).collect().await;
        for w in waiters {
            tokio::time::timeout(Duration::from_secs(1), w)
                .await
                .expect("every waiter wakes")
                .unwrap();
        }
    }
}
