//! OTLP/JSON to protobuf on arbitrary bytes: `Ok` or an error, never a panic; what it
//! produces must pass the protobuf walker with the count it reported.
#![no_main]

use sluice_otlp::Signal;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for signal in Signal::ALL {
        if let Ok((payload, count)) = sluice_otlp::json_to_protobuf(signal, data) {
            assert_eq!(sluice_otlp::validate(signal, &payload).ok(), Some(count));
        }
    }
});
