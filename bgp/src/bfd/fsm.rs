//! The BFD session core: RFC 5880 §6.8 state variables and state machine for one
//! single-hop asynchronous session (RFC 5881), sans-IO. `BfdSession::handle(Input) ->
//! Vec<Output>`; no tokio, no sockets, no clock. Timers are armed and cancelled through
//! outputs, packets go out as [`Output::Send`] and come in already decoded and
//! demultiplexed. No Demand mode of our own, no Echo function, no authentication.
//!
//! ```text
//!                             +--+
//!                             |  | UP, ADMIN DOWN, TIMER
//!                             |  V
//!                     DOWN  +------+  INIT
//!              +------------|      |------------+
//!              |            | DOWN |            |
//!              |  +-------->|      |<--------+  |
//!              |  |         +------+         |  |
//!              |  |                          |  |
//!              |  |               ADMIN DOWN,|  |
//!              |  |ADMIN DOWN,          DOWN,|  |
//!              |  |TIMER                TIMER|  |
//!              V  |                          |  V
//!            +------+                      +------+
//!       +----|      |                      |      |----+
//!   DOWN|    | INIT |--------------------->|  UP  |    |INIT, UP
//!       +--->|      | INIT, UP             |      |<---+
//!            +------+                      +------+
//! ```
//! (RFC 5880 §6.2: events are the received state, or TIMER for the detection time.)

use std::time::{Duration, SystemTime};

use super::packet::{BfdState, Diag, Packet};
use super::BfdStatus;
use crate::config::BfdConfig;

/// RFC 5880 §6.8.3: while the session is not Up, Desired Min TX is at least one second.
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// Timers the core arms through [`Output::SetTimer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BfdTimer {
    /// The periodic transmission timer (§6.8.7), jittered.
    Tx,
    /// The Detection Time (§6.8.4), restarted by every valid packet.
    Detect,
}

/// What happens to a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Bring the session out of AdminDown: Down, transmitting at the slow rate.
    Start,
    /// A valid packet addressed to this session (decoded by [`Packet::decode`],
    /// demultiplexed by Your Discriminator or the source address, TTL checked).
    Packet(Packet),
    /// A timer armed with [`Output::SetTimer`] fired.
    Timer(BfdTimer),
    /// §6.8.16: take the session administratively down (shutdown): state AdminDown,
    /// diagnostic 7, one packet saying so.
    AdminDown,
    /// New intervals or multiplier; a Poll Sequence when the session is Up (§6.8.3).
    Reconfigure(BfdConfig),
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Encode and transmit this packet to the peer.
    Send(Packet),
    /// (Re)arm a timer.
    SetTimer(BfdTimer, Duration),
    /// Disarm a timer.
    CancelTimer(BfdTimer),
    /// bfd.SessionState changed, with bfd.LocalDiag after the change.
    StateChanged {
        /// Before.
        from: BfdState,
        /// After.
        to: BfdState,
        /// Why.
        diag: Diag,
    },
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn from_micros(us: u32) -> Duration {
    Duration::from_micros(us as u64)
}

/// One session's state variables (RFC 5880 §6.8.1) plus counters.
#[derive(Debug, Clone)]
pub struct BfdSession {
    cfg: BfdConfig,
    /// bfd.SessionState.
    state: BfdState,
    /// bfd.RemoteSessionState.
    remote_state: BfdState,
    /// bfd.LocalDiscr, never 0.
    local_disc: u32,
    /// bfd.RemoteDiscr, 0 while unknown.
    remote_disc: u32,
    /// bfd.LocalDiag.
    local_diag: Diag,
    /// The peer's last Diag, for status.
    remote_diag: Diag,
    /// bfd.DesiredMinTxInterval as advertised now (µs).
    desired_min_tx: u32,
    /// bfd.RequiredMinRxInterval as advertised now (µs).
    required_min_rx: u32,
    /// bfd.RemoteMinRxInterval (µs), initially 1.
    remote_min_rx: u32,
    /// The peer's last Desired Min TX (µs), for the Detection Time.
    remote_desired_min_tx: u32,
    /// The peer's Detect Mult; 0 until a packet arrives (no Detection Time yet).
    remote_detect_mult: u8,
    /// bfd.RemoteDemandMode.
    remote_demand: bool,
    /// A Poll Sequence is in progress (§6.5): periodic packets carry P until an F arrives.
    poll: bool,
    /// The Desired Min TX actually used for transmission: an increase waits for the end of
    /// the Poll Sequence (§6.8.3).
    tx_in_use: u32,
    /// The Required Min RX actually used for the Detection Time: a decrease waits for the
    /// end of the Poll Sequence (§6.8.3).
    rx_in_use: u32,
    /// xorshift state for the transmit jitter (§6.8.7).
    rng: u64,
    /// Up → Down transitions.
    flaps: u64,
    /// Up → Down transitions other than the peer's AdminDown: what tears BGP down.
    failures: u64,
    packets_in: u64,
    packets_out: u64,
}

