//! Arbitrary bytes as a telemetry window (and a reported state, its sibling on the
//! MQTT link): parse must refuse or accept, never panic.
#![no_main]

use edgewise_core::reported::ReportedState;
use edgewise_core::telemetry::TelemetryWindow;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(window) = TelemetryWindow::from_bytes(data) {
        let _ = window.accuracy();
        // What the control plane stores; floats may move one ulp, so only re-parse.
        let bytes = serde_json::to_vec(&window).expect("serialises");
        let _ = TelemetryWindow::from_bytes(&bytes);
    }
    let _ = ReportedState::from_bytes(data);
});
