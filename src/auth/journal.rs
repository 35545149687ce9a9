//! The records a login leaves (the key's last login, the audit entry), written by one
//! task: concurrent logins share a transaction, so one commit (one fsync) makes many
//! durable, and each login still waits until its own records are.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditEntry, AuditLog, StoreError};

/// Records written in one transaction at most.
const MAX_BATCH: usize = 256;

struct Pending {
    entry: AuditEntry,
    /// The key that signed in, and when.
    login: Option<(String, i64)>,
    done: oneshot::Sender<Result<(), Arc<StoreError>>>,
}

/// The writer's queue; the task ends when the last clone is dropped.
#[derive(Clone)]
pub(super) struct Journal {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Journal {
    /// Starts the writer (on the current tokio runtime).
    pub(super) fn start(log: Arc<dyn AuditLog>) -> Self {
        let (queue, mut incoming) = mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while incoming.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let entries: Vec<AuditEntry> = batch.iter().map(|p| p.entry.clone()).collect();
                let logins: Vec<(String, i64)> =
                    batch.iter().filter_map(|p| p.login.clone()).collect();
                let result = log.append(&entries, &logins).await.map_err(Arc::new);
                for pending in batch.drain(..) {
                    // A login that gave up waiting no longer cares.
                    let _ = pending.done.send(result.clone());
                }
            }
        });
        Self { queue }
    }

    /// Writes `entry` (and, for a login, the key's last login) and waits until it is
    /// durable.
    pub(super) async fn write(
        &self,
        entry: AuditEntry,
        login: Option<(String, i64)>,
    ) -> Result<(), StoreError> {
        let (done, written) = oneshot::channel();
        let pending = Pending { entry, login, done };
        self.queue
            .send(pending)
            .map_err(|_| StoreError::Stopped("the audit writer"))?;
        written
            .await
            .map_err(|_| StoreError::Stopped("the audit writer"))?
            .map_err(StoreError::Shared)
    }
}
