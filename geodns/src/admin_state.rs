//! Operators' overrides (`geodns admin SITE [--node NODE] up|down`) and withdrawn canaries
//! (`geodns canary SERVICE withdraw`) kept in a file (`dns.admin_state`), so that a site taken
//! out by hand stays out across a restart, like gdnsd's admin_state file. The file is a JSON
//! list of both, rewritten whole (through a temporary file and a rename) at every change, and
//! read at start.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::canary::Withdrawal;
use crate::health::{AdminState, HealthState};

/// Everything an operator set by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub overrides: Vec<Override>,
    #[serde(default)]
    pub withdrawn_canaries: Vec<Withdrawal>,
}

/// One entry of the file.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Entry {
    Override(Override),
    Withdrawn { withdrawn_canary: Withdrawal },
}

/// One forced state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub site: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub state: AdminState,
}

/// The file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AdminStateError {
    #[error("{path}: cannot read the admin state: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{path}:{line}:{column}: not an admin state file ({cause}): expected a JSON list of {{\"site\", \"node\", \"state\": \"up\"|\"down\"}} and {{\"withdrawn_canary\": {{\"service\", \"version\"}}}}"
    )]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        cause: String,
    },
    #[error("{path}: cannot save the admin state: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// What `path` holds; nothing when the file does not exist yet.
pub fn load(path: &Path) -> Result<Saved, AdminStateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
        Err(cause) => {
            return Err(AdminStateError::Read {
                path: path.to_path_buf(),
                cause,
            });
        }
    };
    let entries: Vec<Entry> = serde_json::from_str(&text).map_err(|e| AdminStateError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        cause: e.to_string(),
    })?;
    let mut saved = Saved::default();
    for entry in entries {
        match entry {
            Entry::Override(o) => saved.overrides.push(o),
            Entry::Withdrawn { withdrawn_canary } => {
                saved.withdrawn_canaries.push(withdrawn_canary)
            }
        }
    }
    Ok(saved)
}

/// Writes `saved` to `path` atomically: readers see the old file or the new one.
pub fn save(path: &Path, saved: &Saved) -> Result<(), AdminStateError> {
    let error = |cause| AdminStateError::Write {
        path: path.to_path_buf(),
        cause,
    };
    let overrides = saved.overrides.iter().cloned().map(Entry::Override);
    let withdrawn = saved.withdrawn_canaries.iter().map(|w| Entry::Withdrawn {
        withdrawn_canary: w.clone(),
    });
    let entries: Vec<Entry> = overrides.chain(withdrawn).collect();
    let mut text = serde_json::to_string_pretty(&entries)
        .map_err(std::io::Error::other)
        .map_err(error)?;
    text.push('\n');
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&tmp, path).map_err(error)
}

/// Everything set by hand and in force.
pub fn current(health: &HealthState) -> Saved {
    Saved {
        overrides: overrides(health),
        withdrawn_canaries: health.withdrawn_canaries.iter().cloned().collect(),
    }
}

fn overrides(health: &HealthState) -> Vec<Override> {
    let mut out = Vec::new();
    for site in &health.sites {
        if let Some(state) = site.admin {
            out.push(Override {
                site: site.name.clone(),
                node: None,
                state,
            });
        }
        for node in &site.nodes {
            if let Some(state) = node.admin {
                out.push(Override {
                    site: site.name.clone(),
                    node: Some(node.name.clone()),
                    state,
                });
            }
        }
    }
    out
}

/// Applies what was saved; returns what names a site, node or canary the deployment no longer
/// has (described for a log line), which is left out.
pub fn apply(
    health: &mut HealthState,
    deployment: &config::Deployment,
    saved: &Saved,
) -> Vec<String> {
    let mut stale: Vec<String> = saved
        .overrides
        .iter()
        .filter(|o| !health.set_admin(&o.site, o.node.as_deref(), Some(o.state)))
        .map(|o| match &o.node {
            Some(node) => format!("node {node} at site {}", o.site),
            None => format!("site {}", o.site),
        })
        .collect();
    for w in &saved.withdrawn_canaries {
        if crate::canary::configured(deployment, w) {
            health.withdrawn_canaries.insert(w.clone());
        } else {
            stale.push(format!("canary {} of service {}", w.version, w.service));
        }
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_survive_a_round_trip_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("admin-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("admin.json");
        assert_eq!(
            load(&path).unwrap(),
            Saved::default(),
            "a missing file is no override"
        );
        let overrides = vec![
            Override {
                site: "ams".into(),
                node: None,
                state: AdminState::Down,
            },
            Override {
                site: "lon".into(),
                node: Some("lon-1".into()),
                state: AdminState::Up,
            },
        ];
        let saved = Saved {
            overrides,
            withdrawn_canaries: vec![Withdrawal {
                service: "live".into(),
                version: "2.4.0".into(),
            }],
        };
        save(&path, &saved).unwrap();
        assert_eq!(load(&path).unwrap(), saved);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"withdrawn_canary\": {"), "{text}");
        // A file written before canaries existed reads as it did.
        std::fs::write(&path, "[{\"site\": \"ams\", \"state\": \"down\"}]").unwrap();
        assert_eq!(load(&path).unwrap().overrides, saved.overrides[..1]);
        std::fs::write(&path, "[{\"site\": \"ams\", \"state\": \"sideways\"}]").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("admin.json:1:") && e.contains("expected a JSON list"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
