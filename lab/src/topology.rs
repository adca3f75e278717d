//! Lab topologies in containerlab's format (`*.clab.yml`).
//!
//! The same file serves containerlab users and the namespace runner ([`crate::netns`]). The
//! runner honours what a topology of `linux` and `bridge` nodes needs: `defaults` and `kinds`
//! merged into each node, `binds`, `exec`, `cmd`, `env`, `sysctls`, `labels`,
//! `network-mode: container:NODE`, and brief links with per-endpoint `ipv4`/`ipv6` addresses.
//! Fields that only matter to a container engine (`image`, `ports`...) are accepted and ignored.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

/// A topology that failed to load: the file and what is wrong, with the key that is.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{path}: cannot read: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A host running processes (containerlab's `linux` kind).
    Linux,
    /// A layer-2 switch joining its links (containerlab's `bridge` kind).
    Bridge,
}

/// Whose network stack a node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// Its own.
    Own,
    /// Another node's (`network-mode: container:NODE`), like processes sharing a host.
    SharedWith(String),
}

/// A host path made visible inside a node at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: BindSource,
    pub target: String,
}

/// Where a bind's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindSource {
    /// A path on the host, relative ones resolved against the topology file's directory.
    Host(PathBuf),
    /// `__clabDir__...`: the lab's directory (plus the rest of the path).
    LabDir(String),
    /// `__clabNodeDir__...`: the node's own directory (plus the rest of the path).
    NodeDir(String),
}

/// One node with `defaults` and `kinds` merged in.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub kind: Kind,
    pub image: Option<String>,
    pub cmd: Option<String>,
    pub exec: Vec<String>,
    pub binds: Vec<Bind>,
    pub env: BTreeMap<String, String>,
    pub sysctls: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub network_mode: NetworkMode,
}

impl Node {
    /// A label's value (`lab.role`, `lab.site`...).
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// `text` (a command) with every bind target replaced by the host path behind it, so that a
    /// command written for a container runs unchanged on the host. A target is replaced where
    /// it starts a path: after a space, a quote or `=`, and followed by `/`, a space, a quote
    /// or the end.
    pub fn host_command(&self, text: &str, lab_dir: &Path, node_dir: &Path) -> String {
        // Longest targets first, so that `/etc/iptv/x` wins over `/etc`.
        let mut binds: Vec<(&str, PathBuf)> = self
            .binds
            .iter()
            .map(|b| (b.target.as_str(), b.host_path(lab_dir, node_dir)))
            .collect();
        binds.sort_by_key(|(target, _)| std::cmp::Reverse(target.len()));
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        'scan: while !rest.is_empty() {
            let at_start = out
                .chars()
                .last()
                .is_none_or(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '='));
            if at_start {
                for (target, host) in &binds {
                    if let Some(after) = rest.strip_prefix(target) {
                        let ends = after.chars().next().is_none_or(|c| {
                            c == '/' || c.is_whitespace() || matches!(c, '"' | '\'')
                        });
                        if ends {
                            out.push_str(&host.to_string_lossy());
                            rest = after;
                            continue 'scan;
                        }
                    }
                }
            }
            let c = rest.chars().next().expect("rest is not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }
}

impl Bind {
    /// The host path behind this bind.
    pub fn host_path(&self, lab_dir: &Path, node_dir: &Path) -> PathBuf {
        let join = |base: &Path, rest: &str| {
            let rest = rest.trim_start_matches('/');
            if rest.is_empty() {
                base.to_path_buf()
            } else {
                base.join(rest)
            }
        };
        match &self.source {
            BindSource::Host(path) => path.clone(),
            BindSource::LabDir(rest) => join(lab_dir, rest),
            BindSource::NodeDir(rest) => join(node_dir, rest),
        }
    }
}

/// One end of a link: a node's interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub node: String,
    pub interface: String,
    /// Address configured on the interface (bridge ports have none).
    pub addresses: Vec<IpNet>,
}

