//! `hookrelay run`: opens the store, starts the writer thread, the delivery
//! workers and the webhook listener, and stops them in order on a signal.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::admin::{self, Admin};
use crate::config::Config;
use crate::console::Console;
use crate::ingest::{self, Shared};
use crate::metrics::Metrics;
use crate::store::{Hooks, Reader};
use crate::{control, deliver, notify, retention, store};

/// How long a stop waits for delivery attempts in flight to finish.
pub const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long a stop waits for the writer to commit what is queued.
const WRITER_DRAIN: Duration = Duration::from_secs(10);

/// Runs the daemon on the configured addresses until SIGTERM or SIGINT.
pub fn main(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hookrelay-io")
        .build()
        .context("starting the async runtime")?;
    // Before the listeners: a second daemon is told about the first, not
    // that its port is taken. Held until the daemon has stopped.
    // On PostgreSQL, other instances are welcome: nothing to lock.
    let _lock = match config.storage.location().file() {
        Some(path) => {
            store::check_folder(path)?;
            Some(store::lock_daemon(path)?)
        }
        None => None,
    };
    runtime.block_on(async {
        let webhooks = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("listening on {}", config.server.listen))?;
        let admin = TcpListener::bind(config.server.admin_listen)
            .await
            .with_context(|| format!("listening on {} (admin_listen)", config.server.admin_listen))?;
        run(config, webhooks, admin, stop_signal()).await
    })
}

