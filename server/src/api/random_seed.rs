//! `random_seed`: nova's base64 of [`RANDOM_SEED_BYTES`] fresh random bytes, written straight
//! as base64 text. Each base64 character carries 6 bits of the bytes it encodes, so the
//! encoding of 512 uniformly random bytes is 682 characters of 6 uniformly random bits each,
//! one of 4 (its 2 low bits zero), and one `=`: the text is drawn that way, a character per
//! random byte, with no encoding pass (the encoder was the largest cost of serving
//! `meta_data.json`).

/// Bytes of fresh randomness in each `random_seed` (nova: 512).
pub const RANDOM_SEED_BYTES: usize = 512;
/// Length of the seed's base64 text, with its padding.
pub const RANDOM_SEED_TEXT_LEN: usize = RANDOM_SEED_BYTES.div_ceil(3) * 4;
/// Characters carrying 6 bits each.
const FULL_CHARACTERS: usize = RANDOM_SEED_BYTES * 8 / 6;
/// Bits the character after them carries (the rest of the bytes' bits).
const LAST_BITS: usize = RANDOM_SEED_BYTES * 8 - FULL_CHARACTERS * 6;
/// Padding: base64 groups are 3 bytes.
const PADDING: usize = RANDOM_SEED_TEXT_LEN - FULL_CHARACTERS - 1;

/// Fills `text` with a fresh seed's base64 text.
pub fn fill(text: &mut [u8; RANDOM_SEED_TEXT_LEN]) {
    let (data, padding) = text.split_at_mut(RANDOM_SEED_TEXT_LEN - PADDING);
    rand::fill(&mut *data);
    let (full, last) = data.split_at_mut(FULL_CHARACTERS);
    for character in full {
        *character = sextet(*character & 0x3f);
    }
    last[0] = sextet((last[0] & ((1 << LAST_BITS) - 1)) << (6 - LAST_BITS));
    padding.fill(b'=');
}

/// The base64 character of a 6-bit value, without a table so that the loop vectorises:
/// `A`–`Z`, `a`–`z`, `0`–`9`, `+`, `/` (RFC 4648 §4).
fn sextet(value: u8) -> u8 {
    let mut character = value + b'A';
    character += if value >= 26 { b'a' - b'Z' - 1 } else { 0 };
    character = character.wrapping_sub(if value >= 52 { b'a' - b'0' + 26 } else { 0 });
    character = character.wrapping_sub(if value == 62 { b'0' + 10 - b'+' } else { 0 });
    character.wrapping_sub(if value == 63 { b'0' + 11 - b'/' } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    #[test]
    fn every_sextet_is_its_rfc_4648_character() {
        for value in 0..64u8 {
            assert_eq!(sextet(value), ALPHABET[usize::from(value)], "{value}");
        }
    }

    #[test]
    fn the_layout_is_that_of_512_bytes() {
        assert_eq!(RANDOM_SEED_TEXT_LEN, 684);
        assert_eq!((FULL_CHARACTERS, LAST_BITS, PADDING), (682, 4, 1));
        assert_eq!(
            base64::encoded_len(RANDOM_SEED_BYTES, true),
            Some(RANDOM_SEED_TEXT_LEN)
        );
    }

    #[test]
    fn a_seed_decodes_strictly_to_512_bytes_and_every_character_is_drawn() {
        let mut seen = [false; 64];
        let mut last = [false; 64];
        let mut previous = None;
        // Enough seeds that each of the 16 last characters shows up: the chance one is missing
        // is 16 × (15/16)^SEEDS, about 1e-27 (with 64 seeds it was one run in four).
        const SEEDS: usize = 1000;
        for _ in 0..SEEDS {
            let mut text = [0u8; RANDOM_SEED_TEXT_LEN];
            fill(&mut text);
            // The standard engine refuses non-canonical text (set bits after the data).
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .expect("canonical base64");
            assert_eq!(bytes.len(), RANDOM_SEED_BYTES);
            assert_eq!(text[RANDOM_SEED_TEXT_LEN - 1], b'=');
            for &character in &text[..FULL_CHARACTERS] {
                let at = ALPHABET.iter().position(|&a| a == character).unwrap();
                seen[at] = true;
            }
            let at = ALPHABET
                .iter()
                .position(|&a| a == text[FULL_CHARACTERS])
                .unwrap();
            last[at] = true;
            assert_ne!(previous, Some(text), "a fresh seed every time");
            previous = Some(text);
        }
        assert!(seen.iter().all(|&s| s), "all 64 characters appear");
        // The last character carries 4 bits: the 16 characters whose 2 low bits are zero.
        let expected: Vec<bool> = (0..64).map(|v| v % 4 == 0).collect();
        assert_eq!(last.to_vec(), expected);
    }
}
