//! Reference subscriber for lbml's prediction stream (schema version 1).
//!
//! Wire format: two-frame ZeroMQ messages `[topic, payload]` on a PUB socket. Topics are
//! `signal.<SYMBOL>` and `heartbeat`; payloads are JSON objects or MessagePack maps (the
//! publisher's `encoding`, detected per message) whose `kind` is `signal` or `heartbeat`.
//! The schema lives in `schemas/signal.schema.json` at the repository root.
//!
//! [`Tracker`] is the part a trading bot embeds: it checks sequence numbers (gaps, repeats) and
//! freshness, and says when the bot must stop trusting lbml and fall back to its own signals.

use std::fmt;
use std::fs;
use std::path::Path;

use serde::Deserialize;

/// The payload schema version this client understands.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Long,
    Short,
    Flat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedStatus {
    Healthy,
    Degraded,
    Stale,
}

impl Direction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Direction::Long => "long",
            Direction::Short => "short",
            Direction::Flat => "flat",
        }
    }
}

impl FeedStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            FeedStatus::Healthy => "healthy",
            FeedStatus::Degraded => "degraded",
            FeedStatus::Stale => "stale",
        }
    }
}

/// One prediction, published at a bar close.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Signal {
    pub schema_version: u32,
    pub publisher_id: String,
    pub seq: u64,
    /// Bar close time, ns since the Unix epoch.
    pub ts_event: i64,
    pub ts_publish: i64,
    pub symbol: String,
    pub direction: Direction,
    pub probability: f64,
    pub confidence: f64,
    pub kelly_fraction: f64,
    pub target_leverage: f64,
    pub stop_loss: Option<f64>,
    pub take_profit: Option<f64>,
    /// Prediction horizon in seconds.
    pub horizon: u64,
    pub model_id: String,
    pub feature_schema_hash: String,
}

/// Publisher status, sent every `interval_s` seconds whether or not bars arrive.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Heartbeat {
    pub schema_version: u32,
    pub publisher_id: String,
    pub ts_publish: i64,
    pub model_id: String,
    /// Sequence number of the last signal the publisher sent (0: none yet).
    pub last_seq: u64,
    pub last_bar_ts: Option<i64>,
    pub status: FeedStatus,
    pub dropped: u64,
    pub interval_s: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Message {
    Signal(Signal),
    Heartbeat(Heartbeat),
}

#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// The payload is neither a JSON object nor a MessagePack map.
    UnsupportedEncoding,
    UnsupportedVersion(u32),
    Malformed(String),
    TopicMismatch { topic: String, expected: String },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnsupportedEncoding => write!(f, "payload is neither JSON nor MessagePack"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "schema_version {} (this client reads {})", v, SCHEMA_VERSION)
            }
            DecodeError::Malformed(m) => write!(f, "malformed payload: {}", m),
            DecodeError::TopicMismatch { topic, expected } => {
                write!(f, "topic {:?} does not match payload (expected {:?})", topic, expected)
            }
        }
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    schema_version: u32,
}

/// The two payload encodings a publisher can be configured for (`encoding = "json" | "msgpack"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    MessagePack,
}

