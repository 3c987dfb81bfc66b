#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| otelwatch::fuzzing::window_records(data));
