//! Making staff and patient accounts: the rules an account's name, role and links must meet,
//! shared by the operator's `vaidya user add` and the administrator's screen.

/// The roles an account may have (`machine`: an integration or analyser, with scoped tokens;
/// `node`: a department node, which may only follow the ledger).
pub const ROLES: [&str; 12] =
    ["registration", "doctor", "nurse", "lab", "radiology", "billing", "admin", "privacy-officer", "auditor", "patient", "machine", "node"];

/// What a new account is: `Err` with the reason, in words for the person who typed it.
pub fn check_new(name: &str, role: &str, department: Option<&str>, patient: Option<&str>, practitioner: Option<&str>) -> Result<(), String> {
    let valid_name = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if name == crate::fhir::charges::IMPORT_AUTHOR {
        return Err(format!("'{name}' is reserved: it names bulk imports in the ledger"));
    }
    if !valid_name {
        return Err(format!("'{name}' is not a valid account name (letters, digits, '.', '_', '-'; at most 64)"));
    }
    if !ROLES.contains(&role) {
        return Err(format!("unknown role '{role}'; one of: {}", ROLES.join(", ")));
    }
    if let Some(d) = department
        && !crate::fhir::is_valid_id(d)
    {
        return Err(format!("'{d}' is not a valid department id"));
    }
    match (patient, role == "patient") {
        (None, true) => return Err("a patient account needs --patient (the id of their Patient record)".into()),
        (Some(_), false) => return Err("--patient is only for accounts with the role 'patient'".into()),
        (Some(p), true) if !crate::fhir::is_valid_id(p) => return Err(format!("'{p}' is not a valid Patient id")),
        _ => {}
    }
    if let Some(p) = practitioner {
        if !["doctor", "nurse"].contains(&role) {
            return Err("--practitioner is only for accounts with the role 'doctor' or 'nurse'".into());
        }
        if !crate::fhir::is_valid_id(p) {
            return Err(format!("'{p}' is not a valid Practitioner id"));
        }
    }
    Ok(())
}

/// Create the account with a fresh one-time password (returned, to be shown once): `Ok(None)`
/// if the name is taken.
pub fn insert(
    conn: &impl vaidya_store::Db,
    name: &str,
    role: &str,
    department: Option<&str>,
    patient: Option<&str>,
    practitioner: Option<&str>,
) -> Result<Option<String>, vaidya_store::StoreError> {
    let password = vaidya_access::password::generate_one_time();
    let hash = vaidya_access::password::hash(&password);
    if !vaidya_store::tokens::insert_user(conn, name, role, department, Some(&hash), true)? {
        return Ok(None);
    }
    if let Some(p) = patient {
        vaidya_store::tokens::set_user_patient(conn, name, p)?;
    }
    if let Some(p) = practitioner {
        vaidya_store::tokens::set_user_practitioner(conn, name, p)?;
    }
    Ok(Some(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_accounts_are_checked() {
        assert!(check_new("asha.lab", "lab", Some("lab"), None, None).is_ok());
        assert!(check_new("dr.rao", "doctor", Some("gen-med"), None, Some("dr-rao")).is_ok());
        assert!(check_new("", "lab", None, None, None).is_err());
        assert!(check_new("a b", "lab", None, None, None).is_err());
        assert!(check_new("x", "superuser", None, None, None).is_err());
        assert!(check_new("x", "patient", None, None, None).is_err(), "a patient account needs its patient");
        assert!(check_new("x", "lab", None, Some("p1"), None).is_err());
        assert!(check_new("x", "lab", None, None, Some("dr-x")).is_err(), "a practitioner only for clinicians");
        assert!(check_new("x", "lab", Some("no/such"), None, None).is_err());
    }
}
