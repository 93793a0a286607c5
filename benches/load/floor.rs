//! The storage floor: the rows hookrelay writes for one webhook, inserted
//! by a tight loop on one connection in commits of 32, fsync'd as the
//! daemon does (`hookrelay::store::seed::storage_floor`), in the same run
//! as the rest, so that acknowledgements are measured against what this
//! disk and this schema allow as well as against the no-op ceiling.

use hookrelay::store::seed::{storage_floor, FloorShape};

use super::*;

/// Webhooks stored per second, by shape.
pub(super) struct Floor {
    pub(super) delivering: f64,
    pub(super) held: f64,
    pub(super) bare: f64,
}

/// Each shape for the run's duration (a fifth of a second in smoke mode),
/// each on a fresh database in `dir`.
pub(super) fn storage_floors(dir: &Path, receiver: SocketAddr, opts: &Opts) -> Result<Floor, String> {
    let duration = if opts.smoke {
        Duration::from_millis(200)
    } else {
        opts.duration
    };
    let url = format!("http://{receiver}/pb");
    let query = format!("{QUERY}&n=1");
    let rate = |name: &str, shape: FloorShape| -> Result<f64, String> {
        let floor_dir = dir.join(format!("floor-{name}"));
        std::fs::create_dir_all(&floor_dir).map_err(|e| e.to_string())?;
        let (webhooks, took) = storage_floor(&floor_dir.join("floor.db"), (&query, &url), shape, 32, duration)
            .map_err(|e| format!("storage floor ({name}): {e}"))?;
        Ok(webhooks as f64 / took.as_secs_f64())
    };
    Ok(Floor {
        delivering: rate("delivering", FloorShape::Delivering)?,
        held: rate("held", FloorShape::Held)?,
        bare: rate("bare", FloorShape::Bare)?,
    })
}

impl Floor {
    pub(super) fn print(&self, delivering_acks: Option<f64>, held_acks: f64, ceiling: Option<f64>) {
        println!(
            "storage floor (commits of 32, fsync'd): {:.0} webhooks/s with their delivery, {:.0}/s held, \
             {:.0}/s without the console's counts and listing indexes",
            self.delivering, self.held, self.bare
        );
        let share = |acks: f64, of: f64| format!("{:.0} %", 100.0 * acks / of);
        if let Some(acks) = delivering_acks {
            println!(
                "  32 conns, delivering: {acks:.0} acks/s = {} of the floor{}",
                share(acks, self.delivering),
                ceiling.map_or(String::new(), |c| format!(", {} of the ceiling", share(acks, c)))
            );
        }
        println!(
            "  32 conns, held: {held_acks:.0} acks/s = {} of the held floor{}",
            share(held_acks, self.held),
            ceiling.map_or(String::new(), |c| format!(", {} of the ceiling", share(held_acks, c)))
        );
    }
}
