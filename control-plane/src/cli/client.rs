//! The REST client behind the CLI: every call returns the answer's JSON, or an error
//! carrying the server's own message.

use anyhow::{Result, anyhow};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A client of one control plane.
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the control plane at `base` (e.g. `http://127.0.0.1:8700`) that
    /// sends `token` as a bearer token on every call.
    pub fn new(base: &str, token: Option<&str>) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| anyhow!("the API token holds characters a header cannot"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .map_err(|e| anyhow!("cannot build the HTTP client: {e}"))?;
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.http.request(Method::GET, self.url(path)))
            .await
    }

    /// The id of the newest item listed at `path` (lists are newest first), naming
    /// `what` when there is none.
    pub async fn newest_id(&self, path: &str, what: &str) -> Result<String> {
        let all: Vec<serde_json::Value> = self.get(path).await?;
        all.first()
            .and_then(|item| item["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no {what} yet"))
    }

    /// `method path` with a JSON body.
    pub async fn send_json<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send(self.http.request(method, self.url(path)).json(body))
            .await
    }

    /// `POST path` with a raw byte body (which may be a stream).
    pub async fn post_body<T: DeserializeOwned>(
        &self,
        path: &str,
        body: reqwest::Body,
    ) -> Result<T> {
        self.send(
            self.http
                .post(self.url(path))
                .header("content-type", "application/octet-stream")
                .body(body),
        )
        .await
    }

    /// `GET path`, returning the response to read as a stream.
    pub async fn get_stream(&self, path: &str) -> Result<reqwest::Response> {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(error_of(response).await)
    }

    /// `DELETE path`, expecting no body.
    pub async fn delete(&self, path: &str) -> Result<()> {
        let response = self
            .http
            .delete(self.url(path))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(error_of(response).await)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self, err: reqwest::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach the control plane at {}: {err} (is `edgewise serve` running? set --server)",
            self.base
        )
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        response
            .json()
            .await
            .map_err(|e| anyhow!("unexpected answer from the control plane: {e}"))
    }
}

/// The server's error message, with the status.
async fn error_of(response: reqwest::Response) -> anyhow::Error {
    let status: StatusCode = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|body| {
            body.get("error")
                .and_then(|e| e.as_str())
                .map(str::to_owned)
        })
        .unwrap_or(text);
    anyhow!("{message} (HTTP {status})")
}
