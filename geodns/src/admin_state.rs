//! Operators' overrides (`geodns admin SITE [--node NODE] up|down`) kept in a file
//! (`dns.admin_state`), so that a site taken out by hand stays out across a restart, like
//! gdnsd's admin_state file. The file is JSON, rewritten whole (through a temporary file and a
//! rename) at every change, and read at start.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::health::{AdminState, HealthState};

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
        "{path}:{line}:{column}: not an admin state file ({cause}): expected a JSON list of {{\"site\", \"node\", \"state\": \"up\"|\"down\"}}"
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

/// The overrides in `path`; none when the file does not exist yet.
pub fn load(path: &Path) -> Result<Vec<Override>, AdminStateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(cause) => {
            return Err(AdminStateError::Read {
                path: path.to_path_buf(),
                cause,
            });
        }
    };
    serde_json::from_str(&text).map_err(|e| AdminStateError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        cause: e.to_string(),
    })
}

/// Writes `overrides` to `path` atomically: readers see the old file or the new one.
pub fn save(path: &Path, overrides: &[Override]) -> Result<(), AdminStateError> {
    let error = |cause| AdminStateError::Write {
        path: path.to_path_buf(),
        cause,
    };
    let mut text = serde_json::to_string_pretty(overrides)
        .map_err(std::io::Error::other)
        .map_err(error)?;
    text.push('\n');
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&tmp, path).map_err(error)
}

/// Every override in force.
pub fn current(health: &HealthState) -> Vec<Override> {
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

/// Applies saved overrides; returns those naming a site or node the deployment no longer has.
pub fn apply(health: &mut HealthState, overrides: &[Override]) -> Vec<Override> {
    overrides
        .iter()
        .filter(|o| !health.set_admin(&o.site, o.node.as_deref(), Some(o.state)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_survive_a_round_trip_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("admin-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("admin.json");
        assert!(
            load(&path).unwrap().is_empty(),
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
        save(&path, &overrides).unwrap();
        assert_eq!(load(&path).unwrap(), overrides);
        std::fs::write(&path, "[{\"site\": \"ams\", \"state\": \"sideways\"}]").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("admin.json:1:") && e.contains("expected a JSON list"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
