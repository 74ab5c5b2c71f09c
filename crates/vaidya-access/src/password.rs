//! Password hashing with Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;

pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 with default params").to_string()
}

pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// The shortest password a person may choose.
pub const MIN_LENGTH: usize = 12;

/// Is `new` acceptable as a chosen password? The reason if not.
pub fn check_new(new: &str, old: &str) -> Result<(), &'static str> {
    if new.chars().count() < MIN_LENGTH {
        return Err("the new password must have at least 12 characters");
    }
    if new.len() > 1024 {
        return Err("the new password is too long (at most 1024 bytes)");
    }
    if new == old {
        return Err("the new password must differ from the old one");
    }
    Ok(())
}

/// Spend as long as [`verify`] does, for a login naming no account, so that response times do
/// not tell which account names exist.
pub fn verify_nothing(password: &str) {
    use std::sync::OnceLock;
    static DUMMY: OnceLock<String> = OnceLock::new();
    let h = DUMMY.get_or_init(|| hash("an account that does not exist"));
    let _ = verify(password, h);
}

/// A one-time password for a new account: 20 characters from an alphabet without look-alikes.
pub fn generate_one_time() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_then_verify() {
        let pw = super::generate_one_time();
        let h = super::hash(&pw);
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify(&pw, &h));
        assert!(!super::verify("wrong", &h));
        assert!(!super::verify(&pw, "not a hash"));
    }

    #[test]
    fn chosen_passwords_have_twelve_characters_and_change() {
        assert!(super::check_new("short", "x").is_err());
        assert!(super::check_new("elevenchars", "x").is_err());
        assert!(super::check_new("twelve chars", "x").is_ok());
        assert!(super::check_new("twelve chars", "twelve chars").is_err());
        assert!(super::check_new("अस्पताल में आपका", "x").is_ok());
    }
}
