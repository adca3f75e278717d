#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| healthd::fuzzing::status_document(data));
