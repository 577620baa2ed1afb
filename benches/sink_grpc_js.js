#!/usr/bin/env node
// An OTLP/gRPC traces sink on @grpc/grpc-js (Node's HTTP/2): counts spans and answers OK.
//
// An independent gRPC implementation whose HTTP/2 layer advertises the protocol's default
// 64 KiB flow-control windows (RFC 9113 §6.9.2) and never grows them, the hardest case for a
// sender of large requests. Prints `{"unix_ms": ..., "items": ...}` every 100 ms, the format
// `benches/delivered.py` reads.
//
//   npm install --prefix benches/.node @grpc/grpc-js
//   NODE_PATH=benches/.node/node_modules node benches/sink_grpc_js.js 127.0.0.1:5317
'use strict';
const grpc = require('@grpc/grpc-js');

// Counts Span messages in an ExportTraceServiceRequest without decoding them:
// request.resource_spans (1) -> scope_spans (2) -> spans (2), per the OTLP trace proto.
function varint(buf, pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    if (pos >= buf.length) throw new Error('truncated varint');
    const b = buf[pos++];
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return [value, pos];
    shift += 7;
  }
}

function countField(buf, start, end, wanted, inner) {
  let n = 0;
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = varint(buf, pos);
    const field = Math.floor(key / 8);
    switch (key & 7) {
      case 0: [, pos] = varint(buf, pos); break;
      case 1: pos += 8; break;
      case 5: pos += 4; break;
      case 2: {
        let len;
        [len, pos] = varint(buf, pos);
        if (field === wanted) n += inner ? inner(buf, pos, pos + len) : 1;
        pos += len;
        break;
      }
      default: throw new Error('bad wire type');
    }
  }
  return n;
}

const countSpans = (buf) =>
  countField(buf, 0, buf.length, 1, (b, s, e) =>
    countField(b, s, e, 2, (b2, s2, e2) => countField(b2, s2, e2, 2, null)));

let total = 0;
const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
server.addService({
  Export: {
    path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
    requestStream: false,
    responseStream: false,
    requestDeserialize: (b) => b,
    responseSerialize: (b) => b,
  },
}, {
  Export: (call, callback) => {
    try {
      total += countSpans(call.request);
      callback(null, Buffer.alloc(0));
    } catch (e) {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: String(e) });
    }
  },
});
const addr = process.argv[2] || '127.0.0.1:5317';
server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) { console.error(err); process.exit(1); }
  setInterval(() => console.log(JSON.stringify({ unix_ms: Date.now(), items: total })), 100);
});
