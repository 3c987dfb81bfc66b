//! Listen and connect endpoints (`host:port`), checked without DNS.

use std::net::SocketAddr;

/// Where a network receiver listens, for the "two receivers on one port" check.
#[derive(Debug, Clone)]
pub struct Listen {
    pub path: String,
    pub endpoint: String,
}

/// Parses `host:port` (host may be a name, an IPv4 or a bracketed IPv6 address).
pub fn parse_endpoint(endpoint: &str) -> Result<(String, u16), String> {
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| format!("endpoint {endpoint:?} must be host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("endpoint {endpoint:?} has an invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("endpoint {endpoint:?} has no host"));
    }
    Ok((host.to_string(), port))
}

/// Resolves a listen endpoint to a socket address without DNS (`localhost` is loopback).
pub fn listen_addr(endpoint: &str) -> Result<SocketAddr, String> {
    let (host, port) = parse_endpoint(endpoint)?;
    let ip = if host == "localhost" {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().map_err(|_| {
            format!("listen endpoint {endpoint:?}: {host:?} is not an IP address or localhost")
        })?
    };
    Ok(SocketAddr::new(ip, port))
}
