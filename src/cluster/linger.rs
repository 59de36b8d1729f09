//! An edge's upstream for one stream, as plain data: when to pull from an origin, when to keep
//! the pull a while after the last player left (lingering: a player who reloads or zaps back
//! gets the stream at once, with the GOP cache warm), and when to let go.
//!
//! ```text
//! Idle --join--> Connecting --up--> Playing --last leaves--> Lingering(until) --tick--> Closing
//!                  |  ^                ^                          |                      |
//!            down  |  | retry    join  +--------------------------+          down        |
//!                  v  |                                                        v         |
//!              Waiting(until)                                                Idle <------+
//! ```
//!
//! Invariants: a player arriving while Lingering is served by the running upstream (back to
//! Playing) and one arriving while Closing starts a new upstream; neither is ever refused.
//! Nothing is started or retried while no player is attached. Upstream attempts are numbered,
//! so the late `UpstreamDown` of an upstream being closed cannot be mistaken for the failure
//! of its successor.
//!
//! SRS's edge (`SrsPlayEdge`) stops the ingest the moment the last player leaves and refuses
//! players while it is stopping (`ERROR_RTMP_EDGE_PLAY_STATE`); lingering and serving through
//! the teardown are what we do differently.

use super::origins::{OriginPicker, Pick};
use std::time::{Duration, Instant};

/// Timing of one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// How long to keep pulling after the last player left.
    pub linger: Duration,
    /// How long players may wait without media (no upstream playing) before they are failed
    /// (they get an error instead of a black screen forever).
    pub max_wait: Duration,
}

/// Where the upstream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No upstream, no players.
    Idle,
    /// Upstream `attempt` is connecting.
    Connecting {
        /// Upstream attempt number.
        attempt: u64,
    },
    /// Every origin failed this round; the next round starts at `until`.
    Waiting {
        /// When the next round starts.
        until: Instant,
    },
    /// Upstream `attempt` delivers the stream.
    Playing {
        /// Upstream attempt number.
        attempt: u64,
    },
    /// No players; upstream `attempt` is kept until `until`.
    Lingering {
        /// Upstream attempt number.
        attempt: u64,
        /// When to stop it.
        until: Instant,
    },
    /// Upstream `attempt` was told to stop; waiting for it to be down.
    Closing {
        /// Upstream attempt number.
        attempt: u64,
    },
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A player attached to the stream.
    PlayerJoined,
    /// A player detached (left or was failed).
    PlayerLeft,
    /// Upstream `attempt` is playing (the origin sent `NetStream.Play.Start`).
    UpstreamUp {
        /// Upstream attempt number.
        attempt: u64,
    },
    /// Upstream `attempt` failed to connect or dropped.
    UpstreamDown {
        /// Upstream attempt number.
        attempt: u64,
    },
    /// The origin's publisher left (upstream `attempt` stays connected, waiting for a new one).
    StreamGone {
        /// Upstream attempt number.
        attempt: u64,
    },
    /// Time passed; call at [`EdgeUpstream::deadline`].
    Tick,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Open upstream `attempt` to `origin` and play the stream.
    StartUpstream {
        /// The origin, as given to the [`OriginPicker`].
        origin: String,
        /// Upstream attempt number.
        attempt: u64,
    },
    /// Close upstream `attempt`; report `UpstreamDown` for it when it is gone.
    StopUpstream {
        /// Upstream attempt number.
        attempt: u64,
    },
    /// Tell the attached players their stream stopped (they stay, waiting for it to resume).
    NotifyPlayersUnpublished,
    /// No upstream for `max_wait`: close the attached players with an error (and report each
    /// as `PlayerLeft`).
    FailWaitingPlayers,
}

/// One stream's upstream at an edge.
#[derive(Debug)]
pub struct EdgeUpstream {
    cfg: UpstreamConfig,
    picker: OriginPicker,
    state: State,
    players: usize,
    /// Number of the last upstream started.
    attempt: u64,
    /// Since when the attached players have had no media (None: served or nobody there).
    waiting_since: Option<Instant>,
}

impl EdgeUpstream {
    /// An idle upstream choosing origins with `picker`.
    pub fn new(cfg: UpstreamConfig, picker: OriginPicker) -> EdgeUpstream {
        EdgeUpstream {
            cfg,
            picker,
            state: State::Idle,
            players: 0,
            attempt: 0,
            waiting_since: None,
        }
    }

    /// Where it is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Players attached.
    pub fn players(&self) -> usize {
        self.players
    }

    /// The origin picker (for stats: which origin is in use).
    pub fn picker(&self) -> &OriginPicker {
        &self.picker
    }