impl BfdSession {
    /// A session in AdminDown with discriminator `local_disc` (non-zero, unique on this
    /// system); `seed` feeds the transmit jitter. [`Input::Start`] brings it up.
    pub fn new(local_disc: u32, cfg: BfdConfig, seed: u64) -> BfdSession {
        let slow = micros(cfg.min_tx.max(SLOW_TX));
        BfdSession {
            state: BfdState::AdminDown,
            remote_state: BfdState::Down,
            local_disc,
            remote_disc: 0,
            local_diag: Diag::None,
            remote_diag: Diag::None,
            desired_min_tx: slow,
            required_min_rx: micros(cfg.min_rx),
            remote_min_rx: 1,
            remote_desired_min_tx: 0,
            remote_detect_mult: 0,
            remote_demand: false,
            poll: false,
            tx_in_use: slow,
            rx_in_use: micros(cfg.min_rx),
            rng: seed | 1,
            flaps: 0,
            failures: 0,
            packets_in: 0,
            packets_out: 0,
            cfg,
        }
    }

    /// bfd.SessionState.
    pub fn state(&self) -> BfdState {
        self.state
    }

    /// bfd.LocalDiscr.
    pub fn local_discriminator(&self) -> u32 {
        self.local_disc
    }

    /// Whether a Poll Sequence is in progress.
    pub fn polling(&self) -> bool {
        self.poll
    }

    /// The periodic transmission interval before jitter (§6.8.7): the greater of our
    /// Desired Min TX in use and the peer's Required Min RX; `None` when the peer asked for
    /// no periodic packets (Required Min RX 0, or Demand mode while both are Up).
    pub fn tx_interval(&self) -> Option<Duration> {
        if self.remote_min_rx == 0
            || (self.remote_demand
                && self.state == BfdState::Up
                && self.remote_state == BfdState::Up)
        {
            return None;
        }
        Some(from_micros(self.tx_in_use.max(self.remote_min_rx)))
    }

    /// The Detection Time (§6.8.4): the peer's Detect Mult times the greater of our
    /// Required Min RX in use and the peer's last Desired Min TX. `None` before the first
    /// packet.
    pub fn detect_time(&self) -> Option<Duration> {
        if self.remote_detect_mult == 0 {
            return None;
        }
        let interval = self.rx_in_use.max(self.remote_desired_min_tx) as u64;
        Some(Duration::from_micros(
            interval * self.remote_detect_mult as u64,
        ))
    }

    /// A snapshot for status pages; `since` is when the current state was entered (the
    /// shell keeps the clock).
    pub fn status(&self, since: SystemTime) -> BfdStatus {
        BfdStatus {
            state: self.state,
            remote_state: self.remote_state,
            local_discriminator: self.local_disc,
            remote_discriminator: self.remote_disc,
            local_diag: self.local_diag,
            remote_diag: self.remote_diag,
            min_tx: self.cfg.min_tx,
            min_rx: self.cfg.min_rx,
            multiplier: self.cfg.multiplier,
            tx_interval: self.tx_interval(),
            detect_time: self.detect_time(),
            remote_min_rx: from_micros(self.remote_min_rx),
            remote_min_tx: from_micros(self.remote_desired_min_tx),
            remote_multiplier: self.remote_detect_mult,
            since,
            flaps: self.flaps,
            failures: self.failures,
        }
    }

