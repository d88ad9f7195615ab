#![no_main]
//! The device label of a session, from the `User-Agent` header any client sends.
//!
//! The input, as text, is a user agent. Properties: `device_label` never panics; a label is
//! non-empty, at most `MAX_DEVICE_LEN` bytes, without control characters, `|` or `/`, and has no
//! space at either end; a store gives it back as it is (`stored_device`); and what a store that
//! kept the first 64 bytes of the agent (records from before labels) gives back is that prefix's
//! label.

use libfuzzer_sys::fuzz_target;
use shared::device::{MAX_DEVICE_LEN, device_label, stored_device};

fuzz_target!(init: session_service_fuzz::setup(), |data: &[u8]| run(data));

fn run(data: &[u8]) {
    // Header values reach the parser as text.
    let Ok(agent) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(label) = device_label(agent) {
        assert!(!label.is_empty() && label.len() <= MAX_DEVICE_LEN, "{label:?}");
        assert!(
            !label.contains(['|', '/']) && !label.chars().any(char::is_control),
            "{label:?}"
        );
        assert_eq!(label.trim(), label, "{label:?}");
        assert_eq!(stored_device(&label), Some(label.clone()));
    }
    // A record from before labels: the first 64 bytes, cut on a character boundary.
    let mut cut = agent.len().min(64);
    while !agent.is_char_boundary(cut) {
        cut -= 1;
    }
    let old = &agent[..cut];
    if old.contains('/') {
        assert_eq!(stored_device(old), device_label(old));
    }
}
