//! RSA encryption with PKCS#1 v1.5 padding (RFC 8017 §7.2.1), the public-key half only: pad
//! the message, then `m^e mod n` by Montgomery multiplication on 64-bit limbs.
//!
//! Why not the `rsa` crate here: it (with crypto-bigint) adds about 90 KiB to the static guest
//! agent, which must stay under 3 MiB (`agent/build-static.sh`); this is a few KiB. It only
//! ever uses a public key: no secret exponent is involved, so the crate's constant-time and
//! blinding machinery, which protect private keys, has nothing to protect here (the server's
//! decryption, with an admin's private key, does use the `rsa` crate). The tests hold it to
//! openssl: what it encrypts, `openssl pkeyutl -decrypt` gives back, in padded and raw mode.

/// Bytes of PKCS#1 v1.5 overhead: `00 02`, at least 8 random non-zero bytes, `00`.
pub const PKCS1_OVERHEAD: usize = 11;

/// Why a message cannot be encrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsaError {
    #[error("The modulus is even or empty: not an RSA key")]
    BadModulus,
    #[error("The message is {len} bytes; this key encrypts at most {max}")]
    TooLong { len: usize, max: usize },
    #[error("No randomness for the padding: {0}")]
    Random(String),
}

/// Big-endian bytes as little-endian 64-bit limbs, `limbs` of them.
fn to_limbs(bytes: &[u8], limbs: usize) -> Vec<u64> {
    let mut out = vec![0u64; limbs];
    for (i, byte) in bytes.iter().rev().enumerate() {
        out[i / 8] |= u64::from(*byte) << (8 * (i % 8));
    }
    out
}

/// Limbs as big-endian bytes, `len` of them (the high bytes beyond `len` are zero).
fn to_bytes(limbs: &[u64], len: usize) -> Vec<u8> {
    (0..len)
        .rev()
        .map(|i| (limbs[i / 8] >> (8 * (i % 8))) as u8)
        .collect()
}

/// `a >= b` for equal-length limb slices.
fn at_least(a: &[u64], b: &[u64]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

/// `a -= b` (mod 2^(64·len)).
fn subtract(a: &mut [u64], b: &[u64]) {
    let mut borrow = false;
    for (x, y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(*y);
        let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
        *x = d2;
        borrow = b1 || b2;
    }
}

/// An odd modulus with its Montgomery constants (R = 2^(64·k)).
struct Modulus {
    n: Vec<u64>,
    /// −n⁻¹ mod 2^64.
    n0_inv: u64,
    /// R² mod n.
    r2: Vec<u64>,
}

impl Modulus {
    fn new(n: Vec<u64>) -> Option<Self> {
        let n0 = *n.first()?;
        if n0 & 1 == 0 {
            return None;
        }
        // Newton's iteration doubles the correct low bits: n0 is its own inverse mod 8.
        let mut inv = n0;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n0.wrapping_mul(inv)));
        }
        // R² mod n by doubling 1 modulo n, 2·64·k times.
        let k = n.len();
        let mut r = vec![0u64; k];
        r[0] = 1;
        if k == 1 && n0 == 1 {
            return None;
        }
        for _ in 0..128 * k {
            let carry = r[k - 1] >> 63;
            for i in (1..k).rev() {
                r[i] = (r[i] << 1) | (r[i - 1] >> 63);
            }
            r[0] <<= 1;
            if carry == 1 || at_least(&r, &n) {
                subtract(&mut r, &n);
            }
        }
        Some(Self {
            n,
            n0_inv: inv.wrapping_neg(),
            r2: r,
        })
    }

    /// a·b·R⁻¹ mod n (CIOS), for a, b < n.
    fn mul(&self, a: &[u64], b: &[u64]) -> Vec<u64> {
        let n = &self.n;
        let k = n.len();
        let mut t = vec![0u64; k + 2];
        for &ai in a {
            let mut carry = 0u128;
            for j in 0..k {
                let s = u128::from(t[j]) + u128::from(ai) * u128::from(b[j]) + carry;
                t[j] = s as u64;
                carry = s >> 64;
            }
            let s = u128::from(t[k]) + carry;
            t[k] = s as u64;
            t[k + 1] = (s >> 64) as u64;
            let m = t[0].wrapping_mul(self.n0_inv);
            let mut carry = (u128::from(t[0]) + u128::from(m) * u128::from(n[0])) >> 64;
            for j in 1..k {
                let s = u128::from(t[j]) + u128::from(m) * u128::from(n[j]) + carry;
                t[j - 1] = s as u64;
                carry = s >> 64;
            }
            let s = u128::from(t[k]) + carry;
            t[k - 1] = s as u64;
            t[k] = t[k + 1] + (s >> 64) as u64;
            t[k + 1] = 0;
        }
        // t < 2n here: one subtraction at most.
        if t[k] != 0 || at_least(&t[..k], n) {
            subtract(&mut t[..k], n);
        }
        t.truncate(k);
        t
    }

    /// base^exponent mod n, for base < n (big-endian exponent bytes).
    fn pow(&self, base: &[u64], exponent: &[u8]) -> Vec<u64> {
        let k = self.n.len();
        let mut one = vec![0u64; k];
        one[0] = 1;
        let base = self.mul(base, &self.r2);
        let mut acc = self.mul(&one, &self.r2);
        for byte in exponent {
            for bit in (0..8).rev() {
                acc = self.mul(&acc, &acc);
                if (byte >> bit) & 1 == 1 {
                    acc = self.mul(&acc, &base);
                }
            }
        }
        self.mul(&acc, &one)
    }
}

