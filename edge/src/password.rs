//! Password hashing for CodeB tenant users: Argon2id (RustCrypto `argon2`),
//! stored as a PHC string, so each hash carries its own parameters and they
//! can be raised later without invalidating the stored ones.
//!
//! The parameters are chosen by measurement in the wasm CPU bench
//! (edge/bench-wasm `--case password`, docs/bench.md): one verification must
//! fit a paid Worker's CPU budget with room to spare (a free plan's 10 ms
//! does not fit any slow KDF).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Argon2id memory cost in KiB (one verification allocates this much).
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Argon2id passes over the memory.
pub const ITERATIONS: u32 = 2;
/// Argon2id lanes: a Worker has one thread.
pub const LANES: u32 = 1;
/// Largest memory cost a stored hash may ask of a verification (a hash is
/// ours, from KV, but a corrupt one must not take the isolate's memory).
const MAX_MEMORY_KIB: u32 = 64 * 1024;
const MAX_ITERATIONS: u32 = 16;

/// A hash of a random password nobody knows, with the current parameters:
/// verified against when the user does not exist, so an unknown username
/// costs as much as a wrong password (no user enumeration by timing).
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$dm94bGluZSBkdW1teSBzYWx0$5lQ2Z0mbYlKGJD2NV6nf1sHzPMbY5eTnvpkDxTw1fNU";

fn hasher() -> Argon2<'static> {
    // The constants are within Argon2's bounds (checked by a test).
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `password` with a fresh 128-bit salt. `None` only if the
/// hasher refuses its input (a password over Argon2's 4 GiB limit; ours are
/// at most 1024 characters).
pub fn hash(password: &str) -> Option<String> {
    let salt = SaltString::encode_b64(&crate::ids::random_bytes::<16>()).ok()?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .ok()
        .map(|h| h.to_string())
}

/// Whether `password` matches the PHC string `phc`, with the parameters it
/// names. A malformed hash, another algorithm or a cost over our bounds is
/// a mismatch.
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > MAX_MEMORY_KIB || params.t_cost() > MAX_ITERATIONS {
        return false;
    }
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// [`hash`] with other parameters: the CPU bench measures candidates with it.
#[cfg(feature = "bench-support")]
pub fn hash_with(password: &str, memory_kib: u32, iterations: u32) -> Option<String> {
    let params = Params::new(memory_kib, iterations, LANES, None).ok()?;
    let salt = SaltString::encode_b64(&crate::ids::random_bytes::<16>()).ok()?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .ok()
        .map(|h| h.to_string())
}

/// SHA-256 (hex) of a stored PHC string: names one setting of a user's
/// password, so the tenant's `RateLimiter` object can refuse a token minted
/// against a password that has since been changed (KV may be stale).
pub fn credential_stamp(phc: &str) -> String {
    crate::ids::hash_api_key(phc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with(&format!(
            "$argon2id$v=19$m={MEMORY_KIB},t={ITERATIONS},p={LANES}$"
        )));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        // Salted: the same password hashes differently each time.
        assert_ne!(h, hash("correct horse battery").unwrap());
    }

    #[test]
    fn the_dummy_hash_has_the_current_parameters() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (MEMORY_KIB, ITERATIONS, LANES)
        );
        assert_eq!(parsed.algorithm, Algorithm::Argon2id.ident());
        assert!(!verify("", DUMMY_HASH));
        assert!(Params::new(MEMORY_KIB, ITERATIONS, LANES, None).is_ok());
    }

    #[test]
    fn malformed_foreign_or_too_costly_hashes_never_match() {
        assert!(!verify("x", ""));
        assert!(!verify("x", "not a phc string"));
        assert!(!verify(
            "x",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$2Q3Y2Z0mbYlKGJD2NV6nf1sHzPMbY5eTnvpkDxTw1fNU"
        ));
        let huge = "$argon2id$v=19$m=4194304,t=2,p=1$dm94bGluZSBkdW1teSBzYWx0$5lQ2Z0mbYlKGJD2NV6nf1sHzPMbY5eTnvpkDxTw1fNU";
        assert!(!verify("x", huge));
    }
}