/// Runs the daemon on the given listeners until `shutdown` resolves. The
/// caller holds a SQLite database's daemon lock ([`store::lock_daemon`]).
pub async fn run(
    config: Config,
    webhooks: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let (waker, signals) = deliver::channel();
    let (alarm, alarms) = notify::alarm_channel();
    let hooks = Hooks {
        on_commit: Box::new({
            let waker = waker.clone();
            move || waker.wake()
        }),
        on_error: Box::new(move |reason| alarm.raise(reason)),
    };
    let location = config.storage.location();
    let opening = location.clone();
    // Opening the database blocks: off the async workers, like every
    // database call. The console reads on its own connection, so a long
    // search there never holds up /healthz or /metrics.
    let (writer, writer_thread, indexer, reader, console_reader) = tokio::task::spawn_blocking(move || {
        let (writer, thread) = store::spawn_writer(&opening, hooks)?;
        // After the writer, which migrates: the indexer reads this build's
        // schema. PostgreSQL searches without one.
        let indexer = opening.file().map(store::start_indexer).transpose()?;
        Ok::<_, store::StoreError>((
            writer,
            thread,
            indexer,
            Reader::open(&opening)?,
            Reader::open(&opening)?,
        ))
    })
    .await?
    .with_context(|| format!("opening the database {location}"))?;
    // Other instances' commits wake this one's scheduler; one instance at a
    // time does the cluster's duties.
    let cluster = store::Cluster::join(&location, {
        let waker = waker.clone();
        Box::new(move || waker.wake())
    })
    .context("joining the other instances")?;
    let duty = cluster.as_ref().map_or_else(store::Duty::always, store::Cluster::duty);
    // Registered before the listener is announced, so an early SIGHUP
    // reloads instead of killing the process.
    let hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let shared = Arc::new(Shared::new(Arc::clone(&config), writer.clone(), Arc::clone(&metrics)));
    let deliverer = {
        let (writer, shared, metrics) = (writer.clone(), Arc::clone(&shared), Arc::clone(&metrics));
        let workers = config.delivery.workers;
        // Reads the kept breakers through the writer: off the async workers.
        tokio::task::spawn_blocking(move || {
            deliver::start(
                writer,
                workers,
                (waker, signals),
                (
                    Box::new({
                        let shared = Arc::clone(&shared);
                        move || shared.config()
                    }),
                    Box::new(move || shared.config()),
                ),
                metrics,
            )
        })
        .await?
        .context("starting the delivery workers")?
    };
    let notifier = match &config.notify {
        Some(notify) => Some(
            notify::start(
                notify.clone(),
                Box::new({
                    let shared = Arc::clone(&shared);
                    move || shared.config()
                }),
                location.clone(),
                duty.clone(),
                writer.clone(),
                alarms,
                Arc::clone(&metrics),
            )
            .context("starting the notifier")?,
        ),
        None => None,
    };
    let pruner = retention::start(writer.clone(), config.storage.keep_days, duty).context("starting retention")?;

    log::info!(
        "listening for webhooks on {}; database {location}",
        webhooks.local_addr()?,
    );
    log::info!(
        "admin endpoints (/healthz, /metrics) and the web console on {}",
        admin.local_addr()?
    );
    for p in &config.processings {
        log::info!(
            "processing `{}`: {} action(s){}",
            p.name,
            p.actions.len(),
            if p.enabled { "" } else { ", disabled: requests are held" }
        );
    }
    for warning in config
        .late_breakers()
        .into_iter()
        .chain(config.token_warnings(crate::clock::now_ms()))
    {
        log::warn!("{warning}");
    }
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        }
    };
    // Only SQLite's lock needs the command line to ask the daemon
    // (PostgreSQL's row locks let both write; pg_dump copies it).
    let control_server = match location.file().map(|path| (path, control::bind(path))) {
        None => None,
        Some((path, Ok(listener))) => Some(tokio::spawn(control::serve(
            listener,
            path.to_path_buf(),
            Arc::clone(&shared),
            stopped(),
        ))),
        Some((path, Err(err))) => {
            log::warn!(
                "cannot open the control socket {}: {err}; `hookrelay backup`, `replay` and `prune` will use connections of their own",
                control::socket_path(path).display()
            );
            None
        }
    };
    let admin_state = Arc::new(Admin {
        writer,
        reader: Arc::new(Mutex::new(reader)),
        metrics,
        token: config.server.admin_token.clone(),
        console: Arc::new(Console::new(Arc::clone(&shared), Arc::new(Mutex::new(console_reader)))),
    });
    let admin_server = tokio::spawn(admin::serve(admin, admin_state, stopped()));
    let reloads = tokio::spawn(reload_on_hangup(hangups, Arc::clone(&shared)));
    let webhook_server = ingest::serve(webhooks, Arc::clone(&shared), stopped());
    tokio::pin!(webhook_server);
    tokio::select! {
        () = shutdown => {}
        () = &mut webhook_server => {}
    }
    let _ = stopping.send(true);
    webhook_server.await;
    let _ = admin_server.await;
    if let Some(control) = control_server {
        let _ = control.await;
    }
    reloads.abort();
    drop(shared);

    log::info!("stopping: no new webhooks; finishing delivery attempts in flight");
    let busy = tokio::task::spawn_blocking(move || {
        let busy = deliverer.stop(STOP_GRACE);
        pruner.stop();
        if let Some(indexer) = indexer {
            indexer.stop();
        }
        if let Some(notifier) = notifier {
            notifier.stop();
        }
        if let Some(cluster) = cluster {
            cluster.stop();
        }
        busy
    })
    .await?;
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
/// file, one without processings, or one that changes what only a restart
/// can apply (sockets, the database, threads, the notifier) is refused with
/// one log line, and the running config stays: what runs is then never
/// something other than the file says without the log saying so.
/// Processings and their actions take effect for new requests at once;
/// deliveries already queued keep the requests rendered when they were
/// accepted, and a changed action's log line says how to render them
/// again (`hookrelay requeue`).
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
        let restart_only = running.restart_only_changes(&fresh);
        if !restart_only.is_empty() {
            log::error!(
                "SIGHUP: config refused, the running config stays: {} changed, which only a restart applies (systemctl restart hookrelay)",
                restart_only.join(", ")
            );
            continue;
        }
        let names = |c: &Config| c.processings.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        let (old, new) = (names(&running), names(&fresh));
        let added: Vec<_> = new.iter().filter(|n| !old.contains(n)).cloned().collect();
        let removed: Vec<_> = old.iter().filter(|n| !new.contains(n)).cloned().collect();
        let changed = running.changed_actions(&fresh);
        shared.replace(Arc::new(fresh));
        log::info!(
            "SIGHUP: config reloaded: {} processing(s); added: [{}]; removed: [{}]",
            new.len(),
            added.join(", "),
            removed.join(", ")
        );
        // Waiting deliveries keep the request they were rendered with (a
        // retry sends the same bytes); rendering them again is asked for.
        for (processing, action) in changed {
            log::info!(
                "SIGHUP: processing `{processing}`: action `{action}` changed; deliveries already waiting keep their old request: `hookrelay requeue --processing {processing}` renders them again"
            );
        }
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
