//! `vaidya token`

use super::DataArgs;
use crate::datadir;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  vaidya token --data /srv/vaidya --user admin            # print a new token\n  vaidya token --data /srv/vaidya --list                  # list tokens (never their secrets)\n  vaidya token --data /srv/vaidya --revoke 3f2a9c0d1e4b5a6f  # revoke one token by id\n  vaidya token --data /srv/vaidya --revoke-user admin      # revoke all of a user's tokens")]
pub struct TokenArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Make a new token for this account and print it (once).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["list", "revoke", "revoke_user"])]
    user: Option<String>,
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
    let db = datadir::db_path(&config.data);
    if !db.exists() {
        return Err(datadir::DataDirError::NotInitialised(config.data.clone()).to_string());
    }
    let conn = vaidya_store::open_admin(&db).map_err(|e| e.to_string())?;
    let fmt = |ms: Option<i64>| ms.map_or("-".to_string(), vaidya_fhir::datetime::format_instant);
    if let Some(user) = args.user {
        if vaidya_store::tokens::user_role(&conn, &user).map_err(|e| e.to_string())?.is_none() {
            return Err(format!("no account named '{user}'"));
        }
        let hours = args.hours.unwrap_or(config.limits.token_lifetime_hours);
        let expires = vaidya_store::now_ms() + (hours as i64) * 3_600_000;
        let t = vaidya_access::token::generate();
        vaidya_store::tokens::insert_token(&conn, &t.id, &t.secret_hash, &user, Some(expires)).map_err(|e| e.to_string())?;
        println!("{}", t.text);
        eprintln!("token id {} for '{user}', valid until {}", t.id, fmt(Some(expires)));
    } else if args.list {
        println!("{:<18} {:<16} {:<26} {:<26} revoked", "id", "account", "created", "expires");
        for t in vaidya_store::tokens::list_tokens(&conn).map_err(|e| e.to_string())? {
            println!("{:<18} {:<16} {:<26} {:<26} {}", t.id, t.user, fmt(Some(t.created_ms)), fmt(t.expires_ms), fmt(t.revoked_ms));
        }
    } else if let Some(id) = args.revoke {
        match vaidya_store::tokens::revoke_token(&conn, &id).map_err(|e| e.to_string())? {
            0 => return Err(format!("no live token with id '{id}'")),
            _ => println!("revoked token {id}"),
        }
    } else if let Some(user) = args.revoke_user {
        let n = vaidya_store::tokens::revoke_user_tokens(&conn, &user).map_err(|e| e.to_string())?;
        println!("revoked {n} token(s) of '{user}'");
    } else {
        return Err("say what to do: --user NAME, --list, --revoke ID or --revoke-user NAME".into());
    }
    Ok(ExitCode::SUCCESS)
}