    /// Valid packets received and packets sent.
    pub fn packets(&self) -> (u64, u64) {
        (self.packets_in, self.packets_out)
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.start(&mut out),
            Input::Packet(p) => self.receive(p, &mut out),
            Input::Timer(BfdTimer::Tx) => {
                if self.state != BfdState::AdminDown || self.local_diag == Diag::AdminDown {
                    self.send(false, &mut out);
                    self.arm_tx(&mut out);
                }
            }
            Input::Timer(BfdTimer::Detect) => self.detection_time_expired(&mut out),
            Input::AdminDown => self.admin_down(&mut out),
            Input::Reconfigure(cfg) => self.reconfigure(cfg, &mut out),
        }
        out
    }

    fn start(&mut self, out: &mut Vec<Output>) {
        if self.state != BfdState::AdminDown {
            return;
        }
        self.state = BfdState::Down;
        self.local_diag = Diag::None;
        out.push(Output::StateChanged {
            from: BfdState::AdminDown,
            to: BfdState::Down,
            diag: Diag::None,
        });
        self.apply_slow_rate();
        self.send(false, out);
        self.arm_tx(out);
    }

    /// §6.8.16: AdminDown, diagnostic 7, tell the peer at once.
    fn admin_down(&mut self, out: &mut Vec<Output>) {
        if self.state == BfdState::AdminDown {
            return;
        }
        let from = self.state;
        if from == BfdState::Up {
            self.flaps += 1;
        }
        self.state = BfdState::AdminDown;
        self.local_diag = Diag::AdminDown;
        self.poll = false;
        out.push(Output::StateChanged {
            from,
            to: BfdState::AdminDown,
            diag: Diag::AdminDown,
        });
        out.push(Output::CancelTimer(BfdTimer::Detect));
        self.send(false, out);
        self.arm_tx(out);
    }

    /// §6.8.4: no valid packet for a Detection Time.
    fn detection_time_expired(&mut self, out: &mut Vec<Output>) {
        // §6.8.1: bfd.RemoteDiscr is reset when a Detection Time passes in silence; the
        // peer's timers are forgotten with it (no new Detection Time until it speaks).
        self.remote_disc = 0;
        self.remote_detect_mult = 0;
        self.remote_min_rx = 1;
        self.remote_desired_min_tx = 0;
        self.remote_demand = false;
        if matches!(self.state, BfdState::Init | BfdState::Up) {
            self.transition(BfdState::Down, Diag::DetectionTimeExpired, out);
        }
    }

    /// §6.8.6 Reception of BFD Control Packets, after the checks of `Packet::decode`.
    fn receive(&mut self, p: Packet, out: &mut Vec<Output>) {
        if p.your_disc != 0 && p.your_disc != self.local_disc {
            return; // not ours (the shell demultiplexes; this is a second line)
        }
        if self.state == BfdState::AdminDown {
            return; // §6.8.6: "If bfd.SessionState is AdminDown, discard the packet."
        }
        self.packets_in += 1;
        let tx_before = self.tx_interval();
        self.remote_disc = p.my_disc;
        self.remote_state = p.state;
        self.remote_diag = p.diag;
        self.remote_demand = p.demand;
        self.remote_min_rx = p.required_min_rx;
        self.remote_desired_min_tx = p.desired_min_tx;
        self.remote_detect_mult = p.detect_mult;
        if p.final_ && self.poll {
            // §6.5: the Poll Sequence ends; the new intervals take full effect.
            self.poll = false;
            self.tx_in_use = self.desired_min_tx;
            self.rx_in_use = self.required_min_rx;
        }
        let changed = self.state_machine(p.state, out);
        if p.poll {
            // §6.8.7: answer a Poll at once with F set and P clear.
            self.send(true, out);
        }
        if let Some(d) = self.detect_time() {
            out.push(Output::SetTimer(BfdTimer::Detect, d));
        }
        if !changed && self.tx_interval() != tx_before {
            self.arm_tx(out);
        }
    }

    /// The §6.8.6 transitions on the received state. Returns whether the state changed.
    fn state_machine(&mut self, received: BfdState, out: &mut Vec<Output>) -> bool {
        let (to, diag) = match (self.state, received) {
            // The peer went AdminDown: Down, but not a failure (RFC 5882 §3.2).
            (BfdState::Down, BfdState::AdminDown) => return false,
            (_, BfdState::AdminDown) => (BfdState::Down, Diag::NeighborDown),
            (BfdState::Down, BfdState::Down) => (BfdState::Init, Diag::None),
            (BfdState::Down, BfdState::Init) => (BfdState::Up, Diag::None),
            (BfdState::Init, BfdState::Init | BfdState::Up) => (BfdState::Up, Diag::None),
            (BfdState::Up, BfdState::Down) => (BfdState::Down, Diag::NeighborDown),
            _ => return false,
        };
        let neighbour_admin_down = received == BfdState::AdminDown;
        self.transition_with(to, diag, neighbour_admin_down, out);
        true
    }

    fn transition(&mut self, to: BfdState, diag: Diag, out: &mut Vec<Output>) {
        self.transition_with(to, diag, false, out);
    }

    /// Enters `to`: counters, the rate for the new state (slow unless Up; going Up starts a
    /// Poll Sequence to the configured rate), and a packet at once so that the peer learns
    /// the new state without waiting for the transmission timer.
    fn transition_with(
        &mut self,
        to: BfdState,
        diag: Diag,
        neighbour_admin_down: bool,
        out: &mut Vec<Output>,
    ) {
        let from = self.state;
        if from == to {
            return;
        }
        if from == BfdState::Up {
            self.flaps += 1;
            if !neighbour_admin_down {
                self.failures += 1;
            }
        }
        self.state = to;
        // bfd.LocalDiag is the reason for the most recent change; Up needs none.
        self.local_diag = diag;
        out.push(Output::StateChanged { from, to, diag });
        if to == BfdState::Up {
            self.set_desired(micros(self.cfg.min_tx), micros(self.cfg.min_rx));
        } else {
            self.poll = false;
            self.apply_slow_rate();
        }
        self.send(false, out);
        self.arm_tx(out);
    }

    /// Not Up: at least one second between packets (§6.8.3), applied at once (no Poll
    /// Sequence outside Up).
    fn apply_slow_rate(&mut self) {
        self.desired_min_tx = micros(self.cfg.min_tx.max(SLOW_TX));
        self.required_min_rx = micros(self.cfg.min_rx);
        self.tx_in_use = self.desired_min_tx;
        self.rx_in_use = self.required_min_rx;
    }

    /// Up: new advertised intervals through a Poll Sequence (§6.8.3). A faster transmit
    /// rate and a longer Detection Time apply at once; a slower rate and a shorter
    /// Detection Time wait for the Final.
    fn set_desired(&mut self, tx: u32, rx: u32) {
        if tx == self.desired_min_tx && rx == self.required_min_rx {
            return;
        }
        self.desired_min_tx = tx;
        self.required_min_rx = rx;
        self.poll = true;
        if tx < self.tx_in_use {
            self.tx_in_use = tx;
        }
        if rx > self.rx_in_use {
            self.rx_in_use = rx;
        }
    }

    fn reconfigure(&mut self, cfg: BfdConfig, out: &mut Vec<Output>) {
        self.cfg = cfg;
        match self.state {
            BfdState::Up => {
                let was_polling = self.poll;
                self.set_desired(micros(cfg.min_tx), micros(cfg.min_rx));
                if self.poll && !was_polling {
                    self.send(false, out);
                    self.arm_tx(out);
                }
            }
            BfdState::AdminDown => {}
            _ => {
                self.apply_slow_rate();
                self.arm_tx(out);
            }
        }
        if let Some(d) = self.detect_time() {
            out.push(Output::SetTimer(BfdTimer::Detect, d));
        }
    }

    fn packet(&self, final_: bool) -> Packet {
        Packet {
            diag: self.local_diag,
            state: self.state,
            poll: self.poll && !final_,
            final_,
            cpi: false,
            auth: false,
            demand: false,
            detect_mult: self.cfg.multiplier,
            my_disc: self.local_disc,
            your_disc: self.remote_disc,
            desired_min_tx: self.desired_min_tx,
            required_min_rx: self.required_min_rx,
            required_min_echo_rx: 0,
        }
    }

    fn send(&mut self, final_: bool, out: &mut Vec<Output>) {
        self.packets_out += 1;
        out.push(Output::Send(self.packet(final_)));
    }

    /// Arms the transmission timer with §6.8.7 jitter: 75-100% of the interval, 75-90%
    /// when our Detect Mult is 1.
    fn arm_tx(&mut self, out: &mut Vec<Output>) {
        let Some(interval) = self.tx_interval() else {
            out.push(Output::CancelTimer(BfdTimer::Tx));
            return;
        };
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng % 1000) as f64 / 1000.0;
        let span = if self.cfg.multiplier == 1 { 0.15 } else { 0.25 };
        out.push(Output::SetTimer(
            BfdTimer::Tx,
            interval.mul_f64(0.75 + span * frac),
        ));
    }
}