impl Encoding {
    /// Detect the encoding from the first byte: `{` for JSON, a map marker for MessagePack.
    pub fn detect(payload: &[u8]) -> Option<Encoding> {
        match payload.first()? {
            b'{' => Some(Encoding::Json),
            0x80..=0x8f | 0xde | 0xdf => Some(Encoding::MessagePack),
            _ => None,
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(self, payload: &[u8]) -> Result<T, String> {
        match self {
            Encoding::Json => serde_json::from_slice(payload).map_err(|e| e.to_string()),
            Encoding::MessagePack => rmp_serde::from_slice(payload).map_err(|e| e.to_string()),
        }
    }
}

/// Decode one `[topic, payload]` message (JSON or MessagePack) and check that the topic matches.
pub fn decode(topic: &[u8], payload: &[u8]) -> Result<Message, DecodeError> {
    let encoding = Encoding::detect(payload).ok_or(DecodeError::UnsupportedEncoding)?;
    // One parse on the hot path; the version probe runs only to explain a failure or a mismatch.
    let version_error = || match encoding.parse::<VersionProbe>(payload) {
        Ok(p) if p.schema_version != SCHEMA_VERSION => Some(DecodeError::UnsupportedVersion(p.schema_version)),
        _ => None,
    };
    let message: Message = match encoding.parse(payload) {
        Ok(m) => m,
        Err(e) => return Err(version_error().unwrap_or(DecodeError::Malformed(e))),
    };
    let version = match &message {
        Message::Signal(s) => s.schema_version,
        Message::Heartbeat(h) => h.schema_version,
    };
    if version != SCHEMA_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let expected = match &message {
        Message::Signal(s) => format!("signal.{}", s.symbol),
        Message::Heartbeat(_) => "heartbeat".to_string(),
    };
    if topic != expected.as_bytes() {
        return Err(DecodeError::TopicMismatch {
            topic: String::from_utf8_lossy(topic).into_owned(),
            expected,
        });
    }
    Ok(message)
}

/// Whether the bot may act on lbml's signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing received yet.
    Waiting,
    /// The publisher is alive and its feed is not stale: act on its signals.
    Live,
    /// Silence for longer than the timeout, or the publisher reports a stale feed:
    /// fall back to the bot's own signals.
    Fallback,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Live => "live",
            State::Fallback => "fallback",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Signals `expected..got` (exclusive of `got`) were never received.
    Gap { expected: u64, got: u64 },
    /// A signal whose sequence number is not above the last one seen; it is ignored.
    Repeat { seq: u64, last: u64 },
    StateChange { from: State, to: State, reason: String },
}

/// Sequence and freshness bookkeeping for one publisher.
#[derive(Debug)]
pub struct Tracker {
    stale_after_ns: u64,
    heartbeat_gaps: bool,
    last_seen_ns: Option<u64>,
    last_seq: Option<u64>,
    state: State,
}

impl Tracker {
    /// `stale_after_ns`: silence after which the state becomes `Fallback`.
    /// `heartbeat_gaps`: also compare heartbeats' `last_seq` with the signals seen; only valid
    /// when subscribed to every `signal.` topic of the publisher.
    pub fn new(stale_after_ns: u64, heartbeat_gaps: bool) -> Self {
        Tracker { stale_after_ns, heartbeat_gaps, last_seen_ns: None, last_seq: None, state: State::Waiting }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Account for one decoded message received at `now_ns`.
    pub fn on_message(&mut self, message: &Message, now_ns: u64) -> Vec<Event> {
        let mut events = Vec::new();
        self.last_seen_ns = Some(now_ns);
        match message {
            Message::Signal(s) => {
                match self.last_seq {
                    Some(last) if s.seq <= last => {
                        events.push(Event::Repeat { seq: s.seq, last });
                    }
                    Some(last) if s.seq > last + 1 => {
                        events.push(Event::Gap { expected: last + 1, got: s.seq });
                        self.last_seq = Some(s.seq);
                    }
                    _ => self.last_seq = Some(s.seq),
                }
                if self.state != State::Live {
                    self.set_state(State::Live, "signal received", &mut events);
                }
            }
            Message::Heartbeat(h) => {
                if self.heartbeat_gaps {
                    match self.last_seq {
                        Some(last) if h.last_seq > last => {
                            events.push(Event::Gap { expected: last + 1, got: h.last_seq + 1 });
                            self.last_seq = Some(h.last_seq);
                        }
                        None if h.last_seq > 0 => self.last_seq = Some(h.last_seq),
                        _ => {}
                    }
                }
                if h.status == FeedStatus::Stale {
                    if self.state != State::Fallback {
                        self.set_state(State::Fallback, "publisher reports a stale feed", &mut events);
                    }
                } else if self.state != State::Live {
                    self.set_state(State::Live, "heartbeat received", &mut events);
                }
            }
        }
        events
    }

    /// Check freshness at `now_ns` (call it regularly, e.g. on every poll timeout).
    pub fn on_tick(&mut self, now_ns: u64) -> Vec<Event> {
        let mut events = Vec::new();
        if let Some(seen) = self.last_seen_ns {
            if self.state == State::Live && now_ns.saturating_sub(seen) > self.stale_after_ns {
                let ms = (now_ns - seen) / 1_000_000;
                self.set_state(State::Fallback, &format!("no message for {} ms", ms), &mut events);
            }
        }
        events
    }

    fn set_state(&mut self, to: State, reason: &str, events: &mut Vec<Event>) {
        events.push(Event::StateChange { from: self.state, to, reason: reason.to_string() });
        self.state = to;
    }
}

/// Read the Z85 `public-key` and, when present, `secret-key` of a ZeroMQ certificate file
/// (the format written by `lbml signals keygen` and pyzmq's `zmq.auth`).
pub fn read_certificate(path: &Path) -> Result<(String, Option<String>), String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {}", path.display(), e))?;
    let mut public = None;
    let mut secret = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"').to_string();
            match key.trim() {
                "public-key" => public = Some(value),
                "secret-key" => secret = Some(value),
                _ => {}
            }
        }
    }
    for key in public.iter().chain(secret.iter()) {
        if key.len() != 40 {
            return Err(format!("{}: a Z85 CURVE key has 40 characters", path.display()));
        }
    }
    match public {
        Some(p) => Ok((p, secret)),
        None => Err(format!("{}: no public-key in certificate", path.display())),
    }
}
