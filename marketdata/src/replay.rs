//! The replay source: plays a recorded file ([`crate::record`]) back with its recorded
//! timestamps, paced by the recorded gaps divided by a speed (0: as fast as it is polled).
//!
//! The pump hands its quotes to the engine losslessly ([`Delivery::Lossless`]) with the
//! recorded timestamps (`Submitter::try_submit_at`), so two replays of one file submit the
//! same commands with the same timestamps, and end in the same engine state and candles.
//!
//! **Invariants**: events come out in file order with their recorded timestamps; an event is
//! due once `(its ts - the first ts) / speed` has passed since the first poll; a bad record
//! ends the replay with an error naming its line (the events before it were delivered).
//!
//! **Performance**: streams the file (one line buffered); a poll delivers at most
//! [`ReplaySource::batch_max`] events, so a poll stays short even at speed 0.
//!
//! **Known limitations**: pacing follows the pump's clock: a slow consumer delays events, it
//! never drops them.

use crate::model::{MarketEvent, TimestampNs};
use crate::record::RecordReader;
use crate::source::{Delivery, Poll, Source, SourceError};
use kuku_engine::Symbol;
use std::path::Path;
use std::time::Duration;

/// The longest a replay waits between polls while nothing is due.
const WAKE_MAX: Duration = Duration::from_millis(50);

/// A replay's pace: a multiple of the recorded pace, or as fast as possible.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Speed(f64);

impl Speed {
    /// No pacing: every poll delivers up to a batch.
    pub const UNPACED: Speed = Speed(0.0);
    pub const REAL_TIME: Speed = Speed(1.0);
    /// The largest multiple accepted.
    pub const MAX: f64 = 1_000_000.0;

    /// `0` (unpaced) or a finite multiple in `(0, MAX]`.
    pub fn new(multiple: f64) -> Option<Speed> {
        (multiple.is_finite() && (0.0..=Speed::MAX).contains(&multiple)).then_some(Speed(multiple))
    }

    pub fn multiple(self) -> f64 {
        self.0
    }
}

/// Plays a recorded file back.
pub struct ReplaySource {
    reader: RecordReader,
    speed: Speed,
    /// The next record, read ahead to know when it is due.
    next: Option<MarketEvent>,
    /// (first poll's clock, first record's ts).
    anchor: Option<(TimestampNs, TimestampNs)>,
    ended: bool,
    /// The most events one poll delivers.
    pub batch_max: usize,
    delivered: u64,
}

impl ReplaySource {
    pub fn open(path: &Path, speed: Speed) -> Result<ReplaySource, SourceError> {
        ReplaySource::from_reader(RecordReader::open(path)?, speed)
    }

    pub fn from_reader(
        mut reader: RecordReader,
        speed: Speed,
    ) -> Result<ReplaySource, SourceError> {
        let next = reader.next_event()?;
        Ok(ReplaySource {
            reader,
            speed,
            ended: next.is_none(),
            next,
            anchor: None,
            batch_max: 4_096,
            delivered: 0,
        })
    }

    /// Events delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// True if the file ended in a torn line (ignored).
    pub fn torn_tail(&self) -> bool {
        self.reader.torn_tail()
    }

    /// How long after the first poll `ts` is due.
    fn due_after(&self, first: TimestampNs, ts: TimestampNs) -> Option<Duration> {
        let gap_ns = ts.0.saturating_sub(first.0);
        if self.speed.0 == 0.0 {
            return Some(Duration::ZERO);
        }
        Some(Duration::from_nanos((gap_ns as f64 / self.speed.0) as u64))
    }
}

impl Source for ReplaySource {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn delivery(&self) -> Delivery {
        Delivery::Lossless
    }

    fn poll(
        &mut self,
        now: TimestampNs,
        _universe: &[Symbol],
        out: &mut Vec<MarketEvent>,
    ) -> Result<Poll, SourceError> {
        if self.ended {
            return Ok(Poll::Ended);
        }
        let Some(first_event) = self.next else {
            self.ended = true;
            return Ok(Poll::Ended);
        };
        let (clock0, first) = *self.anchor.get_or_insert((now, first_event.ts_ns()));
        let elapsed = Duration::from_nanos(now.0.saturating_sub(clock0.0));
        let mut batch = 0;
        while let Some(event) = self.next {
            let due = self
                .due_after(first, event.ts_ns())
                .unwrap_or(Duration::MAX);
            if due > elapsed {
                return Ok(Poll::Pending {
                    wake_after: (due - elapsed).min(WAKE_MAX),
                });
            }
            if batch == self.batch_max {
                return Ok(Poll::Pending {
                    wake_after: Duration::ZERO,
                });
            }
            out.push(event);
            batch += 1;
            self.delivered += 1;
            self.next = match self.reader.next_event() {
                Ok(next) => next,
                Err(e) => {
                    self.ended = true;
                    self.next = None;
                    return Err(e);
                }
            };
        }
        self.ended = true;
        Ok(Poll::Ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_outside_the_range_are_refused() {
        assert_eq!(Speed::new(0.0), Some(Speed::UNPACED));
        assert_eq!(Speed::new(1.0), Some(Speed::REAL_TIME));
        assert!(Speed::new(Speed::MAX).is_some());
        for bad in [-1.0, Speed::MAX * 2.0, f64::NAN, f64::INFINITY] {
            assert_eq!(Speed::new(bad), None, "{bad}");
        }
    }
}