/// A point-to-point link (a veth pair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub ends: [Endpoint; 2],
    pub mtu: Option<u32>,
}

/// A loaded, checked topology.
#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    /// The topology file.
    pub path: PathBuf,
    /// Nodes in file order.
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
}

impl Topology {
    /// Reads and checks a topology file.
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|cause| TopologyError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::parse(&text, path)
    }

    /// Parses topology text; `path` names it in errors and anchors relative bind paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, TopologyError> {
        let raw: raw::File = serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            TopologyError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e.to_string(),
            }
        })?;
        let invalid = |key: String, message: String| TopologyError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        // Bind sources are relative to the file, wherever the runner's commands run from.
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        check_name(&raw.name)
            .map_err(|m| invalid("name".into(), format!("{m}, found {:?}", raw.name)))?;

        let empty = raw::NodeConfig::default();
        let mut nodes = Vec::new();
        for (name, node) in &raw.topology.nodes {
            let key = format!("topology.nodes.{name}");
            let node = node.clone().unwrap_or_default();
            let kind_name = node
                .kind
                .clone()
                .or_else(|| raw.topology.defaults.kind.clone())
                .unwrap_or_else(|| "linux".into());
            let kind = match kind_name.as_str() {
                "linux" => Kind::Linux,
                "bridge" => Kind::Bridge,
                other => {
                    return Err(invalid(
                        format!("{key}.kind"),
                        format!(
                            "the namespace runner runs `linux` and `bridge` nodes, found `{other}` \
                             (deploy this topology with containerlab instead)"
                        ),
                    ));
                }
            };
            let layers = [
                &raw.topology.defaults,
                raw.topology.kinds.get(&kind_name).unwrap_or(&empty),
                &node,
            ];
            let merged = raw::NodeConfig::merge(&layers);
            let mut binds = Vec::new();
            for (i, text) in merged.binds.iter().enumerate() {
                let bind = parse_bind(text, &base).map_err(|m| {
                    invalid(format!("{key}.binds[{i}]"), format!("{m}, found {text:?}"))
                })?;
                // A node's own bind for a target replaces an inherited one.
                binds.retain(|b: &Bind| b.target != bind.target);
                binds.push(bind);
            }
            let network_mode = match merged.network_mode.as_deref() {
                None | Some("bridge") => NetworkMode::Own,
                Some(mode) => match mode.strip_prefix("container:") {
                    Some(other) => NetworkMode::SharedWith(other.to_string()),
                    None => {
                        return Err(invalid(
                            format!("{key}.network-mode"),
                            format!("expected `container:NODE`, found `{mode}`"),
                        ));
                    }
                },
            };
            if kind == Kind::Bridge && (merged.cmd.is_some() || !merged.exec.is_empty()) {
                return Err(invalid(
                    key,
                    "a bridge runs no commands: expected no `cmd` or `exec`".into(),
                ));
            }
            nodes.push(Node {
                name: name.clone(),
                kind,
                image: merged.image,
                cmd: merged.cmd,
                exec: merged.exec,
                binds,
                env: merged.env,
                sysctls: merged.sysctls,
                labels: merged.labels,
                network_mode,
            });
        }
        for node in &nodes {
            check_name(&node.name).map_err(|m| {
                invalid(
                    format!("topology.nodes.{}", node.name),
                    format!("{m} for a node name"),
                )
            })?;
            if let NetworkMode::SharedWith(other) = &node.network_mode {
                let target = nodes.iter().find(|n| &n.name == other);
                if !target
                    .is_some_and(|t| t.kind == Kind::Linux && t.network_mode == NetworkMode::Own)
                {
                    return Err(invalid(
                        format!("topology.nodes.{}.network-mode", node.name),
                        format!(
                            "`container:{other}` must name a linux node of this topology that has its own network"
                        ),
                    ));
                }
            }
        }

        let mut links = Vec::new();
        let mut used: Vec<(String, String)> = Vec::new();
        for (i, link) in raw.topology.links.iter().enumerate() {
            let key = format!("topology.links[{i}]");
            if link.endpoints.len() != 2 {
                return Err(invalid(
                    format!("{key}.endpoints"),
                    format!(
                        "expected two endpoints `NODE:INTERFACE`, found {}",
                        link.endpoints.len()
                    ),
                ));
            }
            let mut ends = Vec::new();
            for (j, text) in link.endpoints.iter().enumerate() {
                let ekey = format!("{key}.endpoints[{j}]");
                let (node, interface) = text.split_once(':').ok_or_else(|| {
                    invalid(
                        ekey.clone(),
                        format!("expected `NODE:INTERFACE`, found {text:?}"),
                    )
                })?;
                let Some(n) = nodes.iter().find(|n| n.name == node) else {
                    return Err(invalid(ekey, format!("no node named `{node}`")));
                };
                if n.network_mode != NetworkMode::Own {
                    return Err(invalid(
                        ekey,
                        format!("`{node}` shares another node's network and cannot have links"),
                    ));
                }
                if interface.is_empty()
                    || interface.len() > 15
                    || interface.contains(['/', ' '])
                    || interface == "lo"
                {
                    return Err(invalid(
                        ekey,
                        format!(
                            "expected an interface name of 1 to 15 characters, found `{interface}`"
                        ),
                    ));
                }
                if used.contains(&(node.to_string(), interface.to_string())) {
                    return Err(invalid(
                        ekey,
                        format!("`{node}:{interface}` is already used by another link"),
                    ));
                }
                used.push((node.to_string(), interface.to_string()));
                let mut addresses = Vec::new();
                for (family, list) in [("ipv4", &link.ipv4), ("ipv6", &link.ipv6)] {
                    let Some(text) = list.get(j).filter(|t| !t.is_empty()) else {
                        continue;
                    };
                    let net: IpNet = text.parse().map_err(|_| {
                        invalid(
                            format!("{key}.{family}[{j}]"),
                            format!("expected an address with prefix length, found {text:?}"),
                        )
                    })?;
                    let right_family = matches!(
                        (family, net.addr()),
                        ("ipv4", IpAddr::V4(_)) | ("ipv6", IpAddr::V6(_))
                    );
                    if !right_family {
                        return Err(invalid(
                            format!("{key}.{family}[{j}]"),
                            format!("expected an {family} address, found {text:?}"),
                        ));
                    }
                    if n.kind == Kind::Bridge {
                        return Err(invalid(
                            format!("{key}.{family}[{j}]"),
                            format!("`{node}` is a bridge: its ports take no address"),
                        ));
                    }
                    addresses.push(net);
                }
                ends.push(Endpoint {
                    node: node.to_string(),
                    interface: interface.to_string(),
                    addresses,
                });
            }
            let [a, b]: [Endpoint; 2] = ends.try_into().expect("two endpoints checked above");
            links.push(Link {
                ends: [a, b],
                mtu: link.mtu,
            });
        }
        Ok(Topology {
            name: raw.name,
            path: path.to_path_buf(),
            nodes,
            links,
        })
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Nodes whose `label` is `value`.
    pub fn nodes_labelled<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes
            .iter()
            .filter(move |n| n.label(label) == Some(value))
    }
}

