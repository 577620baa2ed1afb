//! OTLP exponential histogram buckets → Prometheus native histogram spans and deltas
//! (OpenTelemetry specification, Prometheus and OpenMetrics Compatibility, "Exponential
//! Histogram").
//!
//! OTel bucket `i` covers `(base^(offset+i), base^(offset+i+1)]`; Prometheus names a bucket by
//! its upper bound, so it becomes index `offset + i + 1`. Above scale 8 (Prometheus' finest
//! schema) `2^(scale-8)` neighbouring buckets are merged: index `(offset+i) >> d`, then `+ 1`.

use crate::remote_write::v1::{self, BucketSpan};
use crate::remote_write::{ResetHint, stale_nan};
use opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint;

/// Finest and coarsest exponential schemas Prometheus accepts.
pub const MAX_SCHEMA: i32 = 8;
pub const MIN_SCHEMA: i32 = -4;

/// Prometheus' default zero bucket width, used when OTLP gives none.
const DEFAULT_ZERO_THRESHOLD: f64 = 1e-128;
/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const NO_RECORDED_VALUE: u32 = 1;

/// Gaps of up to this many empty buckets are filled with zeros instead of opening a new span,
/// which is cheaper on the wire (the same rule as client_golang).
const MAX_FILLED_GAP: i64 = 2;

/// Converts one side (positive or negative) of an exponential histogram.
///
/// Returns `None` if a bucket index does not fit Prometheus' `sint32` span offsets, which only a
/// malformed point can cause.
pub fn convert_buckets(
    offset: i32,
    counts: &[u64],
    scale_down: u32,
) -> Option<(Vec<BucketSpan>, Vec<i64>)> {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas: Vec<i64> = Vec::new();
    // (Prometheus index, merged count) of the bucket being accumulated.
    let mut current: Option<(i64, u64)> = None;
    let mut last_emitted_index: i64 = 0;
    let mut last_emitted_count: u64 = 0;

    let mut emit = |index: i64,
                    count: u64,
                    spans: &mut Vec<BucketSpan>,
                    deltas: &mut Vec<i64>|
     -> Option<()> {
        if spans.is_empty() {
            spans.push(BucketSpan {
                offset: i32::try_from(index).ok()?,
                length: 0,
            });
        } else {
            let gap = index - last_emitted_index - 1;
            if gap > MAX_FILLED_GAP {
                spans.push(BucketSpan {
                    offset: i32::try_from(gap).ok()?,
                    length: 0,
                });
            } else {
                for _ in 0..gap {
                    deltas.push(0i64.wrapping_sub(last_emitted_count as i64));
                    last_emitted_count = 0;
                    spans.last_mut()?.length += 1;
                }
            }
        }
        deltas.push((count as i64).wrapping_sub(last_emitted_count as i64));
        spans.last_mut()?.length += 1;
        last_emitted_index = index;
        last_emitted_count = count;
        Some(())
    };

    for (i, &count) in counts.iter().enumerate() {
        let otel_index = i64::from(offset) + i64::try_from(i).ok()?;
        let index = (otel_index >> scale_down) + 1;
        match current {
            Some((cur_index, cur_count)) if cur_index == index => {
                current = Some((index, cur_count.saturating_add(count)));
            }
            Some((cur_index, cur_count)) => {
                if cur_count > 0 {
                    emit(cur_index, cur_count, &mut spans, &mut deltas)?;
                }
                current = Some((index, count));
            }
            None => current = Some((index, count)),
        }
    }
    if let Some((index, count)) = current
        && count > 0
    {
        emit(index, count, &mut spans, &mut deltas)?;
    }
    Some((spans, deltas))
}