    /// When to send the next `Tick`, if anything is timed.
    pub fn deadline(&self) -> Option<Instant> {
        let state = match self.state {
            State::Waiting { until } | State::Lingering { until, .. } => Some(until),
            _ => None,
        };
        let wait = self
            .waiting_since
            .filter(|_| self.players > 0)
            .map(|t| t + self.cfg.max_wait);
        match (state, wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Apply `event` at `now`.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Effect> {
        let mut fx = Vec::new();
        match event {
            Event::PlayerJoined => self.joined(now, &mut fx),
            Event::PlayerLeft => self.left(now, &mut fx),
            Event::UpstreamUp { attempt } => {
                if self.state == (State::Connecting { attempt }) {
                    self.state = State::Playing { attempt };
                    self.picker.succeeded();
                    self.waiting_since = None;
                }
            }
            Event::UpstreamDown { attempt } if attempt == self.attempt => self.down(now, &mut fx),
            Event::UpstreamDown { .. } => {} // an earlier upstream, already replaced
            Event::StreamGone { attempt } => {
                if self.state == (State::Playing { attempt }) {
                    fx.push(Effect::NotifyPlayersUnpublished);
                }
            }
            Event::Tick => self.tick(now, &mut fx),
        }
        self.check_wait(now, &mut fx);
        fx
    }

    fn joined(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.players += 1;
        match self.state {
            State::Idle | State::Closing { .. } => {
                self.waiting_since = Some(now);
                self.connect(now, fx);
            }
            // Served by the upstream still running.
            State::Lingering { attempt, .. } => self.state = State::Playing { attempt },
            State::Connecting { .. } | State::Waiting { .. } | State::Playing { .. } => {}
        }
    }

    fn left(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.players = self.players.saturating_sub(1);
        if self.players > 0 {
            return;
        }
        self.waiting_since = None;
        match self.state {
            State::Playing { attempt } => {
                self.state = State::Lingering {
                    attempt,
                    until: now + self.cfg.linger,
                }
            }
            // Nobody to connect for: stop trying.
            State::Connecting { attempt } => {
                fx.push(Effect::StopUpstream { attempt });
                self.state = State::Closing { attempt };
            }
            State::Waiting { .. } => self.state = State::Idle,
            State::Idle | State::Lingering { .. } | State::Closing { .. } => {}
        }
    }

    fn down(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        match self.state {
            // Done closing, or dropped with nobody watching: rest until a player comes.
            State::Closing { .. } | State::Lingering { .. } => self.state = State::Idle,
            State::Playing { .. } => {
                fx.push(Effect::NotifyPlayersUnpublished);
                self.waiting_since = Some(now);
                self.picker.failed(now);
                self.connect(now, fx);
            }
            State::Connecting { .. } => {
                self.picker.failed(now);
                self.connect(now, fx);
            }
            // A repeated report for an upstream already handled.
            State::Idle | State::Waiting { .. } => {}
        }
    }

    fn tick(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        match self.state {
            State::Lingering { attempt, until } if now >= until => {
                fx.push(Effect::StopUpstream { attempt });
                self.state = State::Closing { attempt };
            }
            State::Waiting { until } if now >= until => self.connect(now, fx),
            _ => {}
        }
    }

    /// Players without media for `max_wait` are failed, once per wait.
    fn check_wait(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if let Some(since) = self.waiting_since {
            if self.players > 0 && now >= since + self.cfg.max_wait {
                fx.push(Effect::FailWaitingPlayers);
                self.waiting_since = Some(now);
            }
        }
    }

    /// Start the next upstream, or wait for the picker's backoff.
    fn connect(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        debug_assert!(self.players > 0, "nothing starts without a player");
        match self.picker.next(now) {
            Pick::Connect(origin) => {
                self.attempt += 1;
                fx.push(Effect::StartUpstream {
                    origin: origin.to_string(),
                    attempt: self.attempt,
                });
                self.state = State::Connecting {
                    attempt: self.attempt,
                };
            }
            Pick::WaitUntil(until) => self.state = State::Waiting { until },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_secs(10);
    const MAX_WAIT: Duration = Duration::from_secs(30);

    fn upstream(origins: usize) -> EdgeUpstream {
        let origins = (0..origins).map(|i| format!("o{i}")).collect();
        let picker =
            OriginPicker::new(origins, Duration::from_secs(1), Duration::from_secs(4), 9).unwrap();
        EdgeUpstream::new(
            UpstreamConfig {
                linger: LINGER,
                max_wait: MAX_WAIT,
            },
            picker,
        )
    }

    fn start(origin: &str, attempt: u64) -> Effect {
        Effect::StartUpstream {
            origin: origin.into(),
            attempt,
        }
    }

    #[test]
    fn first_player_starts_then_plays() {
        let t = Instant::now();
        let mut u = upstream(2);
        assert_eq!(u.handle(t, Event::PlayerJoined), vec![start("o0", 1)]);
        assert_eq!(u.state(), State::Connecting { attempt: 1 });
        assert_eq!(
            u.handle(t, Event::PlayerJoined),
            vec![],
            "one upstream for all"
        );
        assert_eq!(u.handle(t, Event::UpstreamUp { attempt: 1 }), vec![]);
        assert_eq!(u.state(), State::Playing { attempt: 1 });
        assert_eq!(u.players(), 2);
        assert_eq!(u.deadline(), None);
    }

    #[test]
    fn lingers_then_closes_then_rests() {
        let t = Instant::now();
        let mut u = upstream(1);
        u.handle(t, Event::PlayerJoined);
        u.handle(t, Event::UpstreamUp { attempt: 1 });
        assert_eq!(u.handle(t, Event::PlayerLeft), vec![]);
        assert_eq!(
            u.state(),
            State::Lingering {
                attempt: 1,
                until: t + LINGER
            }
        );
        assert_eq!(u.deadline(), Some(t + LINGER));
        assert_eq!(u.handle(t + LINGER / 2, Event::Tick), vec![]);
        assert_eq!(
            u.handle(t + LINGER, Event::Tick),
            vec![Effect::StopUpstream { attempt: 1 }]
        );
        assert_eq!(u.state(), State::Closing { attempt: 1 });
        assert_eq!(
            u.handle(t + LINGER, Event::UpstreamDown { attempt: 1 }),
            vec![]
        );
        assert_eq!(u.state(), State::Idle);
    }

    #[test]
    fn player_during_linger_is_served_without_reconnect() {
        let t = Instant::now();
        let mut u = upstream(1);
        u.handle(t, Event::PlayerJoined);
        u.handle(t, Event::UpstreamUp { attempt: 1 });
        u.handle(t, Event::PlayerLeft);
        assert_eq!(u.handle(t + LINGER / 2, Event::PlayerJoined), vec![]);
        assert_eq!(u.state(), State::Playing { attempt: 1 });
        // The old deadline is gone: ticking past it stops nothing.
        assert_eq!(u.handle(t + LINGER * 2, Event::Tick), vec![]);
    }

    #[test]
    fn player_during_close_starts_a_new_upstream() {
        let t = Instant::now();
        let mut u = upstream(1);
        u.handle(t, Event::PlayerJoined);
        u.handle(t, Event::UpstreamUp { attempt: 1 });
        u.handle(t, Event::PlayerLeft);
        u.handle(t + LINGER, Event::Tick);
        assert_eq!(u.state(), State::Closing { attempt: 1 });
        assert_eq!(
            u.handle(t + LINGER, Event::PlayerJoined),
            vec![start("o0", 2)]
        );
        // The old upstream's late goodbye changes nothing.
        assert_eq!(
            u.handle(t + LINGER, Event::UpstreamDown { attempt: 1 }),
            vec![]
        );
        assert_eq!(u.state(), State::Connecting { attempt: 2 });
        u.handle(t + LINGER, Event::UpstreamUp { attempt: 2 });
        assert_eq!(u.state(), State::Playing { attempt: 2 });
    }

    #[test]
    fn drop_fails_over_at_once_and_tells_players() {
        let t = Instant::now();
        let mut u = upstream(2);
        u.handle(t, Event::PlayerJoined);
        u.handle(t, Event::UpstreamUp { attempt: 1 });
        assert_eq!(
            u.handle(t, Event::UpstreamDown { attempt: 1 }),
            vec![Effect::NotifyPlayersUnpublished, start("o1", 2)]
        );
        // o1 refuses too: a full round failed, so wait.
        assert_eq!(u.handle(t, Event::UpstreamDown { attempt: 2 }), vec![]);
        let State::Waiting { until } = u.state() else {
            panic!("{:?}", u.state())
        };
        assert!(until > t);
        assert_eq!(u.deadline(), Some(until));
        // The next round starts at o0, the last one that worked.
        assert_eq!(u.handle(until, Event::Tick), vec![start("o0", 3)]);
    }

    #[test]
    fn no_players_no_retries() {
        let t = Instant::now();
        let mut u = upstream(1);
        u.handle(t, Event::PlayerJoined);
        u.handle(t, Event::UpstreamDown { attempt: 1 });
        assert!(matches!(u.state(), State::Waiting { .. }));
        assert_eq!(u.handle(t, Event::PlayerLeft), vec![]);
        assert_eq!(u.state(), State::Idle);
        assert_eq!(u.handle(t + Duration::from_secs(60), Event::Tick), vec![]);
        // Leaving while connecting stops the attempt.
        let mut u = upstream(1);
        u.handle(t, Event::PlayerJoined);
        assert_eq!(
            u.handle(t, Event::PlayerLeft),
            vec![Effect::StopUpstream { attempt: 1 }]
        );
        assert_eq!(u.handle(t, Event::UpstreamDown { attempt: 1 }), vec![]);
        assert_eq!(u.state(), State::Idle);
        // Dropping while lingering: nobody to retry for.
        let mut u = upstream(2);
        u.handle(t, Event::PlayerJoined);
        u.handle(t, Event::UpstreamUp { attempt: 1 });
        u.handle(t, Event::PlayerLeft);
        assert_eq!(u.handle(t, Event::UpstreamDown { attempt: 1 }), vec![]);
        assert_eq!(u.state(), State::Idle);
    }

    #[test]
    fn stream_gone_notifies_and_keeps_the_upstream() {
        let t = Instant::now();
        let mut u = upstream(1);
        u.handle(t, Event::PlayerJoined);
        assert_eq!(
            u.handle(t, Event::StreamGone { attempt: 1 }),
            vec![],
            "not playing yet"
        );
        u.handle(t, Event::UpstreamUp { attempt: 1 });
        assert_eq!(
            u.handle(t, Event::StreamGone { attempt: 1 }),
            vec![Effect::NotifyPlayersUnpublished]
        );
        assert_eq!(u.state(), State::Playing { attempt: 1 });
        assert_eq!(
            u.handle(t, Event::StreamGone { attempt: 7 }),
            vec![],
            "stale"
        );
    }

    #[test]
    fn waiting_players_fail_after_max_wait() {
        let t = Instant::now();
        let mut u = upstream(1);
        u.handle(t, Event::PlayerJoined);
        assert_eq!(u.deadline(), Some(t + MAX_WAIT));
        // Keep failing: connect, down, wait, ...
        let mut now = t;
        let mut failed_at = None;
        for _ in 0..100 {
            let fx = match u.state() {
                State::Connecting { attempt } => u.handle(now, Event::UpstreamDown { attempt }),
                _ => {
                    now = u.deadline().unwrap();
                    u.handle(now, Event::Tick)
                }
            };
            if fx.contains(&Effect::FailWaitingPlayers) {
                failed_at = Some(now);
                break;
            }
        }
        let failed_at = failed_at.expect("players failed");
        assert!(failed_at >= t + MAX_WAIT && failed_at < t + MAX_WAIT + Duration::from_secs(5));
        // The caller closes them; with nobody left, everything stops.
        u.handle(failed_at, Event::PlayerLeft);
        assert!(matches!(u.state(), State::Idle | State::Closing { .. }));
        assert_eq!(u.deadline(), None);
    }

    #[test]
    fn served_players_do_not_time_out() {
        let t = Instant::now();
        let mut u = upstream(1);
        u.handle(t, Event::PlayerJoined);
        u.handle(t, Event::UpstreamUp { attempt: 1 });
        assert_eq!(u.handle(t + MAX_WAIT * 10, Event::Tick), vec![]);
    }

    /// Random walks: whatever happens, nothing starts without a player, and attempts only grow.
    #[test]
    fn invariants_hold_under_random_events() {
        let t0 = Instant::now();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for _ in 0..200 {
            let mut u = upstream(1 + next(3) as usize);
            let mut now = t0;
            let mut running: Vec<u64> = Vec::new();
            let mut last_attempt = 0;
            for _ in 0..200 {
                now += Duration::from_millis(next(4000));
                let ev = match next(7) {
                    0 | 1 => Event::PlayerJoined,
                    2 if u.players() > 0 => Event::PlayerLeft,
                    3 if !running.is_empty() => Event::UpstreamUp {
                        attempt: running[next(running.len() as u64) as usize],
                    },
                    4 if !running.is_empty() => {
                        let i = next(running.len() as u64) as usize;
                        Event::UpstreamDown {
                            attempt: running.remove(i),
                        }
                    }
                    5 => Event::StreamGone {
                        attempt: last_attempt,
                    },
                    _ => Event::Tick,
                };
                let before = u.players();
                let fx = u.handle(now, ev);
                for e in &fx {
                    match e {
                        Effect::StartUpstream { attempt, .. } => {
                            assert!(u.players() > 0, "{ev:?} started with no player");
                            assert!(*attempt > last_attempt);
                            last_attempt = *attempt;
                            running.push(*attempt);
                        }
                        Effect::StopUpstream { attempt } => {
                            assert!(running.contains(attempt), "stop of unknown {attempt}")
                        }
                        Effect::NotifyPlayersUnpublished | Effect::FailWaitingPlayers => {
                            assert!(u.players() > 0)
                        }
                    }
                }
                if ev == Event::PlayerJoined {
                    // Never refused: after a join, an upstream runs or is on its way.
                    assert_eq!(u.players(), before + 1);
                    assert!(!matches!(u.state(), State::Idle | State::Closing { .. }));
                }
                if u.players() == 0 {
                    assert!(!matches!(
                        u.state(),
                        State::Connecting { .. } | State::Waiting { .. } | State::Playing { .. }
                    ));
                }
            }
        }
    }
}
