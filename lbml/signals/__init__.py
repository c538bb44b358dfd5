"""Predictions over ZeroMQ: versioned payloads, durable sequence numbers, heartbeats, CurveZMQ."""
