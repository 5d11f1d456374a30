#![no_main]

// The player catches the panics of IronRDP's decoder on malformed updates
// (a skipped update, as in the product); libfuzzer-sys's panic hook would
// abort on those too, so the default hook is put back. A panic the player
// does not catch still aborts the run.
libfuzzer_sys::fuzz_target!(
    init: std::panic::set_hook(Box::new(|_| {})),
    |data: &[u8]| cpam_core::fuzz::rdp_recording(data)
);
