//! The trading-day scheduler: turns wall-clock time in KST into journaled day-cycle commands
//! (the engine never reads a clock).
//!
//! KRX schedule (KST, UTC+9 all year): 08:30 StartOfDay and pre-open; 09:00 continuous
//! session; 15:20 closing call; 15:30 EndOfDay (DAY orders expire). Weekends have no session.
//! In `AlwaysOpen` (demo) mode the day starts at once and the market stays open.
//!
//! **Known limitations**: KRX holidays and the after-hours sessions are not modelled (the
//! call phases reject orders until auctions are built).

use kuku_engine::{Command, MarketPhase};
use serde::{Deserialize, Serialize};

/// Seconds KST is ahead of UTC.
pub const KST_OFFSET_S: i64 = 9 * 3_600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleMode {
    /// The KRX timetable in KST.
    Krx,
    /// Start a day now and keep the continuous session open (demo).
    AlwaysOpen,
    /// Issue nothing (tests and operators driving the day by hand).
    Manual,
}

/// What the scheduler believes the engine's day state is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayState {
    pub day_open: bool,
    pub trading_day: u32,
    pub phase: MarketPhase,
}

/// A KST wall-clock reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KstTime {
    /// yyyymmdd.
    pub date: u32,
    /// 0 = Monday.
    pub weekday: u32,
    pub minute_of_day: u32,
}

impl KstTime {
    pub fn from_unix_ns(ns: u64) -> KstTime {
        let secs = (ns / 1_000_000_000) as i64 + KST_OFFSET_S;
        let days = secs.div_euclid(86_400);
        let minute_of_day = (secs.rem_euclid(86_400) / 60) as u32;
        // 1970-01-01 was a Thursday (weekday 3 when Monday is 0).
        let weekday = (days + 3).rem_euclid(7) as u32;
        KstTime {
            date: civil_date(days),
            weekday,
            minute_of_day,
        }
    }
}

/// yyyymmdd of a day count since 1970-01-01.
fn civil_date(days: i64) -> u32 {
    let (y, m, d) = civil_from_days(days);
    (y * 10_000 + m * 100 + d) as u32
}

/// (year, month, day) of a day count since 1970-01-01, proleptic Gregorian (Howard Hinnant's
/// civil-from-days).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

const PRE_OPEN: u32 = 8 * 60 + 30;
const OPEN: u32 = 9 * 60;
const CLOSING_CALL: u32 = 15 * 60 + 20;
const CLOSE: u32 = 15 * 60 + 30;

/// Where the KRX timetable says the market should be at `t`: `None` = no trading day.
pub fn krx_target(t: KstTime) -> Option<MarketPhase> {
    if t.weekday >= 5 || !(PRE_OPEN..CLOSE).contains(&t.minute_of_day) {
        return None;
    }
    Some(match t.minute_of_day {
        m if m < OPEN => MarketPhase::PreOpen,
        m if m < CLOSING_CALL => MarketPhase::Continuous,
        _ => MarketPhase::ClosingCall,
    })
}

/// The commands that move the engine from `state` to where `mode` wants it at `t`.
pub fn plan(mode: ScheduleMode, state: DayState, t: KstTime) -> Vec<Command> {
    let target = match mode {
        ScheduleMode::Manual => return Vec::new(),
        ScheduleMode::AlwaysOpen => Some(MarketPhase::Continuous),
        ScheduleMode::Krx => krx_target(t),
    };
    let mut out = Vec::new();
    match target {
        None => {
            if state.day_open {
                out.push(Command::EndOfDay {
                    trading_day: state.trading_day,
                });
            }
        }
        Some(phase) => {
            // A day opened on an earlier date ends first (a node down over a close).
            let stale = mode == ScheduleMode::Krx && state.day_open && state.trading_day != t.date;
            if stale {
                out.push(Command::EndOfDay {
                    trading_day: state.trading_day,
                });
            }
            if !state.day_open || stale {
                out.push(Command::StartOfDay {
                    trading_day: t.date,
                    base_prices: Vec::new(),
                });
            }
            if state.phase != phase || !state.day_open || stale {
                out.push(Command::SetMarketPhase { phase });
            }
        }
    }
    out
}

