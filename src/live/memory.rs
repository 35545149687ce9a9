//! Giving the system back what a large delivery freed.
//!
//! glibc keeps what a thread freed in that thread's arena and returns only the top of
//! each heap to the system, so after a burst the daemon stayed resident at its peak:
//! filling a room of 1,000 members delivers 500,000 entries, and the bench's daemon
//! held 269 MB after it, 64 MB once `malloc_trim(0)` had handed the free pages back.
//! Elsewhere (musl, other systems) the allocator needs no help.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Deliveries in one go after which freed memory is handed back.
pub(super) const AFTER_DELIVERIES: usize = 1000;

/// How long no large delivery must come before the release runs: the streams are still
/// writing what the last one delivered, and the release stalls every thread that
/// allocates meanwhile.
const SETTLE: Duration = Duration::from_millis(500);
/// Under a steady stream of large deliveries, the longest wait for a release.
const LONGEST_WAIT: Duration = Duration::from_secs(10);

/// A release was asked for since the waiting one last looked.
static REQUESTED: AtomicBool = AtomicBool::new(false);
/// A task is waiting to release, or releasing.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Hands freed memory back once large deliveries settle, on a blocking thread (it walks
/// and locks every arena): one release at a time, and once more if asked again while
/// one ran.
pub(super) fn release_soon() {
    REQUESTED.store(true, Ordering::Release);
    if RUNNING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        loop {
            let asked = Instant::now();
            loop {
                REQUESTED.store(false, Ordering::Release);
                tokio::time::sleep(SETTLE).await;
                if !REQUESTED.load(Ordering::Acquire) || asked.elapsed() >= LONGEST_WAIT {
                    break;
                }
            }
            let started = Instant::now();
            let _ = tokio::task::spawn_blocking(release).await;
            tracing::debug!(took = ?started.elapsed(), "handed freed memory back");
            RUNNING.store(false, Ordering::Release);
            // Asked again since the last look, and no other task took it up.
            if !REQUESTED.load(Ordering::Acquire) || RUNNING.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release() {
    // SAFETY: `malloc_trim` takes no pointers; glibc serializes it with every other
    // allocator call.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() {}
