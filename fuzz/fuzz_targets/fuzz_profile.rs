#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cpam_core::fuzz::profile(data));
