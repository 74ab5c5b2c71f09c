//! Alerts for the privacy officer, delivered at once: every alert (a break-the-glass grant, an
//! account suspended by the exfiltration guard) is an error-level log line at target
//! `vaidya::alert` and a `/metrics` counter, and, when `[alerts] webhook_url` is set, a JSON
//! POST to that address: the hospital's SMS or e-mail gateway, chat, or incident system, so
//! that a person is told, not only a log file.
//!
//! Delivery never delays the request that raised the alert: alerts go to a bounded queue
//! ([`QUEUE`]) drained by one task that posts each in turn, with [`ATTEMPTS`] tries and a
//! growing pause between them. What cannot be delivered (queue full, the gateway down) is
//! logged at `vaidya::alert` and counted in `vaidya_alert_delivery_failures_total`.
//!
//! The body: `{"kind": "break-glass" | "account-suspended", "time": <UTC instant>, "hospital":
//! ..., ...the alert's own fields}`. With `webhook_token_file`, the request carries
//! `Authorization: Bearer <the file's content>`.

use crate::app::Metrics;
use crate::config;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;

/// Alerts waiting for delivery, at most.
pub const QUEUE: usize = 1_024;
/// Tries per alert.
pub const ATTEMPTS: u32 = 3;
/// Pause after the first failed try; doubled after each.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// Where alerts go. Cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    tx: Option<mpsc::Sender<Value>>,
    metrics: Arc<Metrics>,
    hospital: String,
}

/// The webhook settings, checked.
struct Hook {
    url: String,
    token: Option<String>,
    timeout: Duration,
}

/// Check `[alerts]`: a well-formed http(s) URL, a readable token file.
fn hook(c: &config::Alerts) -> Result<Option<Hook>, String> {
    let Some(url) = &c.webhook_url else { return Ok(None) };
    let uri: axum::http::Uri = url.parse().map_err(|e| format!("[alerts] webhook_url '{url}' is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!("[alerts] webhook_url '{url}' must be an http:// or https:// URL with a host"));
    }
    let token = match &c.webhook_token_file {
        None => None,
        Some(p) => {
            let t = std::fs::read_to_string(p).map_err(|e| format!("[alerts] webhook_token_file {}: {e}", p.display()))?;
            let t = t.trim().to_string();
            if t.is_empty() || t.contains(['\r', '\n']) {
                return Err(format!("[alerts] webhook_token_file {} must hold one line", p.display()));
            }
            Some(t)
        }
    };
    if c.webhook_timeout_seconds == 0 {
        return Err("[alerts] webhook_timeout_seconds must be at least 1".into());
    }
    Ok(Some(Hook { url: url.clone(), token, timeout: Duration::from_secs(c.webhook_timeout_seconds) }))
}

impl Alerts {
    /// Check the settings and, with a webhook, start the delivery task (inside a runtime).
    pub fn start(c: &config::Alerts, hospital: &str, metrics: Arc<Metrics>) -> Result<Alerts, String> {
        let tx = match hook(c)? {
            None => None,
            Some(h) => {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(deliver(h, rx, metrics.clone()));
                Some(tx)
            }
        };
        Ok(Alerts { tx, metrics, hospital: hospital.to_string() })
    }

    /// Log only (no webhook).
    pub fn log_only(metrics: Arc<Metrics>) -> Alerts {
        Alerts { tx: None, metrics, hospital: String::new() }
    }

    /// Send an alert of `kind` with `fields` (an object) to the webhook, if there is one. The
    /// caller has logged it already.
    pub fn raise(&self, kind: &str, fields: Value) {
        let Some(tx) = &self.tx else { return };
        let mut body = json!({"kind": kind, "time": vaidya_fhir::datetime::format_instant(vaidya_store::now_ms()), "hospital": self.hospital});
        if let (Some(b), Value::Object(f)) = (body.as_object_mut(), fields) {
            b.extend(f);
        }
        if tx.try_send(body).is_err() {
            self.metrics.alert_delivery_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "vaidya::alert", kind, "ALERT NOT DELIVERED: the alert queue is full (the webhook is down or slow); see the log lines above");
        }
    }
}

async fn deliver(hook: Hook, mut rx: mpsc::Receiver<Value>, metrics: Arc<Metrics>) {
    let hook = Arc::new(hook);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(hook.timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    while let Some(alert) = rx.recv().await {
        let mut pause = FIRST_PAUSE;
        let mut last_error = String::new();
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            let (agent, hook, body) = (agent.clone(), hook.clone(), alert.to_string());
            let result = tokio::task::spawn_blocking(move || post(&agent, &hook, &body)).await;
            match result {
                Ok(Ok(())) => {
                    delivered = true;
                    break;
                }
                Ok(Err(e)) => last_error = e,
                Err(e) => last_error = e.to_string(),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        if !delivered {
            metrics.alert_delivery_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "vaidya::alert", kind = %alert["kind"], error = %last_error,
                "ALERT NOT DELIVERED to the webhook after {ATTEMPTS} tries; the alert is in the log line above");
        }
    }
}

fn post(agent: &ureq::Agent, hook: &Hook, body: &str) -> Result<(), String> {
    let mut req = agent.post(&hook.url).header("Content-Type", "application/json");
    if let Some(t) = &hook.token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let resp = req.send(body).map_err(|e| e.to_string())?;
    if resp.status().is_success() { Ok(()) } else { Err(format!("the webhook answered {}", resp.status())) }
}
