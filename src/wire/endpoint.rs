//! Broker addresses: where a daemon listens and where a client reaches it.

use std::path::PathBuf;
use std::str::FromStr;

/// Where a broker daemon listens (`--listen`) or is reached (`--broker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:PATH`: a Unix socket; the peer's OS user is the identity.
    Unix(PathBuf),
    /// `tcp://HOST:PORT` (or `https://HOST:PORT`): TLS plus an AWS IAM identity proof.
    Tcp(String),
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Endpoint, String> {
        if let Some(rest) = s.strip_prefix("unix:") {
            // Accept `unix:///run/x.sock` as well as `unix:/run/x.sock`.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(format!(
                    "{s:?} names no socket: write unix:/path/to/sombrero.sock"
                ));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        // `https://` is the client's spelling of the same TLS endpoint.
        if let Some(addr) = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("https://").map(|a| a.trim_end_matches('/')))
        {
            if addr
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(format!(
                    "{s:?} is not https://HOST:PORT (or tcp://HOST:PORT)"
                ));
            }
            return Ok(Endpoint::Tcp(addr.to_string()));
        }
        Err(format!(
            "{s:?} is not a broker address: write unix:/path/to/sombrero.sock or https://HOST:PORT"
        ))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            "unix:/run/s.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/run/s.sock".into())
        );
        assert_eq!(
            "unix:///run/s.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/run/s.sock".into())
        );
        assert_eq!(
            "tcp://0.0.0.0:8443".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("0.0.0.0:8443".into())
        );
        assert_eq!(
            "https://broker.example:8443/".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("broker.example:8443".into())
        );
        for bad in [
            "unix:",
            "tcp://nohost",
            "tcp://:1",
            "http://x:1",
            "/run/s.sock",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
        assert_eq!(
            Endpoint::Unix("/a".into()).to_string(),
            "unix:/a".to_string()
        );
    }
}
