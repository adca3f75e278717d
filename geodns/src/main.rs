//! `geodns`: the authoritative geo-DNS daemon, `explain` and admin state.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::Deployment;
use config::cli::{ConfigArgs, check_config};
use daemon::http::Method;

/// Authoritative geo-DNS steering viewers to the nearest healthy site.
///
/// Without a subcommand, runs the server.
#[derive(Parser)]
#[command(name = "geodns", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Threads answering queries (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Replace the running geodns: take its sockets and state at `dns.handover`, serve, and
    /// let it stop (an upgrade without a lost query).
    #[arg(long)]
    take_over: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the deployment file and report every problem with its line and key.
    CheckConfig,
    /// Why does CLIENT get this answer for NAME? Location, ranking, each site's health, answer.
    Explain {
        name: String,
        client: IpAddr,
        /// Query type (A, AAAA).
        #[arg(long, default_value = "A")]
        qtype: String,
        /// Use the deployment file only (health assumed up) instead of the running server.
        #[arg(long)]
        offline: bool,
        /// Print the explanation as JSON (as the admin API's `/explain` gives it).
        #[arg(long)]
        json: bool,
    },
    /// Replace the running geodns by the binary at its path (an upgrade): the new process
    /// takes its sockets and state at `dns.handover`, serves, and the old one finishes and
    /// exits; a new process that fails leaves the old one serving.
    Replace,
    /// Take a service's canary out of every answer (`withdraw`: its viewers go to the other
    /// nodes), or put it back (`restore`). Kept in `dns.admin_state` while the canary is
    /// configured.
    Canary {
        service: String,
        /// withdraw or restore
        action: String,
    },
    /// Force a site or node up or down in the running server, or clear the override.
    Admin {
        site: String,
        #[arg(long)]
        node: Option<String>,
        /// up, down or clear
        state: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig) = cli.command {
        return check_config(&cli.config);
    }
    let threads = cli.threads;
    daemon::process::run(threads, || async {
        dispatch(cli).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn dispatch(cli: Cli) -> Result<()> {
    let path = cli.config.path().map_err(anyhow::Error::msg)?.clone();
    let deployment = Deployment::load(&path)?;
    let dns = deployment
        .dns
        .as_ref()
        .context("the deployment file has no [dns] section")?;
    let admin = dns.admin.to_string();
    let token = dns.admin_token.as_ref().map(|t| t.resolve()).transpose()?;
    match cli.command {
        None => {
            let threads = cli
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            Ok(geodns::server::run(deployment, path, threads, cli.take_over).await?)
        }
        Some(Command::CheckConfig) => unreachable!("handled before the runtime starts"),
        Some(Command::Explain {
            name,
            client,
            qtype,
            offline,
            json,
        }) => {
            let live = if offline {
                None
            } else {
                http(
                    &admin,
                    Method::GET,
                    &format!("/explain?name={name}&client={client}&qtype={qtype}"),
                    None,
                )
                .await
                .ok()
            };
            let text = match live {
                Some(body) => body,
                None => {
                    if !offline {
                        eprintln!(
                            "note: geodns is not answering on {admin}; explaining from the deployment file with every node up"
                        );
                    }
                    let shared = geodns::server::offline(deployment)?;
                    let qtype = qtype
                        .parse()
                        .map_err(|_| anyhow::anyhow!("unknown query type {qtype}"))?;
                    let e = geodns::server::explain(&shared, &name, client, qtype)
                        .map_err(anyhow::Error::msg)?;
                    serde_json::to_string(&e)?
                }
            };
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("bad explain answer: {text}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", geodns::explain::table(&value));
            }
            Ok(())
        }
        Some(Command::Replace) => {
            print!(
                "{}",
                daemon::handover::ask(&admin, token.as_deref(), "dns.handover").await?
            );
            Ok(())
        }
        Some(Command::Canary { service, action }) => {
            let body = http(
                &admin,
                Method::POST,
                &format!("/canary?service={service}&action={action}"),
                token.as_deref(),
            )
            .await?;
            print!("{body}");
            Ok(())
        }
        Some(Command::Admin { site, node, state }) => {
            let node = node.map(|n| format!("&node={n}")).unwrap_or_default();
            let body = http(
                &admin,
                Method::POST,
                &format!("/admin-state?site={site}{node}&state={state}"),
                token.as_deref(),
            )
            .await?;
            print!("{body}");
            Ok(())
        }
    }
}

/// A request to the admin endpoint; the body of a 2xx answer.
async fn http(admin: &str, method: Method, path: &str, token: Option<&str>) -> Result<String> {
    let response = daemon::http::request(method, admin, path, token, Duration::from_secs(10))
        .await
        .with_context(|| format!("cannot reach the geodns admin endpoint {admin}"))?;
    if !response.ok() {
        anyhow::bail!(
            "geodns answered {}: {}",
            response.status,
            response.body.trim()
        );
    }
    Ok(response.body)
}
