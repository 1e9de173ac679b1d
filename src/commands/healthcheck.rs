//! `jira-sync healthcheck`: the client a container's `HEALTHCHECK` runs against a daemon's
//! `/healthz` (the image has no curl). Exit 0 when it answers 2xx, 1 otherwise.

use crate::settings::ServerSettings;
use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Arguments of `jira-sync healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to check (http only). Default: /healthz at `server.listen`, with 0.0.0.0 read
    /// as 127.0.0.1.
    #[arg(long)]
    pub url: Option<url::Url>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

/// `jira-sync healthcheck`: exit 0 when the URL answers 2xx, 1 otherwise.
pub async fn command(
    settings: Option<&ServerSettings>,
    args: &HealthcheckArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let url = match (&args.url, settings) {
        (Some(url), _) => url.clone(),
        (None, Some(settings)) => local_url(settings.addr()?)?,
        (None, None) => anyhow::bail!("internal error: no URL and no settings to check"),
    };
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let answer = tokio::time::timeout(timeout, http_get(&url))
        .await
        .map_err(|_| anyhow::anyhow!("{url} did not answer within {}s", timeout.as_secs()))??;
    println!("{} {}", answer.0, answer.1.trim());
    if (200..300).contains(&answer.0) {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        Ok(std::process::ExitCode::from(super::exit::FAILURE))
    }
}

/// `/healthz` at the listen address, reached over loopback when it listens on all addresses.
fn local_url(addr: SocketAddr) -> anyhow::Result<url::Url> {
    if addr.port() == 0 {
        anyhow::bail!("server.listen has port 0 (a free port chosen at start): pass --url");
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!("http://{}/healthz", SocketAddr::new(ip, addr.port()));
    Ok(url::Url::parse(&url)?)
}

/// A plain HTTP/1.1 GET: the status code and the body. Written by hand because the check needs
/// nothing more, and so it works in an image without CA certificates or a TLS stack.
async fn http_get(url: &url::Url) -> anyhow::Result<(u16, String)> {
    if url.scheme() != "http" {
        anyhow::bail!("{url}: only http:// URLs can be checked");
    }
    let host = url
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("{url} has no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let mut stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("cannot connect to {url}: is `jira-sync run` running?"))?;
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.take(1 << 20).read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let code = text
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{url} did not answer HTTP"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((code, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_healthcheck_reaches_a_wildcard_listener_over_loopback() {
        let url = |listen: &str| local_url(listen.parse().expect("address")).map(String::from);
        assert_eq!(
            url("0.0.0.0:9464").ok().as_deref(),
            Some("http://127.0.0.1:9464/healthz")
        );
        assert_eq!(
            url("[::]:9000").ok().as_deref(),
            Some("http://[::1]:9000/healthz")
        );
        assert!(url("127.0.0.1:0").is_err());
    }

    #[test]
    fn listen_addresses_are_an_ip_and_a_port() {
        let settings = |listen: &str| ServerSettings {
            listen: listen.to_owned(),
            stall_intervals: 3,
        };
        assert!(settings("127.0.0.1:9464").validate().is_ok());
        assert!(settings("localhost:9464").validate().is_err());
        assert!(settings("9464").validate().is_err());
    }
}
