//! `hookrelay run`: opens the store, starts the writer thread, the delivery
//! workers and the webhook listener, and stops them in order on a signal.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::config::Config;
use crate::ingest::{self, Shared};
use crate::{deliver, store};

/// How long a stop waits for delivery attempts in flight to finish.
pub const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long a stop waits for the writer to commit what is queued.
const WRITER_DRAIN: Duration = Duration::from_secs(10);

/// Runs the daemon on the configured address until SIGTERM or SIGINT.
pub fn main(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hookrelay-io")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("listening on {}", config.server.listen))?;
        run(config, listener, stop_signal()).await
    })
}

/// Runs the daemon on `listener` until `shutdown` resolves.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let (waker, signals) = deliver::channel();
    let on_commit = {
        let waker = waker.clone();
        Box::new(move || waker.wake())
    };
    let path = config.storage.path.clone();
    let (writer, writer_thread) = tokio::task::spawn_blocking(move || store::spawn_writer(&path, on_commit))
        .await?
        .with_context(|| format!("opening the database {}", config.storage.path.display()))?;
    // Registered before the listener is announced, so an early SIGHUP
    // reloads instead of killing the process.
    let hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let deliverer = deliver::start(writer.clone(), config.delivery.workers, (waker, signals))
        .context("starting the delivery workers")?;

    log::info!(
        "listening for webhooks on {}; database {}",
        listener.local_addr()?,
        config.storage.path.display()
    );
    for p in &config.processings {
        log::info!(
            "processing `{}`: {} action(s){}",
            p.name,
            p.actions.len(),
            if p.enabled { "" } else { ", disabled: requests are held" }
        );
    }
    let shared = Arc::new(Shared::new(Arc::clone(&config), writer));
    let reloads = tokio::spawn(reload_on_hangup(hangups, Arc::clone(&shared)));
    ingest::serve(listener, Arc::clone(&shared), shutdown).await;
    reloads.abort();
    drop(shared);

    log::info!("stopping: no new webhooks; finishing delivery attempts in flight");
    let busy = tokio::task::spawn_blocking(move || deliverer.stop(STOP_GRACE)).await?;
    if busy > 0 {
        log::warn!("{busy} delivery attempts did not finish in time; they will be retried after a restart");
    }
    let deadline = Instant::now() + WRITER_DRAIN;
    while !writer_thread.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !writer_thread.is_finished() {
        log::warn!("the database writer was still busy at exit");
    }
    log::info!("stopped");
    Ok(())
}

/// On each SIGHUP (systemctl reload), re-reads the config file. A broken
/// file is refused and the running config kept. Processings and their
/// actions take effect for new requests at once; deliveries already queued
/// keep the requests rendered when they were accepted. Keys that need a
/// restart ([server] listen, [storage], [delivery] workers) are reported.
async fn reload_on_hangup(mut hangups: Signal, shared: Arc<Shared>) {
    while hangups.recv().await.is_some() {
        let running = shared.config();
        let path = running.path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
        let fresh = match loaded {
            Ok(Ok(fresh)) => fresh,
            Ok(Err(err)) => {
                log::error!("SIGHUP: config refused, the running config stays: {err}");
                continue;
            }
            Err(err) => {
                log::error!("SIGHUP: reload failed: {err}");
                continue;
            }
        };
        for (what, changed) in [
            ("server.listen", fresh.server.listen != running.server.listen),
            ("storage.path", fresh.storage.path != running.storage.path),
            ("delivery.workers", fresh.delivery.workers != running.delivery.workers),
        ] {
            if changed {
                log::warn!("SIGHUP: {what} changed; it takes effect only after a restart");
            }
        }
        let names = |c: &Config| c.processings.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        let (old, new) = (names(&running), names(&fresh));
        let added: Vec<_> = new.iter().filter(|n| !old.contains(n)).cloned().collect();
        let removed: Vec<_> = old.iter().filter(|n| !new.contains(n)).cloned().collect();
        shared.replace(Arc::new(fresh));
        log::info!(
            "SIGHUP: config reloaded: {} processing(s); added: [{}]; removed: [{}]",
            new.len(),
            added.join(", "),
            removed.join(", ")
        );
    }
}

/// Resolves on SIGTERM (systemctl stop) or SIGINT (Ctrl-C).
async fn stop_signal() {
    let wait = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                log::error!("cannot listen for a signal: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = wait(SignalKind::terminate()) => log::info!("SIGTERM received"),
        () = wait(SignalKind::interrupt()) => log::info!("SIGINT received"),
    }
}
