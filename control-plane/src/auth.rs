//! API tokens and roles: who may call what, tokens stored only as hashes, and the
//! audit log of every mutating call.
//!
//! A token is `ewt_` followed by 43 URL-safe characters (256 random bits). The store
//! keeps its sha256 and never the token itself: the token is shown once, when it is
//! created. 256 random bits need no slow hash; there is nothing to brute-force.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::credentials;
use crate::error::{Error, Result};
use crate::store::{Store, Table};

/// What every token starts with, so a leaked one is recognisable (and scannable).
pub const TOKEN_PREFIX: &str = "ewt_";

/// The name of the admin token the first start creates.
pub const BOOTSTRAP_TOKEN_NAME: &str = "admin";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including tokens, keys and the audit log.
    Admin,
    /// Everything a `ci` token may do, plus devices and groups.
    Operator,
    /// Reads only.
    Viewer,
    /// Pushes versions, deploys, starts and steers rollouts and training; no devices,
    /// tokens or keys.
    Ci,
}

impl Role {
    /// Whether this role may make a call that needs `access`.
    pub fn allows(self, access: Access) -> bool {
        match access {
            Access::Public | Access::Read => true,
            Access::Release => self != Role::Viewer,
            Access::Fleet => matches!(self, Role::Admin | Role::Operator),
            Access::Admin => self == Role::Admin,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Ci => "ci",
        })
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: health, the OpenAPI document, `/metrics`, the dashboard's files.
    Public,
    /// Any valid token.
    Read,
    /// Releasing models: push versions, aliases, deployments, rollouts, training.
    Release,
    /// Managing devices and groups.
    Fleet,
    /// Tokens, keys, broker credential files, the audit log.
    Admin,
}

/// The access `method route` needs; `route` is the matched route pattern, such as
/// `/api/v1/devices/{id}`. Anything not listed needs `Admin`: new routes are closed
/// until someone decides otherwise.
pub fn required_access(method: &str, route: &str) -> Access {
    const PUBLIC: [&str; 4] = ["/api/v1/health", "/api/v1/openapi.json", "/metrics", "/"];
    const ADMIN_READS: [&str; 3] = [
        "/api/v1/broker/mosquitto",
        "/api/v1/tokens",
        "/api/v1/audit",
    ];
    let reading = matches!(method, "GET" | "HEAD");
    if reading {
        if PUBLIC.contains(&route) || route.starts_with("/dashboard/") {
            return Access::Public;
        }
        if ADMIN_READS.contains(&route) {
            return Access::Admin;
        }
        return Access::Read;
    }
    let release = [
        ("POST", "/api/v1/models/{name}/versions"),
        ("PUT", "/api/v1/models/{name}/aliases/{alias}"),
        ("DELETE", "/api/v1/models/{name}/aliases/{alias}"),
        ("POST", "/api/v1/deployments"),
        ("POST", "/api/v1/rollouts"),
        ("POST", "/api/v1/rollouts/{id}/{command}"),
        ("POST", "/api/v1/datasets"),
        ("POST", "/api/v1/training-jobs"),
        ("POST", "/api/v1/training-jobs/{id}/cancel"),
        ("POST", "/api/v1/training-jobs/{id}/approve"),
        ("POST", "/api/v1/training-jobs/{id}/bundle"),
        ("PUT", "/api/v1/models/{name}/retraining-policy"),
        ("DELETE", "/api/v1/models/{name}/retraining-policy"),
    ];
    let fleet = [
        ("POST", "/api/v1/devices"),
        ("PUT", "/api/v1/devices/{id}/group"),
        ("POST", "/api/v1/devices/{id}/revoke"),
        ("DELETE", "/api/v1/models/{name}/versions/{version}"),
    ];
    if release.contains(&(method, route)) {
        Access::Release
    } else if fleet.contains(&(method, route)) {
        Access::Fleet
    } else {
        Access::Admin
    }
}

/// A stored token: everything but the token itself.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenRecord {
    /// Its unique name, shown in the audit log.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was revoked, if it was; a revoked token is refused.
    pub revoked_at: Option<String>,
}

/// A token just created: the only time the token itself is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The bearer token; store it now, it cannot be shown again.
    pub token: String,
}

/// Who made a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: Role,
}

/// One line of the audit log: a mutating call, allowed or not.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    /// When it was answered (RFC 3339).
    pub at: String,
    /// The token's name; `-` when the call carried no valid token.
    pub actor: String,
    /// The token's role, if it had one.
    pub role: Option<Role>,
    /// HTTP method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The answer's status code.
    pub status: u16,
}

/// The token store and the audit log.
#[derive(Clone)]
pub struct Tokens {
    /// sha256 of the token (hex) → record.
    by_hash: Table<TokenRecord>,
    /// `{id:020}` → audit record, in order.
    audit: Table<AuditRecord>,
    store: Store,
}

