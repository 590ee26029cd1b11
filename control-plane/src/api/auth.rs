//! Authentication on every request (bearer tokens; device credentials for bundle
//! downloads), the audit log of mutating calls, and the token endpoints.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, AppState, JsonBody, PathParams};
use crate::auth::{Access, AuditRecord, Caller, IssuedToken, Role, TokenRecord, required_access};

/// The route devices download bundles from with their own credentials.
const ARTIFACT_ROUTE: &str = "/api/v1/artifacts/{sha256}";

/// A device that proved itself with its MQTT credentials (HTTP Basic), on the
/// artifact route only.
#[derive(Debug, Clone)]
pub struct DeviceCaller(pub String);

/// How a request identified itself.
enum Credentials {
    None,
    Bearer(String),
    Basic { user: String, password: String },
    Malformed,
}

fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Credentials::None;
    };
    let Ok(value) = value.to_str() else {
        return Credentials::Malformed;
    };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Credentials::Bearer(token.trim().to_owned());
    }
    if let Some(encoded) = value.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if let Some((user, password)) = decoded.as_deref().and_then(|t| t.split_once(':')) {
            return Credentials::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            };
        }
    }
    Credentials::Malformed
}

/// Which roles may make a call needing `access`, for error messages.
fn roles_for(access: Access) -> &'static str {
    match access {
        Access::Public | Access::Read => "any role",
        Access::Release => "role ci, operator or admin",
        Access::Fleet => "role operator or admin",
        Access::Admin => "role admin",
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

/// The answer to a refused request; a 401 says which scheme to use.
fn refusal(err: ApiError) -> Response {
    let ask_for_token = err.status == StatusCode::UNAUTHORIZED;
    let mut response = err.into_response();
    if ask_for_token {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"edgewise\""),
        );
    }
    response
}

/// Who a request proved to be.
enum Identity {
    /// A device, by its credentials (artifact downloads only).
    Device(String),
    /// The holder of an API token.
    Token(Caller),
}

/// Checks a request's credentials; the refusal is the answer to send.
fn identify(
    state: &AppState,
    headers: &HeaderMap,
    artifact_download: bool,
) -> Result<Identity, ApiError> {
    match credentials(headers) {
        Credentials::None => Err(unauthorized(
            "this call needs a token: send `Authorization: Bearer TOKEN` (`edgewise token create`)",
        )),
        Credentials::Malformed => Err(unauthorized(
            "header `Authorization` must be `Bearer TOKEN` (or device Basic credentials for artifacts)",
        )),
        Credentials::Basic { .. } if !artifact_download => Err(unauthorized(
            "device credentials only download artifacts; this call needs a bearer token",
        )),
        Credentials::Basic { user, password } => {
            match state.fleet.authenticate_device(&user, &password) {
                Ok(true) => Ok(Identity::Device(user)),
                Ok(false) => Err(unauthorized("device credentials are not valid")),
                Err(err) => Err(ApiError::from(err)),
            }
        }
        Credentials::Bearer(token) => match state.tokens.authenticate(&token) {
            Ok(Some(caller)) => Ok(Identity::Token(caller)),
            Ok(None) => Err(unauthorized("the token is unknown or revoked")),
            Err(err) => Err(ApiError::from(err)),
        },
    }
}

/// Lets a request through only with the access its route needs, and writes every
/// mutating call (allowed or not) to the audit log.
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned());
    // Unmatched paths answer 404 whoever asks; they reveal nothing.
    let access = route
        .as_deref()
        .map_or(Access::Public, |route| required_access(&method, route));
    let mutating = !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS");
    if access == Access::Public {
        return next.run(request).await;
    }
    let artifact_download = route.as_deref() == Some(ARTIFACT_ROUTE) && method == "GET";
    let (caller, response) = match identify(&state, request.headers(), artifact_download) {
        Err(err) => (None, refusal(err)),
        Ok(Identity::Device(id)) => {
            request.extensions_mut().insert(DeviceCaller(id));
            (None, next.run(request).await)
        }
        Ok(Identity::Token(found)) => {
            let response = if found.role.allows(access) {
                request.extensions_mut().insert(found.clone());
                next.run(request).await
            } else {
                let route = route.as_deref().unwrap_or(&path);
                refusal(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "token {:?} has role {}; {method} {route} needs {}",
                        found.name,
                        found.role,
                        roles_for(access)
                    ),
                ))
            };
            (Some(found), response)
        }
    };
    if mutating {
        let line =
            crate::auth::audit_line(caller.as_ref(), &method, &path, response.status().as_u16());
        if let Err(err) = state.tokens.record(&line) {
            tracing::error!(error = %err, "cannot write the audit log");
        }
        tracing::info!(actor = %line.actor, method = %method, path = %path, status = line.status, "audit");
    }
    response
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A unique name (letters, digits, `-`, `_`, `.`), shown in the audit log.
    pub name: String,
    /// `admin`, `operator`, `viewer` or `ci`.
    pub role: Role,
}

/// Creates a token; the answer holds the token, shown this once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth", request_body = NewToken,
    responses((status = 201, body = IssuedToken), (status = 400, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let issued = state.tokens.create(&body.name, body.role)?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Lists tokens (never the tokens themselves).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "auth",
    responses((status = 200, body = Vec<TokenRecord>), (status = 403, body = super::ErrorBody)))]
pub async fn list_tokens(
    State(state): State<AppState>,
) -> Result<Json<Vec<TokenRecord>>, ApiError> {
    Ok(Json(state.tokens.list()?))
}

/// Revokes a token by name; it is refused from the next request on.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "auth", params(("name" = String, Path)),
    responses((status = 200, body = TokenRecord), (status = 404, body = super::ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<TokenRecord>, ApiError> {
    Ok(Json(state.tokens.revoke(&name)?))
}

/// The caller's own token name and role.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct WhoAmI {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// Says who the token belongs to (the dashboard uses it to show the role).
#[utoipa::path(get, path = "/api/v1/whoami", tag = "auth",
    responses((status = 200, body = WhoAmI), (status = 401, body = super::ErrorBody)))]
pub async fn whoami(Extension(caller): Extension<Caller>) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: caller.name,
        role: caller.role,
    })
}

/// How much of the audit log to show.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// The newest this many lines (default 100).
    pub limit: Option<usize>,
}

/// The audit log, newest first: every mutating call with the token's name.
#[utoipa::path(get, path = "/api/v1/audit", tag = "auth", params(AuditQuery),
    responses((status = 200, body = Vec<AuditRecord>), (status = 403, body = super::ErrorBody)))]
pub async fn audit(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<AuditQuery>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    Ok(Json(state.tokens.audit_log(query.limit.unwrap_or(100))?))
}
