//! `vaidya user`

use super::DataArgs;
use super::operator::OperatorAudit;
use crate::datadir;
use std::process::ExitCode;


#[derive(clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(clap::Subcommand)]
enum UserCommand {
    /// Create an account (staff, or a patient's own) and print its one-time password (once).
    #[command(after_help = "Roles: registration, doctor, nurse, lab, radiology, billing, admin, privacy-officer, auditor, patient.\n\
A `patient` account reads only that patient's own records (released reports, appointments, bills) and needs --patient.\n\
A doctor or nurse may name their Practitioner record (--practitioner): patients with an appointment or encounter with them are in their care, besides their department's.\n\
Examples:\n  vaidya user add --data /srv/vaidya --name asha.lab --role lab --department lab\n  vaidya user add --data /srv/vaidya --name dr.rao --role doctor --department gen-med --practitioner dr-rao\n  vaidya user add --data /srv/vaidya --name sita.devi --role patient --patient pt-2")]
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// Account name (letters, digits, `.`, `_`, `-`; at most 64).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Role of the account.
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// Department the account works in (a HealthcareService id), where the role needs one.
        #[arg(long, value_name = "DEPT")]
        department: Option<String>,
        /// For a `patient` account: the id of their Patient record.
        #[arg(long, value_name = "PATIENT_ID")]
        patient: Option<String>,
        /// For a doctor or nurse: the id of their Practitioner record.
        #[arg(long, value_name = "PRACTITIONER_ID")]
        practitioner: Option<String>,
    },
    /// Enrol (or replace) an account's TOTP second factor: prints the secret and an otpauth://
    /// URI for an authenticator app, once. Active at once; the old secret stops working.
    #[command(after_help = "Roles admin, privacy-officer and auditor cannot log in until enrolled.
Give the URI (as a QR code) or the secret to the person, in person; neither is shown again.
Example:
  vaidya user totp --data /srv/vaidya --name admin")]
    Totp {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, value_name = "NAME")]
        name: String,
    },
    /// Lift a lockout after failed logins (and forget the failures).
    Unlock {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, value_name = "NAME")]
        name: String,
    },
    /// Suspend an account: no login, and none of its tokens work, until `enable`.
    Disable {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, value_name = "NAME")]
        name: String,
    },
    /// Reinstate a suspended account (its unexpired, unrevoked tokens work again).
    Enable {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, value_name = "NAME")]
        name: String,
    },
}

/// Open the data directory's database for account administration.
fn admin_conn(data: &DataArgs) -> Result<(crate::config::Config, vaidya_store::Conn), String> {
    let config = data.load()?;
    let conn = datadir::admin_conn(&config)?;
    Ok((config, conn))
}

/// Run `f` on the account database and record it (`action` on account `name`, with its
/// outcome) in the audit ledger, which is opened first: if it cannot be, nothing is done.
fn audited<T>(
    data: &DataArgs,
    action: &str,
    name: &str,
    detail: Option<String>,
    f: impl FnOnce(&crate::config::Config, &vaidya_store::Conn) -> Result<T, String>,
) -> Result<T, String> {
    let (config, conn) = admin_conn(data)?;
    let audit = OperatorAudit::open(&config)?;
    let result = f(&config, &conn);
    audit.record(action, name, &result, detail)?;
    result
}

fn require(found: bool, name: &str) -> Result<(), String> {
    if found { Ok(()) } else { Err(format!("no account named '{name}'")) }
}

pub fn run(args: UserArgs) -> Result<ExitCode, String> {
    match args.command {
        UserCommand::Add { data, name, role, department, patient, practitioner } => {
            crate::auth::accounts::check_new(&name, &role, department.as_deref(), patient.as_deref(), practitioner.as_deref())?;
            let scope = department.clone().map(|d| format!(" in {d}")).or(patient.clone().map(|p| format!(" for Patient/{p}"))).unwrap_or_default();
            let password = audited(&data, "user-add", &name, Some(format!("role {role}{scope}")), |_, conn| {
                crate::auth::accounts::insert(conn, &name, &role, department.as_deref(), patient.as_deref(), practitioner.as_deref())
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("an account named '{name}' already exists"))
            })?;
            println!("Created account '{name}' ({role}{scope})");
            println!("One-time password: {password}");
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Totp { data, name } => {
            let (secret, uri) = audited(&data, "user-totp", &name, None, |config, conn| {
                require(vaidya_store::tokens::user_role(conn, &name).map_err(|e| e.to_string())?.is_some(), &name)?;
                let secret = vaidya_access::totp::generate_secret();
                let uri = vaidya_access::totp::otpauth_uri(&secret, &name, &config.auth.totp_issuer).map_err(|e| e.to_string())?;
                vaidya_store::tokens::set_totp_secret(conn, &name, &secret).map_err(|e| e.to_string())?;
                Ok((secret, uri))
            })?;
            println!("TOTP enrolled for '{name}' (SHA-1, 6 digits, 30 s); shown only this once:");
            println!("Secret: {secret}");
            println!("URI:    {uri}");
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Unlock { data, name } => {
            audited(&data, "user-unlock", &name, None, |_, conn| require(vaidya_store::tokens::unlock_user(conn, &name).map_err(|e| e.to_string())?, &name))?;
            tracing::info!(target: "vaidya::auth", action = "unlock", user = ?name, "account unlocked by an operator");
            println!("Unlocked '{name}'");
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Disable { data, name } => {
            audited(&data, "user-disable", &name, None, |_, conn| {
                let now = vaidya_store::now_ms();
                require(vaidya_store::tokens::set_user_disabled(conn, &name, Some(now)).map_err(|e| e.to_string())?, &name)
            })?;
            tracing::info!(target: "vaidya::auth", action = "disable", user = ?name, "account disabled by an operator");
            println!("Disabled '{name}': no login, and none of its tokens work");
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Enable { data, name } => {
            audited(&data, "user-enable", &name, None, |_, conn| {
                require(vaidya_store::tokens::set_user_disabled(conn, &name, None).map_err(|e| e.to_string())?, &name)
            })?;
            tracing::info!(target: "vaidya::auth", action = "enable", user = ?name, "account enabled by an operator");
            println!("Enabled '{name}' (tokens revoked by a suspension stay revoked: log in again or make a new token)");
            Ok(ExitCode::SUCCESS)
        }
    }
}