/// Lab and node names end up in namespace, directory and interface names.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err("expected 1 to 40 letters, digits, `-`, `_` or `.`".into())
    }
}

/// `SOURCE:TARGET[:MODE]`.
fn parse_bind(text: &str, base: &Path) -> Result<Bind, String> {
    let mut parts = text.split(':');
    let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
        return Err("expected `SOURCE:TARGET[:ro|rw]`".into());
    };
    match parts.next() {
        None | Some("ro" | "rw") => {}
        Some(mode) => return Err(format!("expected the mode `ro` or `rw`, found `{mode}`")),
    }
    if parts.next().is_some() || source.is_empty() {
        return Err("expected `SOURCE:TARGET[:ro|rw]`".into());
    }
    if !target.starts_with('/') || target.len() < 2 {
        return Err(format!(
            "expected an absolute target path other than `/`, found `{target}`"
        ));
    }
    let source = if let Some(rest) = source.strip_prefix("__clabNodeDir__") {
        BindSource::NodeDir(rest.to_string())
    } else if let Some(rest) = source.strip_prefix("__clabDir__") {
        BindSource::LabDir(rest.to_string())
    } else {
        BindSource::Host(base.join(source))
    };
    Ok(Bind {
        source,
        target: target.trim_end_matches('/').to_string(),
    })
}

