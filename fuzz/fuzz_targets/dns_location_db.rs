#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| geodns::fuzzing::location_db(data));
