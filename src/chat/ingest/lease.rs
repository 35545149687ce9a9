//! One feeder at a time across daemons: a lease in the cache, renewed as the feeder
//! works, kept from one feed to the next while recordings keep coming.

use std::time::{Duration, Instant};

use super::{FeedError, Ingest};
use crate::cache::CacheError;

/// The cache key of the feeder's lease, and how long a lease lasts unrenewed: one
/// feeder at a time across daemons, so events are applied in order.
pub(super) const LEASE_KEY: &str = "ingest-lease";
pub(super) const LEASE_TTL: Duration = Duration::from_secs(60);
/// How long a feeder waits for another daemon's before leaving the work to it.
const LEASE_WAIT: Duration = Duration::from_secs(5);
/// How often a feeder waiting for the lease tries again.
const LEASE_RETRY: Duration = Duration::from_millis(20);
/// How long a feeder keeps its lease, idle, for the next recording's feed: under a
/// steady load it takes the lease and lets go of it once, not once per transaction.
/// Another daemon's feeder waits for it that much longer at most.
pub(super) const LINGER: Duration = Duration::from_millis(10);
/// The cache key naming the daemon whose feeder ran last.
pub(super) const LAST_FEEDER_KEY: &str = "ingest-last-feeder";
pub(super) const LAST_FEEDER_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

impl Ingest {
    /// [`Ingest::run_pending`]; with `keep`, a feed that went well keeps the lease for
    /// the next one, until [`Ingest::let_go`].
    pub(super) async fn feed_pending(&self, keep: bool) -> Result<usize, FeedError> {
        let mut kept = self.running.lock().await;
        let holder = self.holder.as_bytes();
        // A lease kept since the last feed and renewed now was this feeder's all along:
        // no other feeder ran in between, so nothing to take over.
        let renewed = *kept && self.cache.expire_if(LEASE_KEY, holder, LEASE_TTL).await?;
        *kept = false;
        let started = Instant::now();
        while !renewed
            && !self
                .cache
                .put_if_absent(LEASE_KEY, holder, LEASE_TTL)
                .await?
        {
            if started.elapsed() > LEASE_WAIT {
                // Another daemon's feeder feeds what this one recorded: keep none of
                // it in memory.
                self.recent.clear();
                return Ok(0);
            }
            tokio::time::sleep(LEASE_RETRY).await;
        }
        let feeding = self.recent.feeding();
        let taken = if renewed {
            Ok(())
        } else {
            self.take_over().await
        };
        let fed = match taken {
            Ok(()) => self.feed().await,
            Err(error) => Err(error.into()),
        };
        if fed.is_ok() {
            feeding.done();
            if keep {
                *kept = true;
                return fed;
            }
        }
        self.cache.delete_if(LEASE_KEY, holder).await?;
        fed
    }

    /// Lets go of a lease kept after the last feed.
    pub(super) async fn let_go(&self) -> Result<(), CacheError> {
        let mut kept = self.running.lock().await;
        if std::mem::take(&mut *kept) {
            self.cache
                .delete_if(LEASE_KEY, self.holder.as_bytes())
                .await?;
        }
        Ok(())
    }

    /// Forgets the members view if another daemon's feeder ran since this one did.
    async fn take_over(&self) -> Result<(), CacheError> {
        let holder = self.holder.as_bytes();
        if self.cache.get(LAST_FEEDER_KEY).await?.as_deref() != Some(holder) {
            self.members.clear();
            self.recent.lose();
            self.cache
                .put(LAST_FEEDER_KEY, holder, LAST_FEEDER_TTL)
                .await?;
        }
        Ok(())
    }

    /// Renews this feeder's lease after each write of deliveries, so that it lasts
    /// while the feeder works. One that ran out while no other feeder ran is taken
    /// again. If another daemon's feeder took it (this one was stuck past
    /// [`LEASE_TTL`]), this feed stops before it marks anything fed or writes on: the
    /// other feeds the round again, which delivers nothing twice, and this one's view
    /// of the members is dropped at its next start.
    pub(super) async fn renew(&self) -> Result<(), FeedError> {
        let holder = self.holder.as_bytes();
        if self.cache.expire_if(LEASE_KEY, holder, LEASE_TTL).await? {
            return Ok(());
        }
        if self
            .cache
            .put_if_absent(LEASE_KEY, holder, LEASE_TTL)
            .await?
            && self.cache.get(LAST_FEEDER_KEY).await?.as_deref() == Some(holder)
        {
            return Ok(());
        }
        Err(FeedError::LeaseLost)
    }
}
