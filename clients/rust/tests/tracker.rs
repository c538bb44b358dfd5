use lbml_signals_client::{decode, DecodeError, Encoding, Event, Message, State, Tracker};

const MS: u64 = 1_000_000;

fn signal(seq: u64) -> (Vec<u8>, Vec<u8>) {
    let payload = format!(
        r#"{{"schema_version":1,"kind":"signal","publisher_id":"p","seq":{},"ts_event":1700000000000000000,
        "ts_publish":1700000000000100000,"symbol":"BTCUSDT","direction":"long","probability":0.61,
        "confidence":0.22,"kelly_fraction":0.8,"target_leverage":0.2,"stop_loss":99.0,"take_profit":101.5,
        "horizon":900,"model_id":"m1","feature_schema_hash":"abc","extra_field_from_a_newer_minor":1}}"#,
        seq
    );
    (b"signal.BTCUSDT".to_vec(), payload.into_bytes())
}

fn heartbeat(last_seq: u64, status: &str) -> (Vec<u8>, Vec<u8>) {
    let payload = format!(
        r#"{{"schema_version":1,"kind":"heartbeat","publisher_id":"p","ts_publish":1,"model_id":"m1",
        "last_seq":{},"last_bar_ts":null,"status":"{}","dropped":0,"subscribers":1,"interval_s":1.0}}"#,
        last_seq, status
    );
    (b"heartbeat".to_vec(), payload.into_bytes())
}

fn msg(frames: (Vec<u8>, Vec<u8>)) -> Message {
    decode(&frames.0, &frames.1).expect("decodes")
}

#[test]
fn decodes_a_signal_and_ignores_unknown_fields() {
    match msg(signal(7)) {
        Message::Signal(s) => {
            assert_eq!(s.seq, 7);
            assert_eq!(s.symbol, "BTCUSDT");
            assert_eq!(s.direction.as_str(), "long");
            assert_eq!(s.horizon, 900);
            assert_eq!(s.stop_loss, Some(99.0));
        }
        other => panic!("not a signal: {:?}", other),
    }
}

#[test]
fn rejects_wrong_topic_version_and_encoding() {
    let (_, payload) = signal(1);
    assert!(matches!(decode(b"signal.ETHUSDT", &payload), Err(DecodeError::TopicMismatch { .. })));
    let v2 = String::from_utf8(payload.clone()).unwrap().replace("\"schema_version\":1", "\"schema_version\":2");
    assert_eq!(decode(b"signal.BTCUSDT", v2.as_bytes()), Err(DecodeError::UnsupportedVersion(2)));
    assert_eq!(decode(b"signal.BTCUSDT", &[0x93, 0x01]), Err(DecodeError::UnsupportedEncoding)); // an array
    assert!(matches!(decode(b"signal.BTCUSDT", &[0x8f, 0x01]), Err(DecodeError::Malformed(_)))); // truncated map
    assert!(matches!(decode(b"signal.BTCUSDT", b"{\"schema_version\":1}"), Err(DecodeError::Malformed(_))));
}

/// The JSON test payload re-encoded as a MessagePack map (what `encoding = "msgpack"` sends).
fn as_msgpack(frames: (Vec<u8>, Vec<u8>)) -> (Vec<u8>, Vec<u8>) {
    let value: serde_json::Value = serde_json::from_slice(&frames.1).unwrap();
    (frames.0, rmp_serde::to_vec_named(&value).unwrap())
}

#[test]
fn decodes_messagepack_payloads_like_json_ones() {
    for frames in [signal(7), heartbeat(3, "healthy")] {
        let packed = as_msgpack(frames.clone());
        assert_eq!(Encoding::detect(&packed.1), Some(Encoding::MessagePack));
        assert_eq!(msg(packed), msg(frames));
    }
    let v2 = as_msgpack(signal(1));
    let mut value: serde_json::Value = rmp_serde::from_slice(&v2.1).unwrap();
    value["schema_version"] = serde_json::json!(2);
    let v2 = rmp_serde::to_vec_named(&value).unwrap();
    assert_eq!(decode(b"signal.BTCUSDT", &v2), Err(DecodeError::UnsupportedVersion(2)));
}

#[test]
fn detects_gaps_and_repeats() {
    let mut t = Tracker::new(3000 * MS, true);
    assert!(t.on_message(&msg(signal(5)), 0).iter().all(|e| !matches!(e, Event::Gap { .. })));
    assert!(t.on_message(&msg(signal(6)), 1).iter().all(|e| !matches!(e, Event::Gap { .. })));
    assert_eq!(t.on_message(&msg(signal(9)), 2), vec![Event::Gap { expected: 7, got: 9 }]);
    assert_eq!(t.on_message(&msg(signal(9)), 3), vec![Event::Repeat { seq: 9, last: 9 }]);
    // The heartbeat says signal 10 and 11 were sent: they were missed.
    assert_eq!(t.on_message(&msg(heartbeat(11, "healthy")), 4), vec![Event::Gap { expected: 10, got: 12 }]);
    assert_eq!(t.last_seq(), Some(11));
    assert!(t.on_message(&msg(signal(12)), 5).is_empty());
}

#[test]
fn heartbeat_seq_is_ignored_when_not_subscribed_to_all_signals() {
    let mut t = Tracker::new(3000 * MS, false);
    t.on_message(&msg(signal(1)), 0);
    let events = t.on_message(&msg(heartbeat(40, "healthy")), 1);
    assert!(events.iter().all(|e| !matches!(e, Event::Gap { .. })));
}

#[test]
fn silence_means_fallback_and_a_heartbeat_recovers() {
    let mut t = Tracker::new(3000 * MS, true);
    assert_eq!(t.state(), State::Waiting);
    assert!(t.on_tick(10_000 * MS).is_empty(), "no fallback before anything was received");
    t.on_message(&msg(heartbeat(0, "healthy")), 0);
    assert_eq!(t.state(), State::Live);
    assert!(t.on_tick(2_999 * MS).is_empty());
    let events = t.on_tick(3_001 * MS);
    assert!(matches!(&events[..], [Event::StateChange { to: State::Fallback, .. }]));
    assert!(t.on_tick(9_000 * MS).is_empty(), "reported once");
    t.on_message(&msg(heartbeat(0, "degraded")), 9_500 * MS);
    assert_eq!(t.state(), State::Live);
}

#[test]
fn a_stale_feed_reported_by_the_publisher_means_fallback() {
    let mut t = Tracker::new(3000 * MS, true);
    t.on_message(&msg(heartbeat(0, "healthy")), 0);
    t.on_message(&msg(heartbeat(0, "stale")), 1);
    assert_eq!(t.state(), State::Fallback);
    t.on_message(&msg(heartbeat(0, "healthy")), 2);
    assert_eq!(t.state(), State::Live);
}
