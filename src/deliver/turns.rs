//! Taking turns: a receiver's pace taken in the database when instances
//! share one, and the choice of the next delivery of a receiver's queue
//! whose lanes (`lanes.rs`) all have their turn.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::pace::Pace;
use crate::config::Rate;
use crate::model::DueDelivery;
use crate::store::{Turns, Writer};

/// [`Pace::take`] for instances sharing a database: the turn is taken in
/// it (its own session, `turns`, opened at the first paced request and
/// again after an error), so a receiver's rate holds for all of them
/// together. A database that cannot be asked gives no turn (a breach of
/// the rate would be worse than a wait), and the turn is asked for again
/// after one gap.
pub(super) fn shared_turn(
    writer: &Writer,
    turns: &mut Option<Turns>,
    target: &str,
    (rate, burst): (Rate, u32),
    now: Instant,
) -> Result<(), Instant> {
    let gap = super::pace::gap(rate);
    let taken = match turns {
        Some(turns) => turns.take(target, gap.as_micros() as i64, burst),
        None => writer.turns().and_then(|opened| {
            let taken = match &opened {
                Some(session) => session.take(target, gap.as_micros() as i64, burst),
                None => Ok(None),
            };
            *turns = opened;
            taken
        }),
    };
    match taken {
        Ok(None) => Ok(()),
        Ok(Some(wait_us)) => Err(now + Duration::from_micros(wait_us.max(1) as u64)),
        Err(err) => {
            log::warn!("receiver {target}: cannot take its turn in the database: {err}");
            *turns = None;
            Err(now + gap)
        }
    }
}

/// How far into a receiver's queue a delivery whose lanes are free is
/// looked for: one chat at its limit does not hold up the others.
const LANE_SCAN: usize = 32;

/// The queue's next delivery to hand over, and its lanes.
pub(super) struct Pick {
    pub(super) index: usize,
    pub(super) lanes: Vec<super::lanes::Lane>,
}

/// The first delivery in `queue` whose lanes ([`super::lanes`]) all have
/// their turn: the first one when none has lanes, so order is kept within
/// a lane and, without lanes, within the receiver. Alone on the database
/// the lanes are only looked at (taken once the receiver's turn is);
/// shared, they are taken in the database as they are looked at, and a
/// turn taken for a delivery that then waits is lost (a longer gap, never
/// a shorter one). Otherwise, when the first lane frees.
pub(super) fn pick(
    queue: &VecDeque<DueDelivery>,
    pace: &mut Pace,
    mut shared: Option<(&Writer, &mut Option<Turns>)>,
    now: Instant,
) -> Result<Pick, Instant> {
    let mut first_free: Option<Instant> = None;
    for (index, due) in queue.iter().enumerate().take(LANE_SCAN) {
        let lanes = super::lanes::lanes(&due.request);
        let mut blocked = None;
        for lane in &lanes {
            let ready = match shared.as_mut() {
                Some((writer, turns)) => shared_turn(writer, turns, &lane.key, (lane.rate, lane.burst), now),
                None => pace.ready(&lane.key, lane.rate, lane.burst, now),
            };
            if let Err(at) = ready {
                blocked = Some(at);
                break;
            }
        }
        match blocked {
            None => return Ok(Pick { index, lanes }),
            Some(at) => first_free = Some(first_free.map_or(at, |t| t.min(at))),
        }
    }
    Err(first_free.unwrap_or(now + Duration::from_millis(100)))
}
