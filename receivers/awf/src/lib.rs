//! AWF workflow events: SSE client, push endpoint, conversion, simulator
