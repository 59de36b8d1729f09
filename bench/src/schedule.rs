//! When everything happens, as offsets from the run's epoch: each connection's start (the ramp),
//! the measurement window, and when players and publishers stop. Computed once up front so every
//! thread works from the same plan and the run always ends by itself.

use crate::args::{LoadArgs, Mode};
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;

/// Players keep reading this long past the window, to find their closing edge (the first data
/// after the window ends), so batched delivery is measured burst to burst.
pub const EDGE_GRACE: Duration = Duration::from_millis(1000);
/// Players start this long after the last publisher, so they join live streams.
pub const PLAYER_LEAD: Duration = Duration::from_millis(1000);
/// Publishers stop this long after the players, so no player sees its stream end.
pub const PUBLISHER_TAIL: Duration = Duration::from_millis(500);

#[derive(Debug, Error, PartialEq)]
pub enum ScheduleError {
    #[error("--duration {duration:.1}s leaves no measurement window: connections and warm-up alone take {needed:.1}s")]
    TooShort { duration: f64, needed: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    /// Connections per second; 0 starts everything at once.
    #[serde(skip)]
    ramp: f64,
    #[serde(skip)]
    pub players_begin: Duration,
    #[serde(serialize_with = "secs")]
    pub window_start: Duration,
    #[serde(serialize_with = "secs")]
    pub window_end: Duration,
    #[serde(serialize_with = "secs")]
    pub stop_players: Duration,
    #[serde(serialize_with = "secs")]
    pub stop_publishers: Duration,
    /// True when `--duration` cut the window short.
    pub clipped: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn ramp_offset(ramp: f64, i: usize) -> Duration {
    if ramp > 0.0 {
        Duration::from_secs_f64(i as f64 / ramp)
    } else {
        Duration::ZERO
    }
}

impl Schedule {
    pub fn new(a: &LoadArgs) -> Result<Schedule, ScheduleError> {
        let pubs = a.total_publishers();
        let players = a.total_players();
        let last_pub = ramp_offset(a.ramp, pubs.saturating_sub(1));
        let players_begin = match a.mode {
            Mode::Fanout => last_pub + PLAYER_LEAD,
            _ => Duration::ZERO,
        };
        let last_conn = if players > 0 {
            players_begin + ramp_offset(a.ramp, players - 1)
        } else {
            last_pub
        };
        let mut window_start = last_conn + Duration::from_secs_f64(a.warmup);
        let mut window_end = window_start + Duration::from_secs_f64(a.window);
        let tail = if a.mode.has_players() {
            EDGE_GRACE
        } else {
            Duration::ZERO
        };
        let pub_tail = if a.mode == Mode::Fanout {
            PUBLISHER_TAIL
        } else {
            Duration::ZERO
        };
        let mut clipped = false;
        match a.duration.map(|d| (d, Duration::from_secs_f64(d))) {
            // Publishing alone: the duration is the run length; the window (server samples)
            // is whatever part of it follows the warm-up.
            Some((_, end)) if a.mode == Mode::Publish => {
                window_end = end;
                window_start = window_start.min(end / 2);
            }
            Some((d, end)) => {
                let latest_window_end = end.saturating_sub(tail + pub_tail);
                if latest_window_end <= window_start {
                    return Err(ScheduleError::TooShort {
                        duration: d,
                        needed: (window_start + tail + pub_tail).as_secs_f64(),
                    });
                }
                if window_end > latest_window_end {
                    window_end = latest_window_end;
                    clipped = true;
                }
            }
            None => {}
        }
        let stop_players = window_end + tail;
        Ok(Schedule {
            ramp: a.ramp,
            players_begin,
            window_start,
            window_end,
            stop_players,
            stop_publishers: stop_players + pub_tail,
            clipped,
        })
    }

    pub fn publisher_start(&self, i: usize) -> Duration {
        ramp_offset(self.ramp, i)
    }

    pub fn player_start(&self, j: usize) -> Duration {
        self.players_begin + ramp_offset(self.ramp, j)
    }

    pub fn window(&self) -> Duration {
        self.window_end.saturating_sub(self.window_start)
    }

    /// When the whole run is over.
    pub fn end(&self) -> Duration {
        self.stop_publishers.max(self.stop_players)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{parse, Command};

    fn sched(args: &[&str]) -> Result<Schedule, ScheduleError> {
        match parse(args.iter().copied()).unwrap() {
            Command::Load(a) => Schedule::new(&a),
            _ => unreachable!(),
        }
    }

    const S: fn(f64) -> Duration = Duration::from_secs_f64;

    #[test]
    fn fanout_timeline() {
        let s = sched(&[
            "fanout",
            "--url",
            "rtmp://h/l/s{i}",
            "--file",
            "f",
            "-m",
            "2",
            "-n",
            "50",
            "--ramp",
            "10",
            "--warmup",
            "2",
            "--window",
            "5",
        ])
        .unwrap();
        assert_eq!(s.publisher_start(1), S(0.1));
        // Players begin 1 s after the last publisher; 100 players at 10/s take 9.9 s.
        assert_eq!(s.player_start(0), S(1.1));
        assert_eq!(s.player_start(99), S(1.1) + S(9.9));
        assert_eq!(s.window_start, S(1.1) + S(9.9) + S(2.0));
        assert_eq!(s.window(), S(5.0));
        assert_eq!(s.stop_players, s.window_end + EDGE_GRACE);
        assert_eq!(s.end(), s.stop_players + PUBLISHER_TAIL);
        assert!(!s.clipped);
    }

    #[test]
    fn duration_bounds_the_run() {
        let s = sched(&[
            "play",
            "--url",
            "rtmp://h/l/s",
            "-n",
            "10",
            "--ramp",
            "0",
            "--warmup",
            "1",
            "--window",
            "100",
            "--duration",
            "20",
        ])
        .unwrap();
        assert!(s.clipped);
        assert_eq!(s.end(), S(20.0));
        assert_eq!(s.window_start, S(1.0));
        let too_short = sched(&[
            "play",
            "--url",
            "rtmp://h/l/s",
            "-n",
            "10",
            "--ramp",
            "1",
            "--duration",
            "5",
        ]);
        assert!(matches!(too_short, Err(ScheduleError::TooShort { .. })));
    }

    #[test]
    fn publish_only_runs_for_the_duration() {
        let s = sched(&[
            "publish",
            "--url",
            "rtmp://h/l/s",
            "--file",
            "f",
            "--duration",
            "30",
        ])
        .unwrap();
        assert_eq!(s.end(), S(30.0));
        assert!(!s.clipped);
        let short = sched(&[
            "publish",
            "--url",
            "rtmp://h/l/s",
            "--file",
            "f",
            "--duration",
            "2",
        ])
        .unwrap();
        assert_eq!(short.end(), S(2.0));
        assert!(short.window_start < short.window_end);
    }
}
