#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| geodns::fuzzing::zone_file(data));