/// sha256 of a token, hex.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Errors unless `name` is 1 to 64 letters, digits, `-`, `_` or `.`.
fn check_name(name: &str) -> Result<()> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fine {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "field `name`: {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

impl Tokens {
    /// The tokens kept in `store`.
    pub fn open(store: &Store) -> Result<Self> {
        Ok(Tokens {
            by_hash: store.table("api_tokens")?,
            audit: store.table("audit")?,
            store: store.clone(),
        })
    }

    /// Creates a token named `name` with `role`.
    pub fn create(&self, name: &str, role: Role) -> Result<IssuedToken> {
        check_name(name)?;
        let _guard = self.store.lock();
        if self.by_hash.all()?.iter().any(|record| record.name == name) {
            return Err(Error::Conflict(format!(
                "a token named {name:?} exists; revoke it or pick another name"
            )));
        }
        let token = format!("{TOKEN_PREFIX}{}", credentials::generate_password());
        let record = TokenRecord {
            name: name.to_owned(),
            role,
            created_at: now(),
            revoked_at: None,
        };
        self.by_hash.put(&token_hash(&token), &record)?;
        self.store.flush()?;
        Ok(IssuedToken {
            name: name.to_owned(),
            role,
            token,
        })
    }

    /// Every token, oldest first, revoked ones included.
    pub fn list(&self) -> Result<Vec<TokenRecord>> {
        let mut all = self.by_hash.all()?;
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
        Ok(all)
    }

    /// Revokes the token named `name`; it is refused from now on.
    pub fn revoke(&self, name: &str) -> Result<TokenRecord> {
        let _guard = self.store.lock();
        let (key, mut record) = self
            .by_hash
            .scan("")?
            .into_iter()
            .find(|(_, record)| record.name == name && record.revoked_at.is_none())
            .ok_or_else(|| Error::NotFound(format!("no active token named {name:?}")))?;
        record.revoked_at = Some(now());
        self.by_hash.put(&key, &record)?;
        self.store.flush()?;
        Ok(record)
    }

    /// Whether no token exists yet (a fresh data folder).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.by_hash.all()?.is_empty())
    }

    /// The caller a bearer token belongs to; `None` for an unknown or revoked token.
    pub fn authenticate(&self, token: &str) -> Result<Option<Caller>> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        Ok(self
            .by_hash
            .get(&token_hash(token))?
            .filter(|record| record.revoked_at.is_none())
            .map(|record| Caller {
                name: record.name,
                role: record.role,
            }))
    }

    /// Appends a line to the audit log.
    pub fn record(&self, entry: &AuditRecord) -> Result<()> {
        let id = self.store.next_in_sequence("audit")?;
        self.audit.put(&format!("{id:020}"), entry)?;
        Ok(())
    }

    /// The newest `limit` audit lines, newest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        Ok(self.audit.newest(limit)?)
    }
}

/// Builds the audit line for a call answered now.
pub fn audit_line(caller: Option<&Caller>, method: &str, path: &str, status: u16) -> AuditRecord {
    AuditRecord {
        at: now(),
        actor: caller.map_or_else(|| "-".to_owned(), |c| c.name.clone()),
        role: caller.map(|c| c.role),
        method: method.to_owned(),
        path: path.to_owned(),
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_the_matrix_says() {
        use Access::*;
        let table = [
            (Role::Viewer, [true, true, false, false, false]),
            (Role::Ci, [true, true, true, false, false]),
            (Role::Operator, [true, true, true, true, false]),
            (Role::Admin, [true, true, true, true, true]),
        ];
        for (role, expected) in table {
            let got = [Public, Read, Release, Fleet, Admin].map(|access| role.allows(access));
            assert_eq!(got, expected, "{role}");
        }
    }

    #[test]
    fn routes_need_the_right_access() {
        assert_eq!(required_access("GET", "/api/v1/health"), Access::Public);
        assert_eq!(required_access("GET", "/dashboard/app.js"), Access::Public);
        assert_eq!(required_access("GET", "/api/v1/devices"), Access::Read);
        assert_eq!(required_access("GET", "/api/v1/tokens"), Access::Admin);
        assert_eq!(
            required_access("POST", "/api/v1/models/{name}/versions"),
            Access::Release
        );
        assert_eq!(required_access("POST", "/api/v1/rollouts"), Access::Release);
        assert_eq!(required_access("POST", "/api/v1/devices"), Access::Fleet);
        assert_eq!(required_access("POST", "/api/v1/tokens"), Access::Admin);
        assert_eq!(
            required_access("POST", "/api/v1/anything-new"),
            Access::Admin
        );
    }

    #[test]
    fn tokens_are_stored_hashed_and_can_be_revoked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let tokens = Tokens::open(&store).expect("tokens");
        let issued = tokens.create("pipeline", Role::Ci).expect("create");
        assert!(issued.token.starts_with(TOKEN_PREFIX));
        let caller = tokens.authenticate(&issued.token).expect("lookup");
        assert_eq!(
            caller,
            Some(Caller {
                name: "pipeline".into(),
                role: Role::Ci
            })
        );
        let stored = serde_json::to_string(&tokens.list().expect("list")).expect("json");
        assert!(!stored.contains(&issued.token[TOKEN_PREFIX.len()..]));
        assert!(matches!(
            tokens.create("pipeline", Role::Admin),
            Err(Error::Conflict(_))
        ));
        tokens.revoke("pipeline").expect("revoke");
        assert_eq!(tokens.authenticate(&issued.token).expect("lookup"), None);
        assert_eq!(tokens.authenticate("ewt_guess").expect("lookup"), None);
        assert!(matches!(
            tokens.create("bad name", Role::Ci),
            Err(Error::Invalid(_))
        ));
    }
}
