//! Every topology under `lab/topologies/` is valid for containerlab (checked against its JSON
//! schema), loads in the namespace runner, and its deployment file passes `check-config`.

use std::path::{Path, PathBuf};

use lab::topology::{Kind, NetworkMode, Topology};

fn topologies() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("lab/topologies exists")
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.to_string_lossy().ends_with(".clab.yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no topology in {}", dir.display());
    files
}

#[test]
fn topologies_validate_against_the_containerlab_schema() {
    // containerlab's schema (BSD-3-Clause, Nokia), vendored from srl-labs/containerlab at
    // commit 39ff2b7ccce20f3c4610fcbd1fc030582f4499c1; its licence is beside it.
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/clab.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&schema_path).expect("schema readable"))
            .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for path in topologies() {
        let text = std::fs::read_to_string(&path).expect("topology readable");
        let instance: serde_json::Value = serde_yaml_ng::from_str(&text).expect("topology is YAML");
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{} does not validate against containerlab's schema:\n{}",
            path.display(),
            errors.join("\n")
        );
        // The validator is not vacuous: a wrong kind of value is caught.
        let mut broken = instance.clone();
        broken["topology"]["links"] = serde_json::json!("not a list");
        assert!(validator.iter_errors(&broken).next().is_some());
    }
}

#[test]
fn topologies_load_and_their_deployments_are_valid() {
    for path in topologies() {
        let t = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
        // Every file a bind names is committed.
        for node in &t.nodes {
            for bind in &node.binds {
                if let lab::topology::BindSource::Host(p) = &bind.source {
                    assert!(
                        p.exists(),
                        "{}: bind source {} missing",
                        node.name,
                        p.display()
                    );
                }
            }
        }
        // Each lab's deployment file sits in the directory named after the topology.
        let deployment = path.with_file_name(format!("{}/deployment.toml", t.name));
        let text = std::fs::read_to_string(&deployment).expect("deployment file");
        let d = config::Deployment::parse(&text, &deployment).unwrap_or_else(|e| panic!("{e}"));
        let problems = d.check();
        assert!(
            problems.is_empty(),
            "{}: {problems:?}",
            deployment.display()
        );
        // Every site's daemons, every stream node and every geodns instance has a node.
        for site in &d.sites {
            for role in ["speaker", "healthd"] {
                assert!(
                    t.nodes.iter().any(|n| n.label("lab.role") == Some(role)
                        && n.label("lab.site") == Some(&site.name)),
                    "no {role} node for site {}",
                    site.name
                );
            }
            for node in &site.nodes {
                assert!(
                    t.nodes_labelled("lab.node", &node.name).next().is_some()
                        || t.nodes.iter().any(|n| n
                            .cmd
                            .as_deref()
                            .is_some_and(|c| c.ends_with(&format!("--node {}", node.name)))),
                    "no topology node runs {}",
                    node.name
                );
            }
        }
        assert!(t.nodes.iter().any(|n| n.kind == Kind::Bridge));
        assert!(
            t.nodes
                .iter()
                .any(|n| matches!(n.network_mode, NetworkMode::SharedWith(_)))
        );
        lab::prepare::places(&t).expect("viewer nodes are placed");
    }
}