/// The native histogram sample for an exponential histogram point at `t` (ms), or `None` if
/// its buckets cannot be represented. The caller has checked `scale >= MIN_SCHEMA`.
pub fn from_exponential(p: &ExponentialHistogramDataPoint, t: i64) -> Option<v1::Histogram> {
    let schema = p.scale.min(MAX_SCHEMA);
    // OTLP scales stop at 20; the clamp only keeps a malformed value from overflowing a shift.
    let scale_down = (p.scale - schema).clamp(0, 62) as u32;
    let zero_threshold = if p.zero_threshold > 0.0 {
        p.zero_threshold
    } else {
        DEFAULT_ZERO_THRESHOLD
    };
    let mut h = v1::Histogram {
        schema,
        zero_threshold,
        timestamp: t,
        reset_hint: ResetHint::Unknown as i32,
        ..Default::default()
    };
    if p.flags & NO_RECORDED_VALUE != 0 {
        h.count = Some(v1::histogram::Count::CountInt(0));
        h.zero_count = Some(v1::histogram::ZeroCount::ZeroCountInt(0));
        h.sum = stale_nan();
        return Some(h);
    }
    h.count = Some(v1::histogram::Count::CountInt(p.count));
    h.zero_count = Some(v1::histogram::ZeroCount::ZeroCountInt(p.zero_count));
    // A missing sum is written as 0, as Prometheus' own OTLP ingestion does.
    h.sum = p.sum.unwrap_or(0.0);
    if let Some(b) = &p.positive {
        let (spans, deltas) = convert_buckets(b.offset, &b.bucket_counts, scale_down)?;
        h.positive_spans = spans;
        h.positive_deltas = deltas;
    }
    if let Some(b) = &p.negative {
        let (spans, deltas) = convert_buckets(b.offset, &b.bucket_counts, scale_down)?;
        h.negative_spans = spans;
        h.negative_deltas = deltas;
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(offset: i32, length: u32) -> BucketSpan {
        BucketSpan { offset, length }
    }

    /// Expands spans + deltas back to (index, count) pairs, as Prometheus reads them.
    fn expand(spans: &[BucketSpan], deltas: &[i64]) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut index = 0i64;
        let mut count = 0i64;
        let mut d = deltas.iter();
        for (n, s) in spans.iter().enumerate() {
            index += i64::from(s.offset) + if n == 0 { 0 } else { 1 };
            for k in 0..s.length {
                if k > 0 {
                    index += 1;
                }
                count += d.next().unwrap();
                out.push((index, count));
            }
        }
        out
    }

    #[test]
    fn contiguous_buckets_shift_by_one() {
        let (spans, deltas) = convert_buckets(0, &[1, 3, 2], 0).unwrap();
        assert_eq!(spans, vec![span(1, 3)]);
        assert_eq!(deltas, vec![1, 2, -1]);
        let (spans, deltas) = convert_buckets(-3, &[4], 0).unwrap();
        assert_eq!(spans, vec![span(-2, 1)]);
        assert_eq!(deltas, vec![4]);
    }

    #[test]
    fn small_gaps_are_filled_large_gaps_open_spans() {
        // Buckets at OTel 0, 3 (gap of 2 → filled), 10 (gap of 6 → new span).
        let counts = [5, 0, 0, 2, 0, 0, 0, 0, 0, 0, 7];
        let (spans, deltas) = convert_buckets(0, &counts, 0).unwrap();
        assert_eq!(spans, vec![span(1, 4), span(6, 1)]);
        assert_eq!(deltas, vec![5, -5, 0, 2, 5]);
        assert_eq!(
            expand(&spans, &deltas),
            vec![(1, 5), (2, 0), (3, 0), (4, 2), (11, 7)]
        );
    }

    #[test]
    fn leading_and_trailing_zeros_are_dropped() {
        let (spans, deltas) = convert_buckets(5, &[0, 0, 1, 0], 0).unwrap();
        assert_eq!(spans, vec![span(8, 1)]);
        assert_eq!(deltas, vec![1]);
        let (spans, deltas) = convert_buckets(5, &[0, 0], 0).unwrap();
        assert!(spans.is_empty() && deltas.is_empty());
    }

    #[test]
    fn downscaling_merges_pairs() {
        // Scale 10 → 8: merge groups of 4. OTel indices -2..=5.
        // (-2>>2)=-1, (-1>>2)=-1, 0..3 → 0, 4,5 → 1. Prometheus indices 0, 1, 2.
        let counts = [1, 2, 3, 4, 5, 6, 7, 8];
        let (spans, deltas) = convert_buckets(-2, &counts, 2).unwrap();
        assert_eq!(spans, vec![span(0, 3)]);
        assert_eq!(expand(&spans, &deltas), vec![(0, 3), (1, 18), (2, 15)]);
        let total: i64 = expand(&spans, &deltas).iter().map(|(_, c)| c).sum();
        assert_eq!(total, counts.iter().sum::<u64>() as i64);
    }

    #[test]
    fn huge_offsets_are_refused() {
        assert!(convert_buckets(i32::MAX, &[1, 1], 0).is_none());
        assert!(convert_buckets(i32::MAX - 1, &[1], 0).is_some());
    }
}
