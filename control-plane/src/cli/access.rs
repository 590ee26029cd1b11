//! `edgewise token …` and `edgewise audit`: API tokens and the audit log, and where the
//! CLI finds its own token.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::ApiClient;
use super::render::{self, or_dash, table};
use crate::auth::{AuditRecord, IssuedToken, Role, TokenRecord};

/// Where `edgewise serve` writes the first admin token, under its default data folder.
const DEFAULT_TOKEN_FILE: &str = "edgewise-data/secrets/admin-token";

/// The token the CLI sends: `--token`/`EDGEWISE_TOKEN`, else the file named by
/// `--token-file`/`EDGEWISE_TOKEN_FILE`, else the admin token of a control plane
/// started in the current folder with the default data folder.
pub fn resolve_token(token: Option<String>, token_file: Option<PathBuf>) -> Result<Option<String>> {
    if let Some(token) = token.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(path) = token_file {
        return read_token(&path).map(Some);
    }
    let default = Path::new(DEFAULT_TOKEN_FILE);
    if default.exists() {
        return read_token(default).map(Some);
    }
    Ok(None)
}

fn read_token(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the API token file {}", path.display()))?
        .trim()
        .to_owned())
}

/// API tokens.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and never stored in plain text.
    Create {
        /// A unique name, shown in the audit log.
        name: String,
        /// admin, operator, viewer or ci.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List tokens (names, roles, revocation; never the tokens).
    List,
    /// Revoke a token by name.
    Revoke {
        /// Its name.
        name: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    serde_json::from_value(json!(text))
        .map_err(|_| format!("role {text:?} must be admin, operator, viewer or ci"))
}

/// Runs a token command.
pub async fn token(api: &ApiClient, json: bool, command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create { name, role } => {
            let issued: IssuedToken = api
                .send_json(
                    Method::POST,
                    "/api/v1/tokens",
                    &json!({ "name": name, "role": role }),
                )
                .await?;
            if json {
                render::json(&issued);
            } else {
                eprintln!(
                    "created token {} with role {}; it is shown this once:",
                    issued.name, issued.role
                );
                println!("{}", issued.token);
            }
        }
        TokenCommand::List => {
            let tokens: Vec<TokenRecord> = api.get("/api/v1/tokens").await?;
            if json {
                render::json(&tokens);
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.role.to_string(),
                            t.created_at.clone(),
                            or_dash(t.revoked_at.as_ref()),
                        ]
                    })
                    .collect();
                table(&["name", "role", "created", "revoked"], &rows);
            }
        }
        TokenCommand::Revoke { name } => {
            let revoked: TokenRecord = api
                .send_json(
                    Method::DELETE,
                    &format!("/api/v1/tokens/{name}"),
                    &json!({}),
                )
                .await?;
            if json {
                render::json(&revoked);
            } else {
                println!("revoked token {}", revoked.name);
            }
        }
    }
    Ok(())
}

/// Prints the newest `limit` lines of the audit log.
pub async fn audit(api: &ApiClient, json: bool, limit: usize) -> Result<()> {
    let lines: Vec<AuditRecord> = api.get(&format!("/api/v1/audit?limit={limit}")).await?;
    if json {
        render::json(&lines);
    } else {
        let rows: Vec<Vec<String>> = lines
            .iter()
            .map(|line| {
                vec![
                    line.at.clone(),
                    line.actor.clone(),
                    or_dash(line.role),
                    line.method.clone(),
                    line.path.clone(),
                    line.status.to_string(),
                ]
            })
            .collect();
        table(&["at", "actor", "role", "method", "path", "status"], &rows);
    }
    Ok(())
}
