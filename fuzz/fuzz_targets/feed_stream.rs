#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first byte chooses the read size, as the network would.
    if let Some((chunk, rest)) = data.split_first() {
        feed::fuzzing::stream(rest, usize::from(*chunk) + 1);
    }
});