/// The file as written, before defaults are merged.
mod raw {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    pub struct File {
        pub name: String,
        pub topology: Topology,
    }

    #[derive(Debug, Deserialize)]
    pub struct Topology {
        #[serde(default)]
        pub defaults: NodeConfig,
        #[serde(default)]
        pub kinds: BTreeMap<String, NodeConfig>,
        /// Kept in file order: nodes start in the order they are written.
        #[serde(default, with = "ordered")]
        pub nodes: Vec<(String, Option<NodeConfig>)>,
        #[serde(default)]
        pub links: Vec<Link>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Link {
        #[serde(default)]
        pub endpoints: Vec<String>,
        #[serde(default)]
        pub ipv4: Vec<String>,
        #[serde(default)]
        pub ipv6: Vec<String>,
        pub mtu: Option<u32>,
    }

    /// The node fields the runner uses.
    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct NodeConfig {
        pub kind: Option<String>,
        pub image: Option<String>,
        pub cmd: Option<String>,
        #[serde(default)]
        pub exec: Vec<String>,
        #[serde(default)]
        pub binds: Vec<String>,
        #[serde(default)]
        pub env: BTreeMap<String, Scalar>,
        #[serde(default)]
        pub sysctls: BTreeMap<String, Scalar>,
        #[serde(default)]
        pub labels: BTreeMap<String, Scalar>,
        pub network_mode: Option<String>,
    }

    /// YAML writes `1`, `true` and `"1"` alike for values that end up as text.
    #[derive(Debug, Clone, Deserialize)]
    #[serde(untagged)]
    pub enum Scalar {
        Text(String),
        Integer(i64),
        Float(f64),
        Bool(bool),
    }

    impl Scalar {
        fn text(&self) -> String {
            match self {
                Scalar::Text(s) => s.clone(),
                Scalar::Integer(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            }
        }
    }

    /// The merged node: later layers win, maps merge, binds add up.
    pub struct Merged {
        pub image: Option<String>,
        pub cmd: Option<String>,
        pub exec: Vec<String>,
        pub binds: Vec<String>,
        pub env: BTreeMap<String, String>,
        pub sysctls: BTreeMap<String, String>,
        pub labels: BTreeMap<String, String>,
        pub network_mode: Option<String>,
    }

    impl NodeConfig {
        pub fn merge(layers: &[&NodeConfig]) -> Merged {
            let mut m = Merged {
                image: None,
                cmd: None,
                exec: Vec::new(),
                binds: Vec::new(),
                env: BTreeMap::new(),
                sysctls: BTreeMap::new(),
                labels: BTreeMap::new(),
                network_mode: None,
            };
            for layer in layers {
                if layer.image.is_some() {
                    m.image.clone_from(&layer.image);
                }
                if layer.cmd.is_some() {
                    m.cmd.clone_from(&layer.cmd);
                }
                if !layer.exec.is_empty() {
                    m.exec.clone_from(&layer.exec);
                }
                if layer.network_mode.is_some() {
                    m.network_mode.clone_from(&layer.network_mode);
                }
                m.binds.extend(layer.binds.iter().cloned());
                for (map, from) in [
                    (&mut m.env, &layer.env),
                    (&mut m.sysctls, &layer.sysctls),
                    (&mut m.labels, &layer.labels),
                ] {
                    map.extend(from.iter().map(|(k, v)| (k.clone(), v.text())));
                }
            }
            m
        }
    }

    /// A YAML mapping read as a list of pairs, in file order.
    mod ordered {
        use std::fmt;

