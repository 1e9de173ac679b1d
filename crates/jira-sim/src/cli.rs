//! `jira-sync simulate`: run the simulator as a standalone server until interrupted.

use std::net::{IpAddr, SocketAddr};

use super::{SimConfig, Simulator};

/// Preset site sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimSize {
    Small,
    Medium,
    Large,
}

/// Options of `jira-sync simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Seed of the generated data (the same seed serves the same site).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Preset size of the site.
    #[arg(long, value_enum, default_value_t = SimSize::Medium)]
    pub size: SimSize,
    /// Number of issues, overriding the preset.
    #[arg(long)]
    pub issues: Option<usize>,
    /// IANA time zone of the API user; JQL date literals are read in it.
    #[arg(long = "time-zone")]
    pub time_zone: Option<String>,
    /// E-mail accepted in Basic auth.
    #[arg(long)]
    pub email: Option<String>,
    /// API token accepted in Basic auth and as a Bearer token.
    #[arg(long)]
    pub token: Option<String>,
    /// Serve as a user without admin rights: users and audit endpoints answer 403.
    #[arg(long)]
    pub non_admin: bool,
    /// Serve heavy issues: 44 custom fields and long descriptions, about 30 KB an issue with
    /// every field, as big real sites serve them.
    #[arg(long)]
    pub heavy: bool,
}

impl SimulateArgs {
    /// The simulator configuration these options describe.
    pub fn config(&self) -> SimConfig {
        let mut config = match self.size {
            SimSize::Small => SimConfig::small(),
            SimSize::Medium => SimConfig::medium(),
            SimSize::Large => SimConfig::large(),
        };
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let Some(issues) = self.issues {
            config.issues = issues;
        }
        if let Some(zone) = &self.time_zone {
            config.user_time_zone = zone.clone();
        }
        if let Some(email) = &self.email {
            config.email = email.clone();
        }
        if let Some(token) = &self.token {
            config.api_token = token.clone();
        }
        config.admin = !self.non_admin;
        config.heavy = self.heavy;
        config
    }
}

/// Starts the simulator, prints where it listens and the credentials it accepts (a public
/// demo credential), and serves until Ctrl-C or SIGTERM.
pub async fn serve_cli(args: SimulateArgs) -> anyhow::Result<()> {
    let config = args.config();
    let (email, token) = (config.email.clone(), config.api_token.clone());
    let simulator = Simulator::start_on(config, SocketAddr::new(args.bind, args.port)).await?;
    println!(
        "Jira simulator listening on {} (email {email}, API token {token}); press Ctrl-C to stop",
        simulator.base_url()
    );
    wait_for_signal().await?;
    simulator.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
