//! The allocation-free OTLP protobuf walker and the intake rules, on arbitrary bytes: they
//! must answer `Ok` or a `WireError`, never panic, loop or read out of bounds.
#![no_main]

use sluice_otlp::{Rules, Signal};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for signal in Signal::ALL {
        let counted = sluice_otlp::validate(signal, data);
        let _ = sluice_otlp::count_items(signal, data);
        if let Ok(checked) = sluice_otlp::check(signal, data, &Rules::default()) {
            // A request the walker accepts has the count the rules saw.
            assert_eq!(counted.ok(), Some(checked.items));
        }
    }
});