        use serde::Deserializer;
        use serde::de::{MapAccess, Visitor};

        use super::NodeConfig;

        type Nodes = Vec<(String, Option<NodeConfig>)>;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Nodes, D::Error> {
            struct Ordered;
            impl<'de> Visitor<'de> for Ordered {
                type Value = Nodes;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a mapping of node names to node definitions")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Nodes, A::Error> {
                    let mut nodes = Vec::new();
                    while let Some(entry) = map.next_entry::<String, Option<NodeConfig>>()? {
                        if nodes.iter().any(|(name, _)| name == &entry.0) {
                            return Err(serde::de::Error::custom(format!(
                                "node `{}` is defined twice",
                                entry.0
                            )));
                        }
                        nodes.push(entry);
                    }
                    Ok(nodes)
                }
            }
            d.deserialize_map(Ordered)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
name: small
topology:
  defaults:
    kind: linux
    binds:
      - conf:/etc/app:ro
      - __clabDir__:/run/lab
  nodes:
    sw:
      kind: bridge
    a:
      binds:
        - __clabNodeDir__:/run/app
      sysctls:
        net.ipv4.ip_forward: 1
      cmd: app -c /etc/app/app.conf --state=/run/app/state -x /etc/apple
      labels:
        lab.role: thing
    b:
      network-mode: container:a
      cmd: other
  links:
    - endpoints: ["a:eth1", "sw:a"]
      ipv4: ["10.0.0.1/24", ""]
"#;

    fn small() -> Topology {
        Topology::parse(SMALL, Path::new("/topo/small.clab.yml")).expect("valid topology")
    }

    #[test]
    fn defaults_merge_and_order_is_kept() {
        let t = small();
        let names: Vec<_> = t.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["sw", "a", "b"]);
        let a = t.node("a").unwrap();
        assert_eq!(a.kind, Kind::Linux);
        assert_eq!(a.binds.len(), 3);
        assert_eq!(a.sysctls["net.ipv4.ip_forward"], "1");
        assert_eq!(a.label("lab.role"), Some("thing"));
        assert_eq!(
            t.node("b").unwrap().network_mode,
            NetworkMode::SharedWith("a".into())
        );
        assert_eq!(
            t.links[0].ends[0].addresses,
            ["10.0.0.1/24".parse::<IpNet>().unwrap()]
        );
        assert!(t.links[0].ends[1].addresses.is_empty());
    }

    #[test]
    fn commands_see_host_paths_for_bind_targets() {
        let t = small();
        let a = t.node("a").unwrap();
        let cmd = a.host_command(
            a.cmd.as_deref().unwrap(),
            Path::new("/run/iptv-lab/small"),
            Path::new("/run/iptv-lab/small/a"),
        );
        assert_eq!(
            cmd,
            "app -c /topo/conf/app.conf --state=/run/iptv-lab/small/a/state -x /etc/apple"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let bad = SMALL.replace("container:a", "container:nope");
        let e = Topology::parse(&bad, Path::new("t.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("topology.nodes.b.network-mode"), "{e}");
        let bad = SMALL.replace("\"a:eth1\"", "\"c:eth1\"");
        let e = Topology::parse(&bad, Path::new("t.yml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("topology.links[0].endpoints[0]: no node named `c`"),
            "{e}"
        );
        let bad = SMALL.replace("10.0.0.1/24", "10.0.0.300/24");
        let e = Topology::parse(&bad, Path::new("t.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("topology.links[0].ipv4[0]"), "{e}");
        let bad = SMALL.replace("kind: bridge", "kind: nokia_srlinux");
        let e = Topology::parse(&bad, Path::new("t.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("topology.nodes.sw.kind"), "{e}");
        let bad = SMALL.replace("  nodes:\n", "  nodes:\n    a:\n      cmd: x\n");
        let e = Topology::parse(&bad, Path::new("t.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("defined twice"), "{e}");
        let e = Topology::parse("name: [", Path::new("t.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.yml:1:"), "{e}");
    }
}
