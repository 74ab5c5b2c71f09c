//! `vaidya token`

use super::DataArgs;
use crate::datadir;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Making a token is an operator's action on the server's own machine (it needs the data\n\
directory), so it asks for no password or second factor; people log in with POST /auth/login.\n\n\
Examples:\n  vaidya token --data /srv/vaidya --user admin            # print a new token\n  vaidya token --data /srv/vaidya --user analyser --scope \"system/Observation.write system/Patient.read\"\n  vaidya token --data /srv/vaidya --list                  # list tokens (never their secrets)\n  vaidya token --data /srv/vaidya --revoke 3f2a9c0d1e4b5a6f  # revoke one token by id\n  vaidya token --data /srv/vaidya --revoke-user admin      # revoke all of a user's tokens")]
pub struct TokenArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Make a new token for this account and print it (once).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["list", "revoke", "revoke_user"])]
    user: Option<String>,
    /// Limit the new token to these SMART scopes (space-separated), e.g. "system/Observation.write
    /// system/Patient.read"; without it the token may do whatever the account's role may.
    #[arg(long, value_name = "SCOPES", requires = "user")]
    scope: Option<String>,
    /// Lifetime of the new token in hours (default from the config: 720).
    #[arg(long, value_name = "HOURS", requires = "user")]
    hours: Option<u64>,
    /// List all tokens: id, account, created, expiry, revoked.
    #[arg(long)]
    list: bool,
    /// Revoke the token with this id (the 16 hex digits after `vdy_`).
    #[arg(long, value_name = "ID")]
    revoke: Option<String>,
    /// Revoke every token of this account.
    #[arg(long, value_name = "NAME")]
    revoke_user: Option<String>,
}

pub fn run(args: TokenArgs) -> Result<ExitCode, String> {
    let config = args.data.load()?;
    let conn = datadir::admin_conn(&config)?;
    let fmt = |ms: Option<i64>| ms.map_or("-".to_string(), vaidya_fhir::datetime::format_instant);
    if let Some(user) = args.user {
        let audit = super::operator::OperatorAudit::open(&config)?;
        let hours = args.hours.unwrap_or(config.limits.token_lifetime_hours);
        let expires = vaidya_store::now_ms() + (hours as i64) * 3_600_000;
        let issued = (|| -> Result<(vaidya_access::token::NewToken, Option<String>), String> {
            if vaidya_store::tokens::user_role(&conn, &user).map_err(|e| e.to_string())?.is_none() {
                return Err(format!("no account named '{user}'"));
            }
            let scopes = match &args.scope {
                None => None,
                Some(text) => {
                    let set = vaidya_access::scope::ScopeSet::parse(text).map_err(|e| e.to_string())?;
                    for s in set.scopes() {
                        if let Some(t) = &s.resource_type
                            && crate::fhir::check_type(t).is_err()
                        {
                            return Err(format!("scope '{s}': '{t}' is not a FHIR R4 resource type"));
                        }
                    }
                    Some(set.to_string())
                }
            };
            let t = vaidya_access::token::generate();
            vaidya_store::tokens::insert_token_of_kind(&conn, &t.id, &t.secret_hash, &user, Some(expires), vaidya_store::tokens::KIND_API, scopes.as_deref())
                .map_err(|e| e.to_string())?;
            Ok((t, scopes))
        })();
        let detail = issued.as_ref().ok().map(|(t, scopes)| {
            format!("token {} valid until {}{}", t.id, fmt(Some(expires)), scopes.as_ref().map(|s| format!(", scopes {s}")).unwrap_or_default())
        });
        audit.record("token-issue", &user, &issued, detail)?;
        let (t, scopes) = issued?;
        println!("{}", t.text);
        let scoped = scopes.map(|s| format!(", scopes {s}")).unwrap_or_default();
        eprintln!("token id {} for '{user}', valid until {}{scoped}", t.id, fmt(Some(expires)));
    } else if args.list {
        println!("{:<18} {:<16} {:<8} {:<26} {:<26} {:<26} {:<26} scopes", "id", "account", "kind", "created", "expires", "last used", "revoked");
        for t in vaidya_store::tokens::list_tokens(&conn).map_err(|e| e.to_string())? {
            println!(
                "{:<18} {:<16} {:<8} {:<26} {:<26} {:<26} {:<26} {}",
                t.id,
                t.user,
                t.kind,
                fmt(Some(t.created_ms)),
                fmt(t.expires_ms),
                fmt(t.last_used_ms),
                fmt(t.revoked_ms),
                t.scopes.as_deref().unwrap_or("(role)")
            );
        }
    } else if let Some(id) = args.revoke {
        let audit = super::operator::OperatorAudit::open(&config)?;
        let owner = vaidya_store::tokens::find_token(&conn, &id).map_err(|e| e.to_string())?.map(|t| t.user);
        let revoked = match vaidya_store::tokens::revoke_token(&conn, &id).map_err(|e| e.to_string()) {
            Ok(0) => Err(format!("no live token with id '{id}'")),
            other => other,
        };
        audit.record("token-revoke", owner.as_deref().unwrap_or("unknown"), &revoked, Some(format!("token {id}")))?;
        revoked?;
        println!("revoked token {id}");
    } else if let Some(user) = args.revoke_user {
        let audit = super::operator::OperatorAudit::open(&config)?;
        let revoked = vaidya_store::tokens::revoke_user_tokens(&conn, &user).map_err(|e| e.to_string());
        let detail = revoked.as_ref().ok().map(|n| format!("all tokens of the account: {n} revoked"));
        audit.record("token-revoke", &user, &revoked, detail)?;
        let n = revoked?;
        println!("revoked {n} token(s) of '{user}'");
    } else {
        return Err("say what to do: --user NAME, --list, --revoke ID or --revoke-user NAME".into());
    }
    Ok(ExitCode::SUCCESS)
}
