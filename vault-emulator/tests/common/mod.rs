//! Helpers shared by the integration tests: a started emulator and a real https client.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;
use vault_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

pub struct Setup {
    pub emulator: EmulatorHandle,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

pub fn start() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = EmulatorConfig::new(dir.path());
    config.pending_delay = Duration::from_millis(300);
    let emulator = Emulator::start(config).expect("emulator starts");
    let http = client(&emulator.info().ca_pem);
    Setup {
        emulator,
        dir,
        http,
    }
}

pub fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

impl Setup {
    pub fn url(&self, path: &str, api_version: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!(
            "{}{path}{sep}api-version={api_version}",
            self.emulator.info().vault_url
        )
    }

    /// An IMDS token for `client_id` (None: the default identity).
    pub async fn token(&self, client_id: Option<&str>) -> String {
        let mut url = format!(
            "{}?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net",
            self.emulator.info().identity_endpoint
        );
        if let Some(id) = client_id {
            url.push_str(&format!("&client_id={id}"));
        }
        let body: Value = self
            .http
            .get(url)
            .header("Metadata", "true")
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token json");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, headers, json)
    }

    /// Creates a self-signed certificate and waits for the pending operation to complete.
    pub async fn create_certificate(&self, token: &str, name: &str, policy: Value) -> Value {
        let (status, headers, body) = self
            .call(
                reqwest::Method::POST,
                &self.url(&format!("certificates/{name}/create"), "7.5"),
                Some(token),
                Some(serde_json::json!({ "policy": policy })),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        assert!(headers.get("location").is_some());
        assert_eq!(body["status"], "inProgress");
        for _ in 0..100 {
            let (status, _, op) = self
                .call(
                    reqwest::Method::GET,
                    &self.url(&format!("certificates/{name}/pending"), "7.5"),
                    Some(token),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{op}");
            if op["status"] == "completed" {
                return op;
            }
            assert_eq!(op["status"], "inProgress", "{op}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the certificate operation never completed");
    }
}
