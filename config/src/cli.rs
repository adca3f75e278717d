//! Command-line pieces every daemon shares: the `--config` option and `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{ConfigError, Deployment};

/// The deployment file option, the same for every daemon.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// The deployment file (TOML).
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        env = "ANYCAST_CONFIG",
        global = true
    )]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// The path given, or an error telling the operator how to give one.
    pub fn path(&self) -> Result<&PathBuf, String> {
        self.config.as_ref().ok_or_else(|| {
            "no deployment file: pass --config FILE (or set ANYCAST_CONFIG)".to_owned()
        })
    }
}

/// One line summing up what a valid deployment holds.
pub fn summary(d: &Deployment) -> String {
    let nodes: usize = d.sites.iter().map(|s| s.nodes.len()).sum();
    let peers: usize = d.sites.iter().map(|s| s.peers.len()).sum();
    let zones = d.dns.as_ref().map_or(0, |dns| dns.zones.len());
    let counts = [
        (d.sites.len(), "site"),
        (nodes, "stream node"),
        (peers, "upstream peer"),
        (d.services.len(), "service"),
        (d.checks.len(), "check profile"),
        (d.channels.len(), "channel"),
        (zones, "DNS zone"),
    ];
    counts
        .iter()
        .map(|(n, what)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `NAME check-config`: validates the file, prints every problem or a summary, and returns the
/// exit code (0 valid, 1 invalid, 2 unreadable or missing).
pub fn check_config(args: &ConfigArgs) -> ExitCode {
    let path = match args.path() {
        Ok(path) => path,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match Deployment::load(path) {
        Ok(d) => {
            println!("{}: ok: {}", path.display(), summary(&d));
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid(diagnostics)) => {
            eprintln!("{diagnostics}");
            eprintln!(
                "{}: {} problem{} found; nothing was started",
                path.display(),
                diagnostics.len(),
                if diagnostics.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
