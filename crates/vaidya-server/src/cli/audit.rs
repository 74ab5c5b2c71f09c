//! `vaidya audit`: check, read and export the audit ledger (`<data>/audit/`).

use super::DataArgs;
use crate::datadir;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// Check the audit ledger: every entry, the hash chain, the Merkle tree and every signed
    /// checkpoint. Detects any changed, deleted or reordered audit entry.
    #[command(after_help = "Uses the ledger's public key, <data>/keys/ledger.pub. Safe while the server runs.\n\n\
Exit status: 0 when the audit ledger verifies; 1 when anything is wrong, with the first bad\n\
position (entry number) named on a line `FIRST BAD ENTRY: N`.\n\n\
Example:\n  vaidya audit verify --data /srv/vaidya")]
    Verify {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Who accessed a patient's record: when, from where, what they did, and why.
    #[command(after_help = "Times are shown in IST. Every read, search that returned the patient, change, print,\n\
export and break-the-glass naming the patient is listed, oldest first, allowed or denied.\n\n\
With --break-glass: every emergency access for review (the grants with their reasons, and\n\
every access made while a grant was active), optionally for a range of IST days.\n\n\
Examples:\n  vaidya audit report --data /srv/vaidya --patient 1000-0000-0019\n  vaidya audit report --data /srv/vaidya --break-glass --since 2026-11-20\n  vaidya audit report --data /srv/vaidya --patient-id 0192f3a1-7c4e-7b21-9d3e-5f0e1a2b3c4d\n  vaidya audit report --data /srv/vaidya --user dr.sharma --json > dr-sharma.ndjson")]
    Report {
        #[command(flatten)]
        data: DataArgs,
        /// The patient's UHID (as printed on their card; spaces and dashes are ignored).
        #[arg(long, value_name = "UHID", conflicts_with_all = ["patient_id", "user"])]
        patient: Option<String>,
        /// The Patient resource id instead of the UHID.
        #[arg(long, value_name = "ID", conflicts_with = "user")]
        patient_id: Option<String>,
        /// Everything one staff (or patient) account did instead (`anonymous` for requests
        /// without valid credentials).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Every break-the-glass grant and every access made under one, for review.
        #[arg(long, conflicts_with_all = ["patient", "patient_id", "user"])]
        break_glass: bool,
        /// With --break-glass: first day (IST) to include, YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD", requires = "break_glass")]
        since: Option<String>,
        /// With --break-glass: last day (IST) to include, YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD", requires = "break_glass")]
        until: Option<String>,
        /// Print the AuditEvents as NDJSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Export AuditEvents as NDJSON (one FHIR AuditEvent per line), e.g. for a CERT-In
    /// incident report.
    #[command(after_help = "Dates are hospital (IST) calendar days: --since is the first day included, --until\n\
the last day included. Without them, everything is exported. Safe while the server runs.\n\n\
Examples:\n  vaidya audit export --data /srv/vaidya --since 2026-06-01 --out audit-june.ndjson\n  vaidya audit export --data /srv/vaidya --since 2026-11-20 --until 2026-11-27 --out /media/usb/cert-in-audit.ndjson")]
    Export {
        #[command(flatten)]
        data: DataArgs,
        /// First day (IST) to include, YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD")]
        since: Option<String>,
        /// Last day (IST) to include, YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD")]
        until: Option<String>,
        /// Output file (`-` for standard output). An existing file is not overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

const IST_MINUTES: i32 = vaidya_domain::schedule::IST_OFFSET_MINUTES;

pub fn run(args: AuditArgs) -> Result<ExitCode, String> {
    match args.command {
        AuditCommand::Verify { data } => verify(data),
        AuditCommand::Report { data, patient, patient_id, user, break_glass, since, until, json } => {
            let glass = if break_glass { Some((since, until)) } else { None };
            report(data, patient, patient_id, user, glass, json)
        }
        AuditCommand::Export { data, since, until, out } => export(data, since, until, out),
    }
}

fn audit_dir(data: &DataArgs) -> Result<(crate::config::Config, PathBuf), String> {
    let config = data.load()?;
    let dir = vaidya_audit::audit_dir(&config.data);
    if !dir.join(vaidya_audit::DB_FILE).exists() {
        return Err(format!(
            "no audit ledger in {} (it is created when the server first records an event)",
            dir.display()
        ));
    }
    Ok((config, dir))
}

fn verify(data: DataArgs) -> Result<ExitCode, String> {
    let (config, dir) = audit_dir(&data)?;
    let vkey = datadir::verifier_key(&config.data).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    match vaidya_audit::verify(&dir, &vkey) {
        Ok(r) => {
            println!("audit entries: {}", r.entries);
            println!("checkpoints:   {}", r.checkpoints);
            println!("root:          {}", r.root);
            if let Some((size, ms)) = r.last_checkpoint {
                println!("last signed checkpoint: {size} entries at {} IST", vaidya_audit::format_local(ms, IST_MINUTES));
            }
            if r.unsigned > 0 {
                println!("not yet signed: the last {} entries (signed within a second while the server runs, and at shutdown)", r.unsigned);
            }
            println!("checked in {:.2}s", started.elapsed().as_secs_f64());
            println!("OK: every audit entry, the hash chain, the Merkle tree, every checkpoint and the report indexes verify");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (vaidya_audit::AuditVerifyError::Sqlite(_) | vaidya_audit::AuditVerifyError::NotFound(_))) => {
            Err(format!("verification could not run: {e}"))
        }
        Err(e) => {
            if let Some(pos) = e.position() {
                println!("FIRST BAD ENTRY: {pos}");
            }
            println!("FAILED: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The Patient id of a UHID, from the data database (read-only).
fn patient_for_uhid(config: &crate::config::Config, uhid: &str) -> Result<String, String> {
    let conn = datadir::read_conn(config)?;
    crate::fhir::registration::patient_for_uhid(&conn, uhid).map_err(|e| format!("{e}; or use --patient-id"))
}

type DayRange = (Option<String>, Option<String>);

fn report(data: DataArgs, uhid: Option<String>, patient_id: Option<String>, user: Option<String>, glass: Option<DayRange>, json: bool) -> Result<ExitCode, String> {
    let (config, dir) = audit_dir(&data)?;
    let (title, events) = match (uhid, patient_id, user) {
        _ if glass.is_some() => {
            let (since, until) = glass.expect("checked");
            let (since_ms, until_ms) = day_range(since.as_deref(), until.as_deref())?;
            ("Break-the-glass grants and the accesses made under them".to_string(), vaidya_audit::break_glass_events(&dir, since_ms, until_ms))
        }
        (Some(uhid), _, _) => {
            let id = patient_for_uhid(&config, &uhid)?;
            (format!("Accesses to the record of UHID {uhid} (Patient/{id})"), vaidya_audit::report_for_patient(&dir, &id))
        }
        (None, Some(id), _) => (format!("Accesses to the record of Patient/{id}"), vaidya_audit::report_for_patient(&dir, &id)),
        (None, None, Some(user)) => (format!("Everything recorded for user {user}"), vaidya_audit::report_for_user(&dir, &user)),
        (None, None, None) => return Err("say whose record: --patient UHID, --patient-id ID, --user NAME, or --break-glass".into()),
    };
    let events = events.map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let w = |e: std::io::Error| e.to_string();
    if json {
        for ev in &events {
            serde_json::to_writer(&mut out, ev).map_err(|e| e.to_string())?;
            writeln!(out).map_err(w)?;
        }
        out.flush().map_err(w)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{title}: {} events (times in IST)", events.len()).map_err(w)?;
    let rows: Vec<[String; 8]> = events
        .iter()
        .map(|ev| {
            let r = vaidya_audit::ReportRow::from_event(ev);
            [
                r.time_ms.map(|t| vaidya_audit::format_local(t, IST_MINUTES)).unwrap_or_default(),
                r.user,
                r.role,
                r.action,
                r.outcome,
                r.address,
                r.reason,
                r.what,
            ]
        })
        .collect();
    let header = ["TIME (IST)", "USER", "ROLE", "ACTION", "OUTCOME", "FROM", "REASON", "WHAT"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(7) {
            widths[i] = widths[i].max(cell.chars().count()).min(48);
        }
    }
    let line = |cells: &[&str]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == cells.len() - 1 {
                s.push_str(c);
            } else {
                let c: String = c.chars().take(widths[i]).collect();
                s.push_str(&format!("{c:<width$}  ", width = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&header)).map_err(w)?;
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells)).map_err(w)?;
    }
    out.flush().map_err(w)?;
    Ok(ExitCode::SUCCESS)
}

/// Midnight IST starting `date` (YYYY-MM-DD), in UTC milliseconds.
fn ist_day_start(date: &str) -> Result<i64, String> {
    let bad = || format!("'{date}' is not a date (YYYY-MM-DD)");
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let days = vaidya_audit::days_from_civil(
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    )
    .ok_or_else(bad)?;
    Ok(days * 86_400_000 - IST_MINUTES as i64 * 60_000)
}

/// `[since, until]` IST days as `[since_ms, until_ms)` UTC milliseconds (open ends: all).
fn day_range(since: Option<&str>, until: Option<&str>) -> Result<(i64, i64), String> {
    let since_ms = since.map(ist_day_start).transpose()?.unwrap_or(0);
    let until_ms = until.map(ist_day_start).transpose()?.map(|t| t + 86_400_000).unwrap_or(i64::MAX);
    if until_ms <= since_ms {
        return Err("--until is before --since".into());
    }
    Ok((since_ms, until_ms))
}

fn export(data: DataArgs, since: Option<String>, until: Option<String>, out: PathBuf) -> Result<ExitCode, String> {
    let (_config, dir) = audit_dir(&data)?;
    let (since_ms, until_ms) = day_range(since.as_deref(), until.as_deref())?;
    let started = std::time::Instant::now();
    let n = if out.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        vaidya_audit::export(&dir, since_ms, until_ms, &mut w).map_err(|e| e.to_string())?
    } else {
        let file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&out)
            .map_err(|e| format!("{}: {e}", out.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let n = vaidya_audit::export(&dir, since_ms, until_ms, &mut w).map_err(|e| e.to_string())?;
        w.into_inner().map_err(|e| e.to_string())?.sync_all().map_err(|e| e.to_string())?;
        n
    };
    eprintln!(
        "exported {n} audit events{}{} in {:.1}s to {}",
        since.map(|s| format!(" from {s}")).unwrap_or_default(),
        until.map(|u| format!(" to {u} (IST, inclusive)")).unwrap_or_default(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ist_days_start_at_ist_midnight() {
        // 2026-11-27 00:00 IST = 2026-11-26 18:30 UTC.
        assert_eq!(super::ist_day_start("2026-11-27").unwrap(), 1_795_717_800_000);
        assert!(super::ist_day_start("2026-02-30").is_err());
        assert!(super::ist_day_start("27-11-2026").is_err());
    }
}
