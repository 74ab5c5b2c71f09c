//! The operator's account actions in the audit ledger: `vaidya user add|totp|unlock|disable|
//! enable` and `vaidya token` (issue, revoke) each leave an AuditEvent (Security Alert, "User
//! security attributes changed") naming who ran the command, the action, the account acted on
//! and the outcome. These commands act on the database directly, on the server's own machine,
//! so the person is the operating-system user: `$SUDO_USER` (the person behind `sudo`), else
//! `$USER`/`$LOGNAME`, recorded as `os:<name>` (never an account name, which cannot contain
//! `:`), with the real uid as the agent's `altId` (the variables can be set by hand; the uid
//! cannot). Report them with `vaidya audit report --user os:<name>`.
//!
//! While a server runs it holds the audit ledger, and a second appender would fork the hash
//! chain (the writer keeps the tip in memory), so the record goes to the ledger's inbox, which
//! the server's audit writer appends within about a second (`vaidya_audit::ToolAudit`); with
//! no server, the command appends itself. The ledger is opened before the action: if it cannot
//! be, nothing is done.

use std::os::unix::fs::MetadataExt;
use vaidya_audit::{Action, AuditRecord, Outcome, ToolAudit, Who};

pub struct OperatorAudit {
    sink: ToolAudit,
    who: Who,
}

impl OperatorAudit {
    /// Open the data directory's audit ledger (as writer or through the running server's inbox).
    pub fn open(config: &crate::config::Config) -> Result<OperatorAudit, String> {
        let key = crate::datadir::ledger_key(config).map_err(|e| format!("cannot record this in the audit ledger, so nothing was done: {e}"))?;
        let sink = ToolAudit::open(&vaidya_audit::audit_dir(&config.data), key)
            .map_err(|e| format!("cannot open the audit ledger, so nothing was done: {e}"))?;
        Ok(OperatorAudit { sink, who: operator() })
    }

    /// Record `action` on `account` with the command's outcome (`Err`: the message the
    /// operator sees). `detail`: what else the record should say (a token's id and expiry).
    pub fn record<T>(&self, action: &str, account: &str, result: &Result<T, String>, detail: Option<String>) -> Result<(), String> {
        let outcome = match result {
            Ok(_) => Outcome::Allowed,
            Err(e) => Outcome::Failed(e.clone()),
        };
        let mut rec = AuditRecord::new(Action::Account(action.to_string()), outcome);
        rec.who = self.who.clone();
        rec.target_user = Some(account.to_string());
        rec.reason = detail;
        self.sink.record(vec![rec]).map(|_| ()).map_err(|e| {
            let done = if result.is_ok() { "was done" } else { "failed" };
            format!("the action {done} but could not be recorded in the audit ledger: {e}")
        })
    }
}

/// The person running the command (see the module docs).
pub fn operator() -> Who {
    let name = ["SUDO_USER", "USER", "LOGNAME"].iter().find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty() && s.len() <= 64));
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let user = match (&name, uid) {
        (Some(n), _) => format!("os:{n}"),
        (None, Some(u)) => format!("os:uid-{u}"),
        (None, None) => "os:unknown".to_string(),
    };
    Who { user: Some(user), role: Some("operator".into()), session: uid.map(|u| format!("uid {u}")) }
}