/// `message^e mod n`, big-endian, as long as `n`; `message` must be below `n`.
pub fn raw_encrypt(n: &[u8], e: &[u8], message: &[u8]) -> Result<Vec<u8>, RsaError> {
    let len = n.len();
    let limbs = len.div_ceil(8);
    let modulus = Modulus::new(to_limbs(n, limbs)).ok_or(RsaError::BadModulus)?;
    let base = to_limbs(message, limbs);
    Ok(to_bytes(&modulus.pow(&base, e), len))
}

/// PKCS#1 v1.5 encryption of `message` for the key (`n`, `e`): `00 02 PS 00 M`, PS random
/// non-zero bytes, then the RSA operation. Fresh padding every time.
pub fn encrypt_pkcs1v15(n: &[u8], e: &[u8], message: &[u8]) -> Result<Vec<u8>, RsaError> {
    let k = n.len();
    let max = k.saturating_sub(PKCS1_OVERHEAD);
    if message.len() > max {
        return Err(RsaError::TooLong {
            len: message.len(),
            max,
        });
    }
    let mut padded = vec![0u8; k];
    padded[1] = 2;
    let ps_end = k - message.len() - 1;
    let mut random = [0u8; 64];
    let mut i = 2;
    while i < ps_end {
        getrandom::fill(&mut random).map_err(|err| RsaError::Random(err.to_string()))?;
        for byte in random.iter().filter(|b| **b != 0) {
            if i == ps_end {
                break;
            }
            padded[i] = *byte;
            i += 1;
        }
    }
    padded[ps_end + 1..].copy_from_slice(message);
    raw_encrypt(n, e, &padded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact arithmetic for moduli below 2^64, as the reference.
    fn reference(base: u64, exponent: u64, n: u64) -> u64 {
        let (mut acc, mut b, mut e) = (1u128 % u128::from(n), u128::from(base), exponent);
        while e > 0 {
            if e & 1 == 1 {
                acc = acc * b % u128::from(n);
            }
            b = b * b % u128::from(n);
            e >>= 1;
        }
        acc as u64
    }

    proptest::proptest! {
        #[test]
        fn one_limb_powers_match_exact_arithmetic(n in 3u64.., base in 0u64.., e in 0u64..1 << 20) {
            let n = n | 1;
            let base = base % n;
            let got = raw_encrypt(&n.to_be_bytes(), &e.to_be_bytes(), &base.to_be_bytes()).unwrap();
            proptest::prop_assert_eq!(u64::from_be_bytes(got.try_into().unwrap()), reference(base, e, n));
        }
    }

    #[test]
    fn padding_is_pkcs1_type_2_and_refuses_long_messages() {
        // n = 2^127 - 1 (a Mersenne prime, so odd): 16 bytes, 5 bytes of message at most.
        let n = ((1u128 << 127) - 1).to_be_bytes();
        assert_eq!(
            encrypt_pkcs1v15(&n, &[1, 0, 1], b"123456"),
            Err(RsaError::TooLong { len: 6, max: 5 })
        );
        assert_eq!(
            encrypt_pkcs1v15(&n, &[1, 0, 1], b"12345").unwrap().len(),
            16
        );
        assert_eq!(
            raw_encrypt(&[0x10, 0x00], &[3], &[2]),
            Err(RsaError::BadModulus)
        );
    }
}
