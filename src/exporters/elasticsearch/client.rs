//! The cluster client: built from the settings, one JSON request, reading window documents
//! back (training from an index).

use super::{ElasticsearchConfig, ElasticsearchError};
use crate::model::window::WindowRecord;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::transport::{
    MultiNodeConnectionPool, SingleNodeConnectionPool, TransportBuilder,
};
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::Value;

/// A client for the configured endpoints, credentials and TLS settings.
pub fn build_client(cfg: &ElasticsearchConfig) -> Result<Elasticsearch, ElasticsearchError> {
    let urls: Vec<url::Url> = cfg
        .endpoints
        .iter()
        .map(|e| {
            url::Url::parse(e)
                .map_err(|err| ElasticsearchError::Endpoint(e.clone(), err.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let mut builder = match urls.as_slice() {
        [one] => TransportBuilder::new(SingleNodeConnectionPool::new(one.clone())),
        _ => TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls, None)),
    };
    if !cfg.api_key.is_empty() {
        builder = builder.auth(Credentials::EncodedApiKey(cfg.api_key.expose().to_string()));
    } else if !cfg.user.is_empty() {
        builder = builder.auth(Credentials::Basic(
            cfg.user.clone(),
            cfg.password.expose().to_string(),
        ));
    }
    if cfg.tls.insecure_skip_verify {
        builder = builder.cert_validation(CertificateValidation::None);
    } else if !cfg.tls.ca_file.is_empty() {
        let ca = |message: String| ElasticsearchError::Ca {
            path: cfg.tls.ca_file.clone(),
            message,
        };
        let pem = std::fs::read(&cfg.tls.ca_file).map_err(|e| ca(e.to_string()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| ca(e.to_string()))?;
        builder = builder.cert_validation(CertificateValidation::Full(cert));
    }
    let transport = builder
        .request_body_compression(cfg.compression)
        .timeout(cfg.timeout.get())
        .build()
        .map_err(|e| ElasticsearchError::Client(e.to_string()))?;
    Ok(Elasticsearch::new(transport))
}

/// Sends one JSON request and returns the status and the JSON answer (Null if not JSON).
pub async fn json_request(
    client: &Elasticsearch,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), elasticsearch::Error> {
    let resp = client
        .transport()
        .send(
            method,
            path,
            HeaderMap::new(),
            Option::<&()>::None,
            body.map(elasticsearch::http::request::JsonBody::new),
            None,
        )
        .await?;
    let status = resp.status_code().as_u16();
    let value = resp.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, value))
}

/// Reads every window document of `index` back, oldest first, with the scroll API (supported
/// by Elasticsearch and OpenSearch alike).
pub async fn read_windows(
    client: &Elasticsearch,
    index: &str,
) -> Result<Vec<WindowRecord>, String> {
    let mut out = Vec::new();
    let (status, mut page) = json_request(
        client,
        Method::Post,
        &format!("/{index}/_search?scroll=2m"),
        Some(serde_json::json!({ "size": 1000, "sort": ["_doc"], "query": { "match_all": {} } })),
    )
    .await
    .map_err(|e| e.to_string())?;
    if status >= 400 {
        return Err(format!("searching {index}: HTTP {status}: {page}"));
    }
    loop {
        let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            break;
        }
        out.extend(
            hits.iter()
                .filter_map(|h| WindowRecord::from_document(&h["_source"])),
        );
        let Some(scroll_id) = page["_scroll_id"].as_str().map(str::to_string) else {
            break;
        };
        let (status, next) = json_request(
            client,
            Method::Post,
            "/_search/scroll",
            Some(serde_json::json!({ "scroll": "2m", "scroll_id": scroll_id })),
        )
        .await
        .map_err(|e| e.to_string())?;
        if status >= 400 {
            return Err(format!("scrolling {index}: HTTP {status}: {next}"));
        }
        page = next;
    }
    if let Some(id) = page["_scroll_id"].as_str() {
        let _ = json_request(
            client,
            Method::Delete,
            "/_search/scroll",
            Some(serde_json::json!({ "scroll_id": [id] })),
        )
        .await;
    }
    out.sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(a.series.cmp(&b.series)));
    out.dedup_by(|a, b| a.start_ns == b.start_ns && a.series == b.series);
    Ok(out)
}
