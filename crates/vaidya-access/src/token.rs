//! Bearer tokens: `vdy_<id>_<secret>`. The id finds the stored row; only SHA-256 of the secret
//! is stored, so a stolen database does not yield usable tokens. The secret has 256 bits of
//! entropy, which is why a fast hash (not a password hash) is the right tool here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "vdy_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A newly made token: give `text` to the client once, store `id` and `secret_hash`.
pub struct NewToken {
    pub id: String,
    pub secret_hash: [u8; 32],
    pub text: String,
}

pub fn generate() -> NewToken {
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex(&id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    NewToken { secret_hash: hash_secret(&secret), text: format!("{PREFIX}{id}_{secret}"), id }
}

/// Split a presented token into (id, secret); `None` if it is not shaped like one of ours.
pub fn parse(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = secret.len() == 43 && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Does `secret` match the stored hash? Constant time in the hash comparison.
pub fn matches(secret: &str, stored_hash: &[u8]) -> bool {
    let h = hash_secret(secret);
    stored_hash.len() == h.len() && stored_hash.iter().zip(h.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_match_only_their_hash() {
        let t = generate();
        let (id, secret) = parse(&t.text).expect("own format");
        assert_eq!(id, t.id);
        assert!(matches(secret, &t.secret_hash));
        let other = generate();
        assert!(!matches(secret, &other.secret_hash));
        assert!(!matches(secret, &t.secret_hash[..31]));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", "vdy_", "Bearer x", "vdy_zz_abc", "vdy_0123456789abcdef_short", "xyz_0123456789abcdef_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
