//! The sidecar's one source of randomness: SIP Call-IDs, tags, branches and
//! cnonces, RTP SSRCs and initial sequence numbers, RTP port choice, the
//! link's request nonces and SDES-SRTP keys all come from here.
//!
//! It reads the OS generator (`getrandom`). Should that ever fail (not
//! expected on Linux), it does not panic: it falls back to bytes mixed from
//! the clock and a process-wide counter, unique per call, only not secret.
//! But for SDES-SRTP master keys none of these values is a secret; they must
//! be unpredictable enough not to be guessed off the wire, and unique. The
//! keys ([`crate::media::srtp::MasterKey::generate`], through the SIP
//! dialog's [`OsRandom`]) are secret: they come from the OS generator, since
//! the fallback above runs only if the kernel's generator fails.
//!
//! Sans-IO cores take a [`Random`] instead of calling [`fill`] (like they take
//! `now` instead of reading the clock): [`OsRandom`] in the product,
//! [`SeededRandom`] in tests, so a run is the same every time.

use std::sync::atomic::{AtomicU64, Ordering};

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) {
    if getrandom::fill(buf).is_ok() {
        return;
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // splitmix64 over (time, counter, position): distinct per call and byte.
    for (i, x) in buf.iter_mut().enumerate() {
        let z = t ^ n.rotate_left(32) ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        *x = splitmix64_mix(z) as u8;
    }
}

/// splitmix64's output function: spreads every input bit over the result.
fn splitmix64_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Lowercase hex of `bytes` random bytes (IDs, tags, branches, cnonces).
pub fn hex(bytes: usize) -> String {
    OsRandom.hex(bytes)
}

pub fn u32() -> u32 {
    let mut b = [0u8; 4];
    fill(&mut b);
    u32::from_be_bytes(b)
}

/// A number in `0..n` (0 when `n` is 0); modulo bias is negligible for the
/// small `n` used here (port pairs).
pub fn below(n: usize) -> usize {
    let mut b = [0u8; 8];
    fill(&mut b);
    (u64::from_le_bytes(b) % n.max(1) as u64) as usize
}

/// A source of random bytes, injected into a sans-IO core. Our own one-method
/// trait rather than `rand_core::RngCore`: the sidecar needs only bytes, and no
/// `rand` crate is a dependency.
pub trait Random: Send {
    fn fill(&mut self, buf: &mut [u8]);

    /// An independent source for a part the core creates (one SIP dialog of
    /// an endpoint): the OS generator again, or a seeded one drawn from this.
    fn fork(&mut self) -> Box<dyn Random>;

    /// Lowercase hex of `bytes` random bytes.
    fn hex(&mut self, bytes: usize) -> String {
        let mut b = vec![0u8; bytes];
        self.fill(&mut b);
        ::hex::encode(b)
    }
}

/// The OS generator ([`fill`]): what the product uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        fill(buf)
    }

    fn fork(&mut self) -> Box<dyn Random> {
        Box::new(OsRandom)
    }
}

/// A deterministic generator (splitmix64) for tests and fuzzing: the same
/// seed gives the same Call-IDs, tags and branches. Predictable: never in
/// the product.
#[derive(Debug, Clone)]
pub struct SeededRandom {
    state: u64,
}

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        SeededRandom { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64_mix(self.state)
    }
}

impl Random for SeededRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn fork(&mut self) -> Box<dyn Random> {
        Box::new(SeededRandom::new(self.next_u64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_differ_and_stay_in_range() {
        assert_eq!(hex(6).len(), 12);
        assert_ne!(hex(16), hex(16));
        assert!((0..1000).all(|_| below(7) < 7));
        assert_eq!(below(0), 0);
    }

    #[test]
    fn seeded_sources_repeat_and_forks_differ() {
        let (mut a, mut b) = (SeededRandom::new(7), SeededRandom::new(7));
        let (x, y) = (a.hex(13), b.hex(13));
        assert_eq!((x.len(), &x), (26, &y));
        let (mut fa, mut fb) = (a.fork(), b.fork());
        assert_eq!(fa.hex(8), fb.hex(8));
        assert_ne!(a.hex(8), fa.hex(8));
        assert_ne!(OsRandom.hex(16), OsRandom.fork().hex(16));
    }
}
