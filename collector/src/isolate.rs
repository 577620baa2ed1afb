//! Isolating a permanent refusal (docs/validation.md §2): a backend that refuses a merged batch
//! for one bad item (Tempo: `InvalidArgument` for an all-zero span id) would otherwise take
//! every other client's items down with it. The refused request is split in halves, each half
//! resent (with the usual retries), and the refused halves split again, down to the single
//! items the backend refuses; those go to the dead-letter store.
//!
//! Bounded: at most ⌈log2(items)⌉ + 1 levels. Only the range being isolated waits; other
//! batches keep flowing (the driver's other in-flight slots). Exporters whose order matters
//! (Loki, remote-write) do not split: those backends keep the valid part of a refused request.

use crate::dead_letter::Letter;
use crate::pipeline::{DriverCtx, send_until_final};
use bytes::{Bytes, BytesMut};
use sluice_core::{Batch, Exporter};
use std::future::Future;
use std::pin::Pin;

/// Levels of splitting for a request of `items` items: enough to reach single items when
/// halves are even, with one level of slack for uneven cuts.
fn max_depth(items: u64) -> u32 {
    u64::BITS - items.saturating_sub(1).leading_zeros() + 1
}

/// Handles a request refused for good: isolates the refused items, keeps them.
pub(crate) async fn refused<E: Exporter>(
    ctx: &DriverCtx<E>,
    req: &E::Request,
    batch: &Batch,
    appended_ms: u64,
    reason: &'static str,
    message: String,
) {
    let depth = max_depth(ctx.exporter.request_items(req));
    isolate(ctx, req, batch, appended_ms, reason, message, depth).await;
}

fn isolate<'a, E: Exporter>(
    ctx: &'a DriverCtx<E>,
    req: &'a E::Request,
    batch: &'a Batch,
    appended_ms: u64,
    reason: &'static str,
    message: String,
    depth_left: u32,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let signal = batch.signal;
        let halves = match depth_left {
            0 => None,
            _ => ctx.exporter.split(req),
        };
        let Some((a, b)) = halves else {
            keep(ctx, req, batch, reason, &message);
            return;
        };
        metrics::counter!("sluice_exporter_split_requests_total",
            "component_id" => ctx.settings.component_id.to_string(), "reason" => reason)
        .increment(1);
        let halves = [a, b];
        let sends = halves.iter().map(|half| async move {
            if let Some((reason, message)) = send_until_final(ctx, half, signal, appended_ms).await
            {
                isolate(
                    ctx,
                    half,
                    batch,
                    appended_ms,
                    reason,
                    message,
                    depth_left - 1,
                )
                .await;
            }
        });
        futures::future::join_all(sends).await;
    })
}

/// Counts, logs (once a minute per reason) and stores a request refused for good.
fn keep<E: Exporter>(
    ctx: &DriverCtx<E>,
    req: &E::Request,
    batch: &Batch,
    reason: &'static str,
    message: &str,
) {
    let signal = batch.signal;
    let items = ctx.exporter.request_items(req);
    ctx.drop_items(signal, reason, items);
    ctx.log_once(reason, message, items);
    let Some(store) = &ctx.settings.dead_letter else {
        return;
    };
    let payload = ctx
        .exporter
        .dead_letter_payload(req)
        .unwrap_or_else(|| concat(batch));
    let letter = Letter {
        exporter: &ctx.settings.component_id,
        pipeline: &ctx.settings.pipeline,
        signal,
        tenant: batch.tenant.as_deref(),
        reason,
        message,
        items,
        payload: &payload,
    };
    if let Err(e) = store.add(letter) {
        tracing::error!(exporter = %ctx.settings.component_id, items, error = %e,
            "cannot write to the dead-letter store; the refused items are lost");
    }
}

/// The batch's items as one request (concatenated OTLP encodings of one signal are one
/// request holding them all).
fn concat(batch: &Batch) -> Bytes {
    let mut out = BytesMut::with_capacity(batch.byte_size());
    for item in batch.items.iter().filter(|i| i.signal == batch.signal) {
        out.extend_from_slice(&item.payload);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::max_depth;

    #[test]
    fn depth_is_log2_plus_one() {
        assert_eq!(max_depth(1), 1);
        assert_eq!(max_depth(2), 2);
        assert_eq!(max_depth(3), 3);
        assert_eq!(max_depth(2050), 13);
        assert_eq!(max_depth(0), 1);
    }
}
