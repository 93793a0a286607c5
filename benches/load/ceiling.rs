//! The ceiling (a minimal hyper server, this program started with
//! `--ceiling`) and the peer (`webhook`), measured at the same levels.

use super::*;

/// The no-storage ceiling: parse the query like a relay must, answer 200.
pub(super) fn ceiling(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let query = request.uri().query().unwrap_or("");
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    std::hint::black_box(fields);
    ok()
}

/// The ceiling server as its own process, like hookrelay: this program with `--ceiling ADDR`.
pub(super) fn start_ceiling() -> Result<Process, String> {
    let addr = free_addr();
    let child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["--ceiling", &addr.to_string()])
        .spawn()
        .map_err(|e| format!("starting the ceiling server: {e}"))?;
    let process = Process {
        child,
        addr,
        log: Arc::default(),
    };
    wait_port(addr)
        .then_some(process)
        .ok_or("the ceiling server did not start".into())
}

pub(super) fn start_peer(dir: &Path) -> Option<Process> {
    let hooks = dir.join("hooks.json");
    std::fs::write(
        &hooks,
        r#"[{"id": "hook", "execute-command": "/bin/true", "response-message": "ok"}]"#,
    )
    .ok()?;
    let addr = free_addr();
    let child = Command::new("webhook")
        .arg("-hooks")
        .arg(&hooks)
        .args(["-ip", "127.0.0.1", "-port", &addr.port().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let process = Process {
        child,
        addr,
        log: Arc::default(),
    };
    wait_port(addr).then_some(process)
}

pub(super) fn run_ceiling(addr: SocketAddr) -> ExitCode {
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        return ExitCode::from(1);
    };
    runtime.block_on(async move {
        let Ok(listener) = TcpListener::bind(addr).await else {
            return ExitCode::from(1);
        };
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service =
                hyper::service::service_fn(
                    |request| async move { Ok::<_, std::convert::Infallible>(ceiling(request)) },
                );
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    })
}

pub(super) fn peer_missing(rows: &[Row]) -> bool {
    !rows.iter().any(|r| r.name == "webhook")
}
