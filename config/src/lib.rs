//! The deployment file: one TOML document describing sites, upstream peers, stream nodes,
//! services, check profiles, channels and DNS, read by every daemon.
//!
//! [`Deployment::load`] parses and validates in one step and reports *every* problem at once,
//! each with file, line, column and key path, so an operator fixes a file in one pass.

pub mod check;
pub mod cli;
pub mod diagnostic;
pub mod dns;
pub mod fuzzing;
pub mod service;
pub mod site;
pub mod token;
pub mod types;
mod validate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use check::{CheckKind, CheckProfile};
pub use diagnostic::{Diagnostic, Diagnostics, KeyPath};
pub use dns::{Dns, Override, Record, RecordType, Soa, Zone};
pub use service::{AnswerMode, Channel, ChannelSource, DegradeAction, DegradePolicy, Service};
pub use site::{HealthdSettings, Node, Peer, Site, SpeakerSettings};
pub use types::{Community, ControlEndpoint, CountryCode, HumanDuration, LargeCommunity, Secret};

use diagnostic::Locator;

/// The whole deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Datacenters.
    pub sites: Vec<Site>,
    /// Services viewers resolve and we announce.
    pub services: Vec<Service>,
    /// Check profiles.
    #[serde(default)]
    pub checks: Vec<CheckProfile>,
    /// Live channels.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// Subscriber token profiles, referred to by channels' `token`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<token::TokenProfile>,
    /// geodns settings; no DNS is served when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
}

/// Why a deployment file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read deployment file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl Deployment {
    /// Reads, parses and validates a deployment file. Relative paths inside it (zone files,
    /// the location database, secret files) are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let mut deployment = Self::parse(&text, path).map_err(ConfigError::Invalid)?;
        if let Some(dir) = path.parent() {
            deployment.resolve_paths(dir);
        }
        Ok(deployment)
    }

    /// Parses and validates deployment text; `origin` names it in diagnostics.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, Diagnostics> {
        let root = match toml::de::DeTable::parse(text) {
            Ok(root) => root,
            Err(e) => {
                let locator = Locator::new(origin, text, None);
                let message = format!("invalid TOML: {}", e.message().trim_end());
                return Err(Diagnostics(vec![locator.at_span(e.span(), message)]));
            }
        };
        let locator = Locator::new(origin, text, Some(&root));

        // Unknown keys are collected rather than rejected one at a time (as
        // `deny_unknown_fields` would), so that every typo is reported in one run.
        let mut unknown = Vec::new();
        let deserializer = toml::Deserializer::from(root.clone());
        let parsed: Result<Deployment, _> = serde_ignored::deserialize(deserializer, |path| {
            unknown.push(KeyPath::from_ignored(&path));
        });
        let mut diagnostics: Vec<Diagnostic> = unknown
            .into_iter()
            .map(|key| {
                let message = format!(
                    "unknown key `{}`: check its spelling against the deployment file reference",
                    last_key(&key)
                );
                locator.at_key(key, message)
            })
            .collect();

        match parsed {
            Err(e) => {
                let mut message = e.message().trim_end().to_owned();
                // Messages from foreign `Deserialize` impls (addresses, prefixes) rarely quote the
                // offending text; show it so the operator sees what was read.
                if let Some(found) = e.span().and_then(|s| text.get(s)).filter(|t| t.len() <= 80)
                    && !message.contains(found)
                {
                    message = format!("{message}: found {found}");
                }
                diagnostics.push(locator.at_span(e.span(), message));
            }
            Ok(deployment) => {
                diagnostics.extend(
                    validate::validate(&deployment)
                        .into_iter()
                        .map(|finding| locator.at_key(finding.key, finding.message)),
                );
                if diagnostics.is_empty() {
                    return Ok(deployment);
                }
            }
        }
        diagnostics.sort_by_key(|d| (d.line, d.column));
        Err(Diagnostics(diagnostics))
    }

    /// Serializes back to TOML (used by tools that generate deployment files).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Runs the semantic rules on a deployment built in code; the findings carry key paths only.
    pub fn check(&self) -> Vec<diagnostic::Finding> {
        validate::validate(self)
    }

    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.name == name)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The token profile named `name`.
    pub fn token_profile(&self, name: &str) -> Option<&token::TokenProfile> {
        self.tokens.iter().find(|t| t.name == name)
    }

    pub fn check_profile(&self, name: &str) -> Option<&CheckProfile> {
        self.checks.iter().find(|c| c.name == name)
    }

    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// Every node with the site it belongs to.
    pub fn nodes(&self) -> impl Iterator<Item = (&Site, &Node)> {
        self.sites
            .iter()
            .flat_map(|site| site.nodes.iter().map(move |node| (site, node)))
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        };
        let fix_secret = |secret: &mut Option<Secret>| {
            if let Some(file) = secret.as_mut().and_then(|s| s.file.as_mut()) {
                fix(file);
            }
        };
        for site in &mut self.sites {
            for peer in &mut site.peers {
                fix_secret(&mut peer.md5_key);
            }
            fix_secret(&mut site.speaker.control_token);
            fix_secret(&mut site.healthd.feed_token);
            fix_secret(&mut site.healthd.admin_token);
            if let Some(f) = site.healthd.drain_file.as_mut() {
                fix(f);
            }
            for node in &mut site.nodes {
                fix_secret(&mut node.admin_token);
                if let Some(tls) = node.tls.as_mut() {
                    fix(&mut tls.cert);
                    fix(&mut tls.key);
                }
            }
        }
        for profile in &mut self.tokens {
            for key in &mut profile.keys {
                if let Some(file) = key.file.as_mut() {
                    fix(file);
                }
            }
        }
        for check in &mut self.checks {
            if let Some(ca) = check.http.as_mut().and_then(|h| h.ca_file.as_mut()) {
                fix(ca);
            }
            if let Some(ca) = check.hls.as_mut().and_then(|h| h.ca_file.as_mut()) {
                fix(ca);
            }
        }
        if let Some(dns) = self.dns.as_mut() {
            if let Some(db) = dns.geoip_db.as_mut() {
                fix(db);
            }
            if let Some(file) = dns.admin_state.as_mut() {
                fix(file);
            }
            fix_secret(&mut dns.feed_token);
            fix_secret(&mut dns.admin_token);
            if let Some(cookies) = dns.cookies.as_mut() {
                if let Some(file) = cookies.secret.file.as_mut() {
                    fix(file);
                }
                fix_secret(&mut cookies.previous_secret);
            }
            for zone in &mut dns.zones {
                if let Some(file) = zone.file.as_mut() {
                    fix(file);
                }
            }
        }
    }
}

fn last_key(path: &KeyPath) -> String {
    path.segments()
        .iter()
        .rev()
        .find_map(|s| match s {
            diagnostic::Segment::Key(k) => Some(k.clone()),
            diagnostic::Segment::Index(_) => None,
        })
        .unwrap_or_default()
}
