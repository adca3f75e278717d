//! Generated-input tests that CI runs on stable Rust: a fixed-seed mutator over valid seed
//! inputs, plus the regression inputs kept from earlier crashes, fed to a decoder a bounded
//! number of times. Coverage-guided search is `cargo fuzz`'s job (each crate's `fuzz/`); this
//! is its deterministic, bounded companion that every CI run repeats.
//!
//! `FUZZ_ITERATIONS` overrides the number of generated inputs per target (CI uses the
//! default); `FUZZ_SEED` changes the seed to explore further locally.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Generated inputs per target when `FUZZ_ITERATIONS` is not set.
pub const DEFAULT_ITERATIONS: usize = 20_000;

/// xorshift64*: reproducible, and cheap enough for tens of thousands of inputs per target.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (which must not be 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Values that sit on the edges decoders check.
const INTERESTING: [u8; 10] = [0, 1, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFE, 0xFF, 0x20];

/// One mutation of `input`, chosen by `rng`; `seeds` are spliced in now and then.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = input.len();
    match rng.below(9) {
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            input[at] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 if len > 0 => {
            let at = rng.below(len);
            input[at] = rng.next_u64() as u8;
        }
        3 => {
            let at = rng.below(len + 1);
            let count = 1 + rng.below(16);
            let byte = rng.next_u64() as u8;
            input.splice(at..at, std::iter::repeat_n(byte, count));
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(16)).min(len);
            input.drain(at..end);
        }
        5 if len > 0 => input.truncate(rng.below(len)),
        6 if len > 1 => {
            // A big-endian length or count field set to an edge value.
            let at = rng.below(len - 1);
            let value: u16 = match rng.below(4) {
                0 => 0,
                1 => u16::MAX,
                2 => (len - at) as u16,
                _ => rng.next_u64() as u16,
            };
            input[at..at + 2].copy_from_slice(&value.to_be_bytes());
        }
        7 if !seeds.is_empty() => {
            let other = &seeds[rng.below(seeds.len())];
            if !other.is_empty() {
                let from = rng.below(other.len());
                let to = (from + 1 + rng.below(64)).min(other.len());
                let at = rng.below(len + 1);
                input.splice(at..at, other[from..to].iter().copied());
            }
        }
        _ if len > 2 => {
            // Copy a piece of the input over another place in it (repeated structures).
            let from = rng.below(len);
            let to = rng.below(len);
            let n = (1 + rng.below(8)).min(len - from).min(len - to);
            input.copy_within(from..from + n, to);
        }
        _ => input.push(rng.next_u64() as u8),
    }
}

/// The regression inputs kept in `dir` (every file, sorted by name); none if it is absent.
pub fn regressions(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, Vec<u8>)> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), bytes))
        })
        .collect();
    found.sort();
    found
}

/// `FUZZ_ITERATIONS` scaled to a target whose inputs are big: `default` instead of
/// [`DEFAULT_ITERATIONS`] when the variable is not set.
fn iterations(default: usize) -> usize {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(default, |n| n * default / DEFAULT_ITERATIONS)
}

fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_F00D)
}

/// Feeds `target` every regression input in `regressions_dir`, every seed, and
/// `FUZZ_ITERATIONS` inputs made by stacking 1-8 mutations on a seed. A panic fails the test
/// with the input in hex and saves it beside the regressions (as `crash-N.bin`) so it can be
/// kept. Prints how many inputs ran, for the CI log.
pub fn run(name: &str, regressions_dir: &Path, seeds: &[Vec<u8>], target: impl FnMut(&[u8])) {
    run_n(name, regressions_dir, seeds, DEFAULT_ITERATIONS, target);
}

/// [`run`] with `iterations` generated inputs by default, for targets whose inputs are large
/// (a segment of MPEG-TS, a deployment file).
pub fn run_n(
    name: &str,
    regressions_dir: &Path,
    seeds: &[Vec<u8>],
    iterations: usize,
    mut target: impl FnMut(&[u8]),
) {
    let mut check = |label: &str, input: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
            let _ = std::fs::create_dir_all(regressions_dir);
            let saved = regressions_dir.join(format!("crash-{:016x}.bin", hash(input)));
            let _ = std::fs::write(&saved, input);
            panic!(
                "fuzz target {name} panicked on {label} (saved as {}): {}",
                saved.display(),
                hex(input)
            );
        }
    };
    let kept = regressions(regressions_dir);
    for (file, input) in &kept {
        check(&format!("regression input {file}"), input);
    }
    for (i, input) in seeds.iter().enumerate() {
        check(&format!("seed {i}"), input);
    }
    let total = self::iterations(iterations);
    let mut rng = Rng::new(seed() ^ hash(name.as_bytes()));
    let mut input = Vec::new();
    for n in 0..total {
        input.clear();
        if seeds.is_empty() {
            let len = rng.below(64);
            input.extend((0..len).map(|_| rng.next_u64() as u8));
        } else {
            input.extend_from_slice(&seeds[rng.below(seeds.len())]);
        }
        for _ in 0..1 + rng.below(8) {
            mutate(&mut rng, &mut input, seeds);
        }
        check(&format!("generated input {n}"), &input);
    }
    println!(
        "fuzz {name}: {} regression inputs, {} seeds, {total} generated inputs, no panic",
        kept.len(),
        seeds.len()
    );
}

fn hash(bytes: &[u8]) -> u64 {
    // FNV-1a: stable names for saved inputs.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_inputs() {
        let seeds = vec![b"hello world".to_vec()];
        let make = || {
            let mut rng = Rng::new(7);
            let mut input = seeds[0].clone();
            for _ in 0..50 {
                mutate(&mut rng, &mut input, &seeds);
            }
            input
        };
        assert_eq!(make(), make());
        assert_ne!(make(), seeds[0]);
    }
}
