//! `lbml-signals-client`: subscribe to lbml's prediction stream and print one JSON line per event.
//!
//! Events: `ready`, `signal` (with `latency_ns` = decode time − bar close), `heartbeat`, `gap`,
//! `repeat`, `state` (live / fallback), `error` (undecodable message). A real bot would act on
//! `Tracker::state()` instead of printing.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lbml_signals_client::{decode, read_certificate, Event, Message, Tracker};
use serde_json::json;

const USAGE: &str = "usage: lbml-signals-client [--endpoint E] [--topic T]... [--stale-after-ms N] \
[--server-key CERT --client-key CERT] [--count N] [--duration-ms N]";

struct Args {
    endpoint: String,
    topics: Vec<String>,
    stale_after_ms: u64,
    server_key: Option<PathBuf>,
    client_key: Option<PathBuf>,
    count: Option<u64>,
    duration_ms: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        endpoint: "tcp://127.0.0.1:5557".to_string(),
        topics: Vec::new(),
        stale_after_ms: 3000,
        server_key: None,
        client_key: None,
        count: None,
        duration_ms: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{} needs a value", flag));
        match flag.as_str() {
            "--endpoint" => args.endpoint = value()?,
            "--topic" => args.topics.push(value()?),
            "--stale-after-ms" => args.stale_after_ms = number(&flag, &value()?)?,
            "--server-key" => args.server_key = Some(PathBuf::from(value()?)),
            "--client-key" => args.client_key = Some(PathBuf::from(value()?)),
            "--count" => args.count = Some(number(&flag, &value()?)?),
            "--duration-ms" => args.duration_ms = Some(number(&flag, &value()?)?),
            "-h" | "--help" => {
                println!("{}", USAGE);
                process::exit(0);
            }
            other => return Err(format!("unknown argument {}", other)),
        }
    }
    if args.server_key.is_some() != args.client_key.is_some() {
        return Err("CURVE needs both --server-key and --client-key".to_string());
    }
    if args.topics.is_empty() {
        args.topics = vec!["signal.".to_string(), "heartbeat".to_string()];
    }
    Ok(args)
}

fn number(flag: &str, text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| format!("{}: not a non-negative integer: {}", flag, text))
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn emit(out: &mut impl Write, value: serde_json::Value) {
    // A closed stdout (reader gone) ends the client.
    if writeln!(out, "{}", value).is_err() {
        process::exit(0);
    }
}

fn flush(out: &mut impl Write) {
    if out.flush().is_err() {
        process::exit(0);
    }
}

fn emit_events(out: &mut impl Write, events: Vec<Event>, at: u64) {
    for event in events {
        let value = match event {
            Event::Gap { expected, got } => json!({"event": "gap", "expected": expected, "got": got, "at_ns": at}),
            Event::Repeat { seq, last } => json!({"event": "repeat", "seq": seq, "last": last, "at_ns": at}),
            Event::StateChange { from, to, reason } => json!({
                "event": "state", "from": from.as_str(), "state": to.as_str(), "reason": reason, "at_ns": at
            }),
        };
        emit(out, value);
    }
}

fn run(args: Args) -> Result<(), String> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::SUB).map_err(|e| e.to_string())?;
    if let (Some(server), Some(client)) = (&args.server_key, &args.client_key) {
        let (server_public, _) = read_certificate(server)?;
        let (client_public, client_secret) = read_certificate(client)?;
        let client_secret = client_secret.ok_or_else(|| format!("{}: no secret-key", client.display()))?;
        socket.set_curve_serverkey(server_public.as_bytes()).map_err(|e| e.to_string())?;
        socket.set_curve_publickey(client_public.as_bytes()).map_err(|e| e.to_string())?;
        socket.set_curve_secretkey(client_secret.as_bytes()).map_err(|e| e.to_string())?;
    }
    socket.set_rcvhwm(100_000).map_err(|e| e.to_string())?;
    for topic in &args.topics {
        socket.set_subscribe(topic.as_bytes()).map_err(|e| e.to_string())?;
    }
    socket.connect(&args.endpoint).map_err(|e| format!("{}: {}", args.endpoint, e))?;

    let all_signals = args.topics.iter().any(|t| "signal.".starts_with(t.as_str()));
    let mut tracker = Tracker::new(args.stale_after_ms * 1_000_000, all_signals);
    // Buffered: flushed whenever the socket has been drained, so a burst costs one write.
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    emit(&mut out, json!({"event": "ready", "endpoint": args.endpoint, "topics": args.topics}));
    flush(&mut out);

    let started = Instant::now();
    let deadline = args.duration_ms.map(|ms| started + Duration::from_millis(ms));
    let mut signals = 0u64;
    loop {
        if let Some(d) = deadline {
            if Instant::now() >= d {
                flush(&mut out);
                return Ok(());
            }
        }
        let ready = socket.poll(zmq::POLLIN, 50).map_err(|e| e.to_string())?;
        if ready > 0 {
            while let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) {
                if frames.len() != 2 {
                    emit(&mut out, json!({"event": "error", "error": format!("{} frames", frames.len()), "at_ns": now_ns()}));
                    continue;
                }
                let decoded = decode(&frames[0], &frames[1]);
                let at = now_ns(); // "decoded" time: latency_ns includes the decoding
                let message = match decoded {
                    Ok(m) => m,
                    Err(e) => {
                        emit(&mut out, json!({"event": "error", "error": e.to_string(), "at_ns": at}));
                        continue;
                    }
                };
                let events = tracker.on_message(&message, at);
                match &message {
                    Message::Signal(s) => {
                        signals += 1;
                        emit(&mut out, json!({
                            "event": "signal", "seq": s.seq, "symbol": s.symbol, "ts_event": s.ts_event,
                            "direction": s.direction.as_str(), "probability": s.probability,
                            "target_leverage": s.target_leverage, "decoded_ns": at,
                            "latency_ns": at as i64 - s.ts_event,
                            "transport_ns": at as i64 - s.ts_publish,
                        }));
                    }
                    Message::Heartbeat(h) => emit(&mut out, json!({
                        "event": "heartbeat", "publisher_id": h.publisher_id, "last_seq": h.last_seq,
                        "status": h.status.as_str(), "dropped": h.dropped, "at_ns": at,
                    })),
                }
                emit_events(&mut out, events, at);
                if args.count.map_or(false, |n| signals >= n) {
                    flush(&mut out);
                    return Ok(());
                }
            }
        }
        let at = now_ns();
        let events = tracker.on_tick(at);
        emit_events(&mut out, events, at);
        flush(&mut out);
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lbml-signals-client: error: {}\n{}", e, USAGE);
            process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("lbml-signals-client: error: {}", e);
        process::exit(1);
    }
}
