//! Listen and connect endpoints (`host:port`), checked without DNS.

use std::net::SocketAddr;

/// Where a network receiver listens, for the "two receivers on one port" check.
#[derive(Debug, Clone)]
pub struct Listen {
    pub path: String,
    pub endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint {0:?} must be host:port")]
    NotHostPort(String),
    #[error("endpoint {0:?} has an invalid port")]
    Port(String),
    #[error("endpoint {0:?} has no host")]
    NoHost(String),
    #[error("listen endpoint {endpoint:?}: {host:?} is not an IP address or localhost")]
    NotAnAddress { endpoint: String, host: String },
}

/// Parses `host:port` (host may be a name, an IPv4 or a bracketed IPv6 address).
pub fn parse_endpoint(endpoint: &str) -> Result<(String, u16), EndpointError> {
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| EndpointError::NotHostPort(endpoint.to_string()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| EndpointError::Port(endpoint.to_string()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(EndpointError::NoHost(endpoint.to_string()));
    }
    Ok((host.to_string(), port))
}

/// Resolves a listen endpoint to a socket address without DNS (`localhost` is loopback).
pub fn listen_addr(endpoint: &str) -> Result<SocketAddr, EndpointError> {
    let (host, port) = parse_endpoint(endpoint)?;
    let ip = if host == "localhost" {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().map_err(|_| EndpointError::NotAnAddress {
            endpoint: endpoint.to_string(),
            host: host.clone(),
        })?
    };
    Ok(SocketAddr::new(ip, port))
}
