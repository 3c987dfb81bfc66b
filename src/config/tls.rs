//! TLS settings in the Collector's `configtls` shape, for the OTLP exporter (client side) and the
//! OTLP receiver's gRPC and HTTP servers (server side). Certificates and keys are PEM files;
//! they are read when the component starts, so a missing or unreadable file stops startup with
//! the component and the file named.
//!
//! ```yaml
//! exporters:
//!   otlp/collector:
//!     endpoint: collector:4317
//!     tls:
//!       ca_file: /etc/otelwatch/ca.pem         # trust this CA (else the public web roots)
//!       cert_file: /etc/otelwatch/client.pem   # client certificate, for mutual TLS
//!       key_file: /etc/otelwatch/client.key
//!       server_name_override: collector.internal
//! receivers:
//!   otlp:
//!     protocols:
//!       grpc:
//!         tls: { cert_file: server.pem, key_file: server.key, client_ca_file: clients-ca.pem }
//! ```

use super::error::ConfigError;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTls {
    /// No TLS at all: plaintext.
    pub insecure: bool,
    /// The CA bundle the server's certificate must chain to; without it, the public web roots.
    pub ca_file: Option<String>,
    /// A client certificate and its key, for servers that require mutual TLS.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// The name the server's certificate must carry, when it is not the endpoint's host.
    pub server_name_override: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTls {
    pub cert_file: String,
    pub key_file: String,
    /// When set, clients must present a certificate that chains to this CA (mutual TLS).
    pub client_ca_file: Option<String>,
}

impl ClientTls {
    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.insecure {
            for (key, set) in [
                ("ca_file", self.ca_file.is_some()),
                ("cert_file", self.cert_file.is_some()),
                ("key_file", self.key_file.is_some()),
                ("server_name_override", self.server_name_override.is_some()),
            ] {
                if set {
                    errors.push(ConfigError::new(
                        format!("{path}.{key}"),
                        "has no effect with insecure: true (plaintext); remove one of them",
                    ));
                }
            }
        }
        pair(path, &self.cert_file, &self.key_file, errors);
    }
}

impl ServerTls {
    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        for (key, value) in [("cert_file", &self.cert_file), ("key_file", &self.key_file)] {
            if value.trim().is_empty() {
                errors.push(ConfigError::new(
                    format!("{path}.{key}"),
                    "required: a PEM file (TLS needs both cert_file and key_file)",
                ));
            }
        }
    }
}

fn pair(path: &str, cert: &Option<String>, key: &Option<String>, errors: &mut Vec<ConfigError>) {
    match (cert, key) {
        (Some(_), None) => errors.push(ConfigError::new(
            format!("{path}.key_file"),
            "required with cert_file",
        )),
        (None, Some(_)) => errors.push(ConfigError::new(
            format!("{path}.cert_file"),
            "required with key_file",
        )),
        _ => {}
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Pem { file: String, message: String },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// A PEM file's bytes.
pub fn read_pem(file: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|source| TlsError::Read {
        file: file.to_string(),
        source,
    })
}

/// A rustls server configuration (HTTP/1.1 over TLS) from the receiver's settings.
pub fn rustls_server(tls: &ServerTls) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem_err = |file: &str, e: rustls::pki_types::pem::Error| TlsError::Pem {
        file: file.to_string(),
        message: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read_pem(&tls.cert_file)?)
            .collect::<Result<_, _>>()
            .map_err(|e| pem_err(&tls.cert_file, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            file: tls.cert_file.clone(),
            message: "no certificate in it".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&read_pem(&tls.key_file)?)
        .map_err(|e| pem_err(&tls.key_file, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(file) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read_pem(file)?) {
                roots
                    .add(cert.map_err(|e| pem_err(file, e))?)
                    .map_err(|e| TlsError::Pem {
                        file: file.clone(),
                        message: e.to_string(),
                    })?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsError::Setup(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Setup(format!("{}: {e}", tls.cert_file)))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// tonic's server TLS from the receiver's settings.
pub fn tonic_server(tls: &ServerTls) -> Result<tonic::transport::ServerTlsConfig, TlsError> {
    let identity =
        tonic::transport::Identity::from_pem(read_pem(&tls.cert_file)?, read_pem(&tls.key_file)?);
    let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(file) = &tls.client_ca_file {
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(read_pem(file)?));
    }
    Ok(config)
}

/// tonic's client TLS from the exporter's settings.
pub fn tonic_client(tls: &ClientTls) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    let mut config = tonic::transport::ClientTlsConfig::new();
    config = match &tls.ca_file {
        Some(file) => {
            config.ca_certificate(tonic::transport::Certificate::from_pem(read_pem(file)?))
        }
        None => config.with_webpki_roots(),
    };
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        config = config.identity(tonic::transport::Identity::from_pem(
            read_pem(cert)?,
            read_pem(key)?,
        ));
    }
    if let Some(name) = &tls.server_name_override {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_with_their_paths() {
        let mut errors = Vec::new();
        ClientTls {
            insecure: true,
            ca_file: Some("ca.pem".into()),
            cert_file: Some("c.pem".into()),
            ..Default::default()
        }
        .validate("exporters.otlp.tls", &mut errors);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "exporters.otlp.tls.ca_file",
                "exporters.otlp.tls.cert_file",
                "exporters.otlp.tls.key_file"
            ]
        );
        let mut errors = Vec::new();
        ServerTls::default().validate("receivers.otlp.protocols.grpc.tls", &mut errors);
        assert_eq!(errors.len(), 2);
        assert_eq!(
            errors[0].path,
            "receivers.otlp.protocols.grpc.tls.cert_file"
        );
    }

    #[test]
    fn unreadable_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem").display().to_string();
        let err = rustls_server(&ServerTls {
            cert_file: missing.clone(),
            key_file: missing.clone(),
            client_ca_file: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let empty = empty.display().to_string();
        let err = rustls_server(&ServerTls {
            cert_file: empty.clone(),
            key_file: empty,
            client_ca_file: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
    }
}
