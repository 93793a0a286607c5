//! Ingest: acknowledgements at each concurrency level, with delivery on
//! and with the processing held, beside the ceiling and the peer.

use super::*;

pub(super) struct Row {
    pub(super) name: &'static str,
    pub(super) conns: usize,
    pub(super) stats: Stats,
    pub(super) e2e: Option<(u64, u64)>,
    /// How long after the load ended the receiver had every webhook (to
    /// the 50 ms the check polls at).
    pub(super) caught_up: Option<Duration>,
}

/// Every load level against a server with nothing to check afterwards.
pub(super) async fn plain_levels(
    name: &'static str,
    addr: SocketAddr,
    prefix: &str,
    opts: &Opts,
    counter: &Arc<AtomicU64>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for &conns in &opts.levels {
        let stats = load(addr, prefix, conns, opts.limit(), Arc::clone(counter)).await;
        rows.push(Row {
            name,
            conns,
            stats,
            e2e: None,
            caught_up: None,
        });
    }
    rows
}
