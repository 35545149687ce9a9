//! Group commit for the records a login leaves (its session in embedded mode, the
//! key's last login, the audit entry): one task per kind writes what arrives together
//! in one transaction, so one commit (one fsync) makes many durable, and each login
//! still waits until its own records are.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditEntry, AuditLog, StoreError};

/// Records written in one transaction at most.
const MAX_BATCH: usize = 256;

type Done = oneshot::Sender<Result<(), Arc<StoreError>>>;

/// A writer's queue; its task ends when the last clone is dropped.
pub(super) struct GroupCommit<T> {
    queue: mpsc::UnboundedSender<(T, Done)>,
    /// What the writer writes, for errors.
    what: &'static str,
}

impl<T> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            what: self.what,
        }
    }
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Starts the writer (on the current tokio runtime): `write` stores a batch in
    /// one transaction.
    pub(super) fn start<F, Fut>(what: &'static str, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), StoreError>> + Send,
    {
        let (queue, mut incoming) = mpsc::unbounded_channel::<(T, Done)>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while incoming.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (records, waiting): (Vec<T>, Vec<Done>) = batch.drain(..).unzip();
                let result = write(records).await.map_err(Arc::new);
                for done in waiting {
                    // A login that gave up waiting no longer cares.
                    let _ = done.send(result.clone());
                }
            }
        });
        Self { queue, what }
    }

    /// Writes `record` and waits until it is durable.
    pub(super) async fn write(&self, record: T) -> Result<(), StoreError> {
        let (done, written) = oneshot::channel();
        self.queue
            .send((record, done))
            .map_err(|_| StoreError::Stopped(self.what))?;
        written
            .await
            .map_err(|_| StoreError::Stopped(self.what))?
            .map_err(StoreError::Shared)
    }
}

/// An audit entry and, for a login, the key that signed in and when.
pub(super) type JournalEntry = (AuditEntry, Option<(String, i64)>);

/// The audit log's writer.
pub(super) type Journal = GroupCommit<JournalEntry>;

impl Journal {
    /// The writer of `log`.
    pub(super) fn journal(log: Arc<dyn AuditLog>) -> Self {
        Self::start("the audit writer", move |batch: Vec<JournalEntry>| {
            let log = log.clone();
            async move {
                let (entries, logins): (Vec<AuditEntry>, Vec<_>) = batch.into_iter().unzip();
                let logins: Vec<(String, i64)> = logins.into_iter().flatten().collect();
                log.append(&entries, &logins).await
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::store::AuditEvent;
    use crate::store::memory::MemoryStore;

    /// The memory store's audit log, counting its transactions; the first one waits
    /// at a gate, so the writes behind it queue up.
    struct Gated {
        store: Arc<MemoryStore>,
        gate: Semaphore,
        appends: AtomicUsize,
    }

    #[async_trait]
    impl AuditLog for Gated {
        async fn append(
            &self,
            entries: &[AuditEntry],
            logins: &[(String, i64)],
        ) -> Result<(), StoreError> {
            if self.appends.fetch_add(1, Ordering::SeqCst) == 0 {
                self.gate.acquire().await.expect("gate").forget();
            }
            self.store.append(entries, logins).await
        }

        async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
            self.store.audit_log(limit).await
        }
    }

    fn entry(n: usize) -> AuditEntry {
        AuditEntry {
            event: AuditEvent::LoginFailure,
            key_id: None,
            user_id: None,
            ip: None,
            detail: Some(format!("attempt {n}")),
        }
    }

    #[tokio::test]
    async fn writes_that_arrive_together_share_a_transaction_and_each_waits_for_it() {
        let log = Arc::new(Gated {
            store: Arc::new(MemoryStore::default()),
            gate: Semaphore::new(0),
            appends: AtomicUsize::new(0),
        });
        let journal = Journal::journal(log.clone());
        let writes: Vec<_> = (0..11)
            .map(|n| {
                let journal = journal.clone();
                tokio::spawn(async move { journal.write((entry(n), None)).await })
            })
            .collect();
        while log.appends.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(
            writes.iter().all(|w| !w.is_finished()),
            "no write returns before its transaction commits"
        );
        log.gate.add_permits(1);
        for write in writes {
            write.await.expect("task").expect("written");
        }
        let appends = log.appends.load(Ordering::SeqCst);
        assert!(appends < 11, "11 writes in {appends} transactions");
        let written = log.store.audit_log(100).await.expect("log");
        assert_eq!(written.len(), 11, "every entry, once");
    }

    #[tokio::test]
    async fn a_failed_transaction_fails_every_write_in_it() {
        let store = Arc::new(MemoryStore::default());
        store.fail("audit", true);
        let journal = Journal::journal(store.clone());
        let error = journal.write((entry(1), None)).await.expect_err("fails");
        assert!(error.to_string().contains("audit made to fail"), "{error}");
        store.fail("audit", false);
        journal
            .write((entry(2), None))
            .await
            .expect("written again");
        assert_eq!(store.audit_log(10).await.expect("log"), [entry(2)]);
    }
}
