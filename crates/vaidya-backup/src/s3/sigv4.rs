//! Signing S3 requests (AWS Signature Version 4) with AWS's own signer, and the URL encoding
//! that S3's signature depends on.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// Holds the credentials as the signer wants them. Not `Debug`: it holds the secret key.
pub(crate) struct Signer {
    identity: Identity,
    region: String,
}

impl Signer {
    pub fn new(access_key_id: &str, secret_access_key: &str, region: &str) -> Self {
        let credentials =
            Credentials::new(access_key_id, secret_access_key, None, None, "vaidya-backup");
        Signer { identity: credentials.into(), region: region.to_string() }
    }

    /// The headers to add to the request (`authorization`, `x-amz-date`,
    /// `x-amz-content-sha256`). Every header in `headers` is signed, so a proxy or an attacker
    /// on the path cannot strip or change e.g. the Object Lock headers of a put.
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        let mut settings = SigningSettings::default();
        // S3 signs the path exactly as sent (already encoded by `encode_path`), once, and
        // without normalising `.`/`..` segments: they are part of a key.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        // S3 requires `x-amz-content-sha256`; the signer computes it over the body.
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| format!("signing parameters: {e}"))?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("cannot sign request: {e}"))?;
        let (instructions, _signature) =
            sign(signable, &params).map_err(|e| format!("cannot sign request: {e}"))?.into_parts();
        Ok(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

/// S3's URI encoding: every byte but the unreserved characters (`A-Z a-z 0-9 - _ . ~`) as
/// `%XX`, uppercase hex; `/` kept in paths (it separates a key's "folders"), encoded in query
/// values.
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_s3() {
        assert_eq!(
            encode("hospital/data/00000000000000000001-00000000000000000100-1764230000000.seg", true),
            "hospital/data/00000000000000000001-00000000000000000100-1764230000000.seg"
        );
        assert_eq!(encode("a b+c/d=é~", true), "a%20b%2Bc/d%3D%C3%A9~");
        assert_eq!(encode("a/b", false), "a%2Fb");
    }

    #[test]
    fn signature_covers_given_headers() {
        let signer = Signer::new("AKID", "secret", "us-east-1");
        let headers = vec![("x-amz-object-lock-mode", "COMPLIANCE".to_string())];
        let out = signer.sign("PUT", "http://127.0.0.1:8333/b/k", &headers, b"body").unwrap();
        let auth = &out.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/"), "{auth}");
        assert!(auth.contains("/us-east-1/s3/aws4_request"), "{auth}");
        assert!(auth.contains("x-amz-object-lock-mode"), "{auth}");
        assert!(!auth.contains("secret"));
        assert!(out.iter().any(|(k, _)| k == "x-amz-content-sha256"));
    }
}
