//! The server's Ed25519 ledger key, kept in the signed-note key format
//! (`PRIVATE+KEY+name+id+base64`), so that standard tlog tooling can check our checkpoints.

use signed_note::{StandardSigner, StandardVerifier};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("ledger key is malformed")]
    Malformed,
    #[error("verifier key is malformed")]
    MalformedVerifier,
}

/// The signing half of the ledger key, with its public verifier key.
pub struct LedgerKey {
    signer: StandardSigner,
    skey: String,
    vkey: String,
}

impl LedgerKey {
    /// A fresh key for the log called `name` (the checkpoint origin, e.g. `vaidya.example/ledger`).
    pub fn generate(name: &str) -> LedgerKey {
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, name);
        let signer = StandardSigner::new(&skey).expect("freshly generated key is well formed");
        LedgerKey { signer, skey, vkey }
    }

    /// Parse a stored private key; the verifier key is derived from it.
    pub fn from_private(skey: &str) -> Result<LedgerKey, KeyError> {
        let skey = skey.trim();
        let signer = StandardSigner::new(skey).map_err(|_| KeyError::Malformed)?;
        let (_, rest) = skey.split_once("PRIVATE+KEY+").ok_or(KeyError::Malformed)?;
        let mut parts = rest.splitn(3, '+');
        let (name, _id, b64) = (
            parts.next().ok_or(KeyError::Malformed)?,
            parts.next().ok_or(KeyError::Malformed)?,
            parts.next().ok_or(KeyError::Malformed)?,
        );
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| KeyError::Malformed)?;
        let secret: [u8; 32] = raw.get(1..33).and_then(|s| s.try_into().ok()).ok_or(KeyError::Malformed)?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&secret);
        let vkey = signed_note::new_ed25519_verifier_key(name, &signing.verifying_key());
        Ok(LedgerKey { signer, skey: skey.to_string(), vkey })
    }

    /// The private key text, for writing to the key file (mode 0600).
    pub fn private_text(&self) -> &str {
        &self.skey
    }

    /// The public verifier key text (`name+id+base64`), safe to publish.
    pub fn verifier_text(&self) -> &str {
        &self.vkey
    }

    pub fn name(&self) -> &str {
        use signed_note::Signer;
        self.signer.name()
    }

    pub(crate) fn signer(&self) -> &StandardSigner {
        &self.signer
    }
}

pub(crate) fn verifier(vkey: &str) -> Result<StandardVerifier, KeyError> {
    StandardVerifier::new(vkey.trim()).map_err(|_| KeyError::MalformedVerifier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_round_trips_and_derives_the_same_verifier() {
        let k = LedgerKey::generate("vaidya.test/ledger");
        let k2 = LedgerKey::from_private(k.private_text()).unwrap();
        assert_eq!(k.verifier_text(), k2.verifier_text());
        assert_eq!(k2.name(), "vaidya.test/ledger");
        assert!(LedgerKey::from_private("PRIVATE+KEY+x+00000000+AAAA").is_err());
    }
}