/// The state after `commands` were applied (assuming they were accepted).
pub fn advance(mut state: DayState, commands: &[Command]) -> DayState {
    for c in commands {
        match c {
            Command::StartOfDay { trading_day, .. } => {
                state.day_open = true;
                state.trading_day = *trading_day;
            }
            Command::EndOfDay { .. } => {
                state.day_open = false;
                state.phase = MarketPhase::Closed;
            }
            Command::SetMarketPhase { phase } => state.phase = *phase,
            _ => {}
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: u32, weekday: u32, h: u32, m: u32) -> KstTime {
        KstTime {
            date,
            weekday,
            minute_of_day: h * 60 + m,
        }
    }

    const CLOSED: DayState = DayState {
        day_open: false,
        trading_day: 0,
        phase: MarketPhase::Closed,
    };

    #[test]
    fn kst_conversion() {
        // 2026-11-25T00:30:00Z is 09:30 KST, a Wednesday.
        let t = KstTime::from_unix_ns(1_795_566_600 * 1_000_000_000);
        assert_eq!(t.date, 20_261_125);
        assert_eq!((t.weekday, t.minute_of_day), (2, 9 * 60 + 30));
        // 1970-01-01T00:00Z is 09:00 KST on a Thursday.
        let t = KstTime::from_unix_ns(0);
        assert_eq!((t.date, t.weekday, t.minute_of_day), (19_700_101, 3, 540));
    }

    #[test]
    fn krx_day_cycle() {
        let d = 20_261_125;
        let s = plan(ScheduleMode::Krx, CLOSED, at(d, 2, 8, 0));
        assert!(s.is_empty(), "before 08:30 nothing happens");
        let s = plan(ScheduleMode::Krx, CLOSED, at(d, 2, 8, 30));
        assert_eq!(s.len(), 2);
        let state = advance(CLOSED, &s);
        assert_eq!(state.phase, MarketPhase::PreOpen);
        let s = plan(ScheduleMode::Krx, state, at(d, 2, 9, 0));
        assert_eq!(
            s,
            vec![Command::SetMarketPhase {
                phase: MarketPhase::Continuous
            }]
        );
        let state = advance(state, &s);
        assert!(plan(ScheduleMode::Krx, state, at(d, 2, 12, 0)).is_empty());
        let s = plan(ScheduleMode::Krx, state, at(d, 2, 15, 20));
        assert_eq!(
            s,
            vec![Command::SetMarketPhase {
                phase: MarketPhase::ClosingCall
            }]
        );
        let state = advance(state, &s);
        let s = plan(ScheduleMode::Krx, state, at(d, 2, 15, 30));
        assert_eq!(s, vec![Command::EndOfDay { trading_day: d }]);
        assert!(!advance(state, &s).day_open);
    }

    #[test]
    fn a_node_started_mid_session_opens_at_once_and_weekends_stay_closed() {
        let s = plan(ScheduleMode::Krx, CLOSED, at(20_261_125, 2, 10, 15));
        assert_eq!(advance(CLOSED, &s).phase, MarketPhase::Continuous);
        assert!(plan(ScheduleMode::Krx, CLOSED, at(20_261_128, 5, 10, 0)).is_empty());
    }

    #[test]
    fn a_day_left_open_overnight_is_ended_before_the_next_starts() {
        let open = DayState {
            day_open: true,
            trading_day: 20_261_124,
            phase: MarketPhase::Continuous,
        };
        let s = plan(ScheduleMode::Krx, open, at(20_261_125, 2, 9, 5));
        assert!(matches!(
            s[0],
            Command::EndOfDay {
                trading_day: 20_261_124
            }
        ));
        assert!(matches!(
            s[1],
            Command::StartOfDay {
                trading_day: 20_261_125,
                ..
            }
        ));
    }

    #[test]
    fn always_open_starts_once() {
        let s = plan(ScheduleMode::AlwaysOpen, CLOSED, at(20_261_129, 6, 23, 0));
        let state = advance(CLOSED, &s);
        assert_eq!(state.phase, MarketPhase::Continuous);
        assert!(plan(ScheduleMode::AlwaysOpen, state, at(20_261_130, 0, 1, 0)).is_empty());
    }
}
