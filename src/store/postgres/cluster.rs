//! An instance's place among the others sharing one PostgreSQL database:
//! one session that hears the wake-ups every instance's commits send, and
//! tries for the advisory lock that makes one instance at a time the
//! holder of the cluster's duties (retention, the silence and all-skipped
//! watches, notifications). On SQLite there is one instance: it holds them.
//!
//! PostgreSQL frees the lock when the holder's session ends: at once when
//! its process dies, after TCP's keepalive when its machine vanishes. The
//! holder checks its session every [`CHECK`] and lets go of the duties when
//! it breaks, so two instances act on them together for that long at most
//! (a notification then may go out twice; pruning twice is harmless).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;

use crate::store::db::connect_pg;
use crate::store::postgres::claims::{DUE_CHANNEL, DUTIES_LOCK};
use crate::store::{Location, StoreError};

/// How often the session is checked, and the lock tried for when another
/// instance holds it.
const CHECK: Duration = Duration::from_secs(2);
/// How long to wait before connecting again after the session broke.
const RECONNECT: Duration = Duration::from_secs(1);

/// Whether this instance holds the cluster's duties now; cheap to clone.
#[derive(Clone)]
pub struct Duty(Option<Arc<AtomicBool>>);

impl Duty {
    /// The only instance's: always held (SQLite).
    pub fn always() -> Duty {
        Duty(None)
    }

    /// Whether this instance should do the duties now.
    pub fn held(&self) -> bool {
        self.0.as_ref().is_none_or(|held| held.load(Ordering::Relaxed))
    }
}

/// The session's thread, while it runs.
pub struct Cluster {
    duty: Duty,
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl Cluster {
    /// Joins the cluster at `location` (None for SQLite, which has none):
    /// `wake` is called on every wake-up heard.
    pub fn join(location: &Location, wake: Box<dyn Fn() + Send>) -> Result<Option<Cluster>, StoreError> {
        let Location::Postgres(url) = location else {
            return Ok(None);
        };
        let held = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel();
        let session = Session {
            url: url.clone(),
            held: Arc::clone(&held),
            wake,
        };
        let handle = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || session.run(stopped))
            .map_err(|e| StoreError::Unusable(format!("cannot start the cluster thread: {e}")))?;
        Ok(Some(Cluster {
            duty: Duty(Some(held)),
            stop,
            handle,
        }))
    }

    /// This instance's hold on the duties.
    pub fn duty(&self) -> Duty {
        self.duty.clone()
    }

    /// Ends the session (which frees the lock) and waits for the thread.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.join();
    }
}

struct Session {
    url: String,
    held: Arc<AtomicBool>,
    wake: Box<dyn Fn() + Send>,
}

impl Session {
    fn run(self, stopped: mpsc::Receiver<()>) {
        loop {
            let Err(err) = self.serve(&stopped) else {
                return;
            };
            if self.held.swap(false, Ordering::Relaxed) {
                log::warn!("cluster: gave up the duties (retention, watches, notifications): {err}");
            } else {
                log::warn!("cluster: {err}");
            }
            // Wake-ups may have been missed meanwhile.
            (self.wake)();
            match stopped.recv_timeout(RECONNECT) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// One session: listens and tries for the lock until it breaks (an
    /// error) or the daemon stops (Ok).
    fn serve(&self, stopped: &mpsc::Receiver<()>) -> Result<(), StoreError> {
        let mut client = connect_pg(&self.url)?;
        client.batch_execute(&format!("LISTEN {DUE_CHANNEL}"))?;
        let mut next_check = Instant::now();
        loop {
            match stopped.try_recv() {
                Err(mpsc::TryRecvError::Empty) => {}
                Ok(()) | Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
            }
            if Instant::now() >= next_check {
                next_check = Instant::now() + CHECK;
                if self.held.load(Ordering::Relaxed) {
                    client.batch_execute("SELECT 1")?;
                } else {
                    let got: bool = client
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&DUTIES_LOCK])?
                        .get(0);
                    if got {
                        self.held.store(true, Ordering::Relaxed);
                        log::info!("cluster: this instance does the duties (retention, watches, notifications)");
                    }
                }
            }
            let heard = client
                .notifications()
                .timeout_iter(Duration::from_millis(500))
                .next()?
                .is_some();
            if heard {
                // One wake-up covers those already queued behind it.
                while client.notifications().iter().next()?.is_some() {}
            }
            if heard {
                (self.wake)();
            }
        }
    }
}
