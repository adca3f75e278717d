//! `lab`: multi-site lab runner and the one-command demo.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use config::cli::{ConfigArgs, check_config};
use lab::netns::{self, Lab};
use lab::topology::Topology;

/// The topology `up`, `down`, `exec` and `prepare` use when none is given.
const DEFAULT_TOPOLOGY: &str = "lab/topologies/three-sites.clab.yml";

/// Multi-site lab: topologies, fault injection and the demo.
#[derive(Parser)]
#[command(name = "lab", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo (three sites, a route collector, geodns on 127.0.0.1:5353) without root.
    Demo {
        /// The route collector: BIRD when installed (auto), or our own speaker.
        #[arg(long, value_enum, default_value = "auto")]
        collector: lab::collector::Choice,
    },
    /// Validate the deployment file and report every problem with its line and key.
    CheckConfig,
    /// Build a topology from network namespaces and start its nodes (root).
    Up {
        #[arg(default_value = DEFAULT_TOPOLOGY)]
        topology: PathBuf,
    },
    /// Stop a topology's processes and remove its namespaces; safe to repeat (root).
    Down {
        #[arg(default_value = DEFAULT_TOPOLOGY)]
        topology: PathBuf,
    },
    /// Run a command in a node of a running topology (root).
    Exec {
        /// Topology file.
        #[arg(long, short = 't', default_value = DEFAULT_TOPOLOGY)]
        topology: PathBuf,
        /// Node name.
        node: String,
        /// Command and arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Inject faults into a running topology, measure withdrawals, DNS changes and what viewers
    /// saw, check them against the failure table and write a report (root).
    Chaos {
        /// Scenarios to run, one after the other.
        #[arg(required = true, value_enum)]
        scenarios: Vec<lab::chaos::Scenario>,
        #[arg(long, short = 't', default_value = DEFAULT_TOPOLOGY)]
        topology: PathBuf,
        /// The site the faults hit.
        #[arg(long, default_value = "ams")]
        site: String,
        /// Seconds watched after the fault before it is repaired.
        #[arg(long, default_value_t = 10)]
        observe: u64,
        /// Runs of each scenario; with more than one, each check's p50, p95 and worst time over
        /// the runs are printed and put first in the report.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        trials: u32,
        /// Where report.md and the timelines go.
        #[arg(long, default_value = "lab-report")]
        report: PathBuf,
    },
    /// Write a topology's generated files (location database) for containerlab: into
    /// `clab-NAME/` beside the topology file unless `--dir` says otherwise.
    Prepare {
        #[arg(default_value = DEFAULT_TOPOLOGY)]
        topology: PathBuf,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig => check_config(&cli.config),
        Command::Up { topology } => with_topology(&topology, |t| {
            let lab = Lab::new(t);
            lab.up()?;
            println!(
                "lab {} is up: {} nodes, {} links; logs in {}/NODE/console.log",
                t.name,
                t.nodes.len(),
                t.links.len(),
                lab.dir().display()
            );
            println!(
                "try: lab exec -t {} NODE CMD...; stop it with: lab down {}",
                topology.display(),
                topology.display()
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Down { topology } => with_topology(&topology, |t| {
            let removed = netns::down(&t.name)?;
            println!("lab {}: removed {removed} namespaces", t.name);
            Ok(ExitCode::SUCCESS)
        }),
        Command::Exec {
            topology,
            node,
            command,
        } => with_topology(&topology, |t| {
            let status = Lab::new(t).exec(&node, &command)?;
            Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ))
        }),
        Command::Chaos {
            scenarios,
            topology,
            site,
            observe,
            trials,
            report,
        } => with_topology(&topology, |t| {
            daemon::logging::init();
            let lab = Lab::new(t);
            let options = lab::chaos::Options {
                site,
                observe: std::time::Duration::from_secs(observe),
                ..Default::default()
            };
            let mut outcomes = Vec::new();
            for scenario in scenarios {
                let first = outcomes.len();
                for trial in 1..=trials {
                    if trials == 1 {
                        println!("{}: running", scenario.name());
                    } else {
                        println!("{}: trial {trial} of {trials}", scenario.name());
                    }
                    let outcome = lab::chaos::run(&lab, scenario, &options)?;
                    for check in &outcome.checks {
                        println!(
                            "  {} {}: {} (bound {})",
                            if check.passed { "pass" } else { "FAIL" },
                            check.what,
                            check.measured,
                            check.bound
                        );
                    }
                    outcomes.push(outcome);
                }
                if trials > 1 {
                    println!("{} over {trials} trials:", scenario.name());
                    for s in lab::report::spreads(&outcomes[first..]) {
                        println!(
                            "  {} {}: {} (bound {}; {} of {} passed)",
                            if s.passed == s.trials { "pass" } else { "FAIL" },
                            s.what,
                            s.figures(),
                            s.bound,
                            s.passed,
                            s.trials
                        );
                    }
                }
            }
            let path = lab::report::write(&report, &t.name, &outcomes)?;
            println!("report: {}", path.display());
            Ok(if outcomes.iter().all(|o| o.passed()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }),
        Command::Prepare { topology, dir } => with_topology(&topology, |t| {
            let dir = dir.unwrap_or_else(|| {
                topology
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(format!("clab-{}", t.name))
            });
            for path in lab::prepare::write(t, &dir)? {
                println!("wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Demo { collector } => {
            // Quiet by default: the status table is the output; RUST_LOG=info shows the daemons.
            if std::env::var_os("RUST_LOG").is_none() {
                // SAFETY: single-threaded at this point, before any runtime or thread starts.
                unsafe { std::env::set_var("RUST_LOG", "warn") };
            }
            daemon::logging::init();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(lab::demo::run(collector)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Loads a topology and runs `f` on it, printing any error.
fn with_topology(path: &Path, f: impl FnOnce(&Topology) -> anyhow::Result<ExitCode>) -> ExitCode {
    let result = Topology::load(path)
        .map_err(anyhow::Error::from)
        .and_then(|t| f(&t));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
