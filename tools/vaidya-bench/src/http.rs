//! The HTTP/1.1 client (hyper, keep-alive pool) and the FHIR base URL.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::IpAddr;
use std::time::Duration;

pub const FHIR_JSON: &str = "application/fhir+json";

/// A FHIR base such as `http://127.0.0.1:8080/fhir`, checked to be on this machine.
#[derive(Clone, Debug)]
pub struct Base {
    /// `http://host:port`
    pub origin: String,
    /// `http://host:port/fhir` (no trailing slash)
    pub url: String,
}

impl Base {
    pub fn parse(text: &str) -> Result<Base, String> {
        let uri: Uri = text.parse().map_err(|e| format!("base URL '{text}': {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("base URL '{text}': only http:// is supported"));
        }
        let host = uri.host().ok_or_else(|| format!("base URL '{text}' has no host"))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(format!("base URL '{text}': vaidya-bench only sends load to this machine (127.0.0.1, ::1, localhost)"));
        }
        if uri.query().is_some() {
            return Err(format!("base URL '{text}' must not have a query"));
        }
        let authority = uri.authority().expect("has a host").as_str();
        let origin = format!("http://{authority}");
        let path = uri.path().trim_end_matches('/');
        Ok(Base { url: format!("{origin}{path}"), origin })
    }

    /// A URL on this base's origin: `link` may be absolute (its origin is replaced by ours, so we
    /// never follow a link elsewhere) or a path.
    pub fn same_origin(&self, link: &str) -> Result<String, String> {
        let uri: Uri = link.parse().map_err(|e| format!("link '{link}': {e}"))?;
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        Ok(format!("{}{pq}", self.origin))
    }
}

pub type Client = HyperClient<HttpConnector, Full<Bytes>>;

/// One client for all tasks; keeps up to `pool` idle connections (one per load client).
pub fn client(pool: usize) -> Client {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    conn.set_connect_timeout(Some(Duration::from_secs(10)));
    HyperClient::builder(TokioExecutor::new()).pool_max_idle_per_host(pool.max(1)).pool_idle_timeout(Duration::from_secs(90)).build(conn)
}

pub fn bearer(token: &str) -> Result<HeaderValue, String> {
    let mut v =
        HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| "the token has characters not allowed in a header")?;
    v.set_sensitive(true);
    Ok(v)
}

/// Send one request and read the whole response body.
pub async fn send(
    client: &Client,
    method: Method,
    uri: Uri,
    auth: &HeaderValue,
    body: Option<Bytes>,
) -> Result<(StatusCode, Bytes), String> {
    let mut req = Request::builder().method(method).uri(uri).header(AUTHORIZATION, auth.clone()).header(ACCEPT, FHIR_JSON);
    if body.is_some() {
        req = req.header(CONTENT_TYPE, FHIR_JSON);
    }
    let req = req.body(Full::new(body.unwrap_or_default())).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| describe_error(&e))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| format!("reading the response: {e}"))?.to_bytes();
    Ok((status, body))
}

fn describe_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// A short description of a failed response: status and the first diagnostics, if any.
pub fn describe_failure(status: StatusCode, body: &[u8]) -> String {
    let diag = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/issue/0/diagnostics").and_then(|d| d.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(160)]).into_owned());
    let diag: String = diag.chars().take(160).collect();
    format!("HTTP {}: {diag}", status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_is_loopback_only() {
        let b = Base::parse("http://127.0.0.1:8080/fhir/").unwrap();
        assert_eq!(b.url, "http://127.0.0.1:8080/fhir");
        assert_eq!(b.origin, "http://127.0.0.1:8080");
        assert!(Base::parse("http://localhost:1/fhir").is_ok());
        assert!(Base::parse("http://[::1]:1/fhir").is_ok());
        assert!(Base::parse("http://10.0.0.1:8080/fhir").is_err());
        assert!(Base::parse("http://example.org/fhir").is_err());
        assert!(Base::parse("https://127.0.0.1/fhir").is_err());
        assert_eq!(
            b.same_origin("http://elsewhere.example:9/fhir/Patient?_count=10&_offset=10").unwrap(),
            "http://127.0.0.1:8080/fhir/Patient?_count=10&_offset=10"
        );
        assert_eq!(b.same_origin("/fhir/Patient?a=b").unwrap(), "http://127.0.0.1:8080/fhir/Patient?a=b");
    }
}
