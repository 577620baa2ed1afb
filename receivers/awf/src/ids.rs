//! Deterministic trace and span ids.
//!
//! Every id is a truncated SHA-256 of what identifies the unit of work (execution, step and
//! attempt, agent invocation), so a replayed or re-delivered event yields the very same ids and
//! a backend sees one span, never two.

use sha2::{Digest, Sha256};

fn digest(domain: &str, parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    for p in parts {
        // Length-prefix each part so ("ab","c") and ("a","bc") never collide.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

fn first<const N: usize>(d: &[u8; 32]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&d[..N]);
    // An all-zero id is invalid in OTLP; astronomically unlikely, but cheap to rule out.
    if out.iter().all(|b| *b == 0) {
        out[N - 1] = 1;
    }
    out
}

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// The trace of one execution.
pub fn trace_id(execution_id: &str) -> TraceId {
    first(&digest("awf.trace", &[execution_id]))
}

/// The `awf.workflow` span of one execution.
pub fn workflow_span_id(execution_id: &str) -> SpanId {
    first(&digest("awf.workflow", &[execution_id]))
}

/// The `awf.step` span of one attempt of one step.
pub fn step_span_id(execution_id: &str, step_id: &str, attempt: u32) -> SpanId {
    first(&digest(
        "awf.step",
        &[execution_id, step_id, &attempt.to_string()],
    ))
}

/// The `awf.agent.invoke` span of one invocation of `agent_id` within a step attempt (or
/// directly within the workflow when `step_id` is empty). `invocation` distinguishes several
/// invocations of one agent in one attempt (the event's `invocation_id`, else empty).
pub fn agent_span_id(
    execution_id: &str,
    step_id: &str,
    attempt: u32,
    agent_id: &str,
    invocation: &str,
) -> SpanId {
    first(&digest(
        "awf.agent.invoke",
        &[
            execution_id,
            step_id,
            &attempt.to_string(),
            agent_id,
            invocation,
        ],
    ))
}

/// A 64-bit key for "this thing was already counted" windows (retries, fallbacks, events).
pub fn key(domain: &str, parts: &[&str]) -> u64 {
    u64::from_le_bytes(first(&digest(domain, parts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(trace_id("ex-1"), trace_id("ex-1"));
        assert_ne!(trace_id("ex-1"), trace_id("ex-2"));
        assert_ne!(step_span_id("e", "s", 1), step_span_id("e", "s", 2));
        assert_ne!(step_span_id("e", "s", 1), workflow_span_id("e"));
        assert_ne!(key("k", &["ab", "c"]), key("k", &["a", "bc"]));
        // Pin one value so an accidental change of the derivation (which would split every
        // in-flight trace across a Sluice upgrade) fails loudly.
        assert_eq!(
            hex::encode(trace_id("ex-1")),
            "080a81dc037ed349d2ceebe4f05b864f"
        );
    }
}
