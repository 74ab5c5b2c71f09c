//! Sealing an object for a target: zstd, then age encryption to the hospital's X25519
//! recipients, whose private halves are kept offline; and opening it again with one of them.
//!
//! Compression comes first (ciphertext does not compress). age authenticates every 64 KiB
//! chunk, so an altered object fails to open; but anyone may encrypt to a public recipient, so
//! a sealed object proves nothing about who made it: segments are signed inside (see
//! `segment`).

use std::io::{Read, Write};

/// The most bytes an opened object may hold: a bound on memory for a hostile object that
/// decompresses without end (segments are cut well below it).
pub const MAX_OPENED_BYTES: u64 = 1 << 30;
/// zstd level: 3 compresses FHIR JSON about 8-10x at several hundred MB/s per core.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("no backup recipients are configured (age1... public keys)")]
    NoRecipients,
    #[error("'{0}' is not an age X25519 recipient (age1...)")]
    BadRecipient(String),
    #[error("the identity file holds no age X25519 identity (AGE-SECRET-KEY-1...)")]
    NoIdentity,
    #[error("cannot decrypt: the object was not encrypted to this identity (wrong key?)")]
    WrongKey,
    #[error("cannot decrypt: the object is damaged or altered ({0})")]
    Damaged(String),
    #[error("the object opens to more than {MAX_OPENED_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The public keys objects are encrypted to.
#[derive(Clone)]
pub struct Recipients(Vec<age::x25519::Recipient>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|r| r.to_string())).finish()
    }
}

impl Recipients {
    /// Parse `age1...` public keys (at least one).
    pub fn parse<S: AsRef<str>>(keys: &[S]) -> Result<Recipients, SealError> {
        let parsed = keys
            .iter()
            .map(|k| k.as_ref().trim().parse::<age::x25519::Recipient>().map_err(|_| SealError::BadRecipient(k.as_ref().to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(SealError::NoRecipients);
        }
        Ok(Recipients(parsed))
    }
}

/// A private key that opens sealed objects (from an age identity file, kept offline).
pub struct Identity(Vec<age::x25519::Identity>);

impl Identity {
    /// Parse an identity file's text: `AGE-SECRET-KEY-1...` lines; `#` comments and blank lines
    /// ignored (the format age-keygen writes).
    pub fn parse(text: &str) -> Result<Identity, SealError> {
        let keys: Vec<_> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.parse::<age::x25519::Identity>().ok())
            .collect();
        if keys.is_empty() {
            return Err(SealError::NoIdentity);
        }
        Ok(Identity(keys))
    }

    /// A new identity and its recipient text (`age1...`), as `age-keygen` makes them.
    pub fn generate() -> (String, String) {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        (id.to_string().expose_secret().to_string(), id.to_public().to_string())
    }
}

/// Compress and encrypt `plain` to `to`.
pub fn seal(plain: &[u8], to: &Recipients) -> Result<Vec<u8>, SealError> {
    let compressed = zstd::bulk::compress(plain, ZSTD_LEVEL)?;
    let encryptor = age::Encryptor::with_recipients(to.0.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|_| SealError::NoRecipients)?;
    let mut out = Vec::with_capacity(compressed.len() + 512);
    let mut w = encryptor.wrap_output(&mut out)?;
    w.write_all(&compressed)?;
    w.finish()?;
    Ok(out)
}

/// Decrypt with `id` and decompress.
pub fn open(sealed: &[u8], id: &Identity) -> Result<Vec<u8>, SealError> {
    let decryptor = age::Decryptor::new(sealed).map_err(|e| SealError::Damaged(e.to_string()))?;
    let mut r = decryptor.decrypt(id.0.iter().map(|i| i as &dyn age::Identity)).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => SealError::WrongKey,
        other => SealError::Damaged(other.to_string()),
    })?;
    let mut compressed = Vec::with_capacity(sealed.len());
    r.read_to_end(&mut compressed).map_err(|e| SealError::Damaged(e.to_string()))?;
    let mut plain = Vec::new();
    zstd::stream::read::Decoder::new(&compressed[..])?
        .take(MAX_OPENED_BYTES + 1)
        .read_to_end(&mut plain)
        .map_err(|e| SealError::Damaged(format!("decompression: {e}")))?;
    if plain.len() as u64 > MAX_OPENED_BYTES {
        return Err(SealError::TooLarge);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_objects_open_with_any_recipient_key_and_not_with_others() {
        let (id_a, to_a) = Identity::generate();
        let (id_b, to_b) = Identity::generate();
        let (id_c, _) = Identity::generate();
        let to = Recipients::parse(&[to_a, to_b]).unwrap();
        let plain = br#"{"resourceType":"Patient"}"#.repeat(1000);
        let sealed = seal(&plain, &to).unwrap();
        assert!(sealed.len() < plain.len() / 4, "compressed before encryption");
        assert!(!sealed.windows(7).any(|w| w == b"Patient"), "no plaintext in the object");
        for id in [&id_a, &id_b] {
            assert_eq!(open(&sealed, &Identity::parse(id).unwrap()).unwrap(), plain);
        }
        assert!(matches!(open(&sealed, &Identity::parse(&id_c).unwrap()), Err(SealError::WrongKey)));
        let mut altered = sealed.clone();
        let n = altered.len() - 20;
        altered[n] ^= 1;
        assert!(matches!(open(&altered, &Identity::parse(&id_a).unwrap()), Err(SealError::Damaged(_))));
        assert!(matches!(open(b"garbage", &Identity::parse(&id_a).unwrap()), Err(SealError::Damaged(_))));
    }

    #[test]
    fn keys_are_parsed_strictly() {
        assert!(matches!(Recipients::parse::<&str>(&[]), Err(SealError::NoRecipients)));
        assert!(matches!(Recipients::parse(&["age1nope"]), Err(SealError::BadRecipient(_))));
        assert!(matches!(Identity::parse("# only a comment\n"), Err(SealError::NoIdentity)));
        let (id, _) = Identity::generate();
        assert!(Identity::parse(&format!("# created: today\n# public key: age1...\n{id}\n")).is_ok());
    }
}
