//! Kernel modules for an initramfs without modprobe: dependencies read from each module's
//! `depends=` field and ordered so every module comes after what it needs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Most modules one image may pull in (roots plus dependencies); a guard against a cycle or a
/// runaway dependency list.
pub const MAX_MODULES: usize = 64;

/// Every `.ko` under `dir`, by module name (dashes normalised to underscores, as the kernel does).
pub fn index(dir: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("failed to list {}", dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("failed to list {}", dir.display()))?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str()?.strip_suffix(".ko"))
            {
                found.insert(normalise(stem), path);
            }
        }
    }
    Ok(found)
}

/// The module name the kernel uses (`virtio-rng` → `virtio_rng`).
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// The names in a module's `depends=` modinfo field.
pub fn depends(module: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"depends=";
    let Some(start) = module
        .windows(KEY.len())
        .enumerate()
        .find(|&(i, w)| w == KEY && (i == 0 || module[i - 1] == 0))
        .map(|(i, _)| i + KEY.len())
    else {
        return Vec::new();
    };
    let end = module[start..]
        .iter()
        .position(|&b| b == 0)
        .map_or(module.len(), |n| start + n);
    String::from_utf8_lossy(&module[start..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(normalise)
        .collect()
}

/// `roots` and everything they depend on, dependencies first; `deps_of` gives a module's needs.
pub fn load_order(
    roots: &[String],
    mut deps_of: impl FnMut(&str) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<Vec<String>> {
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    for root in roots {
        // Iterative depth-first search; `in_progress` detects cycles.
        let mut stack: Vec<(String, Option<Vec<String>>)> = vec![(normalise(root), None)];
        let mut in_progress = BTreeSet::new();
        while let Some((name, pending)) = stack.pop() {
            if done.contains(&name) {
                continue;
            }
            let mut pending = match pending {
                Some(p) => p,
                None => {
                    if !in_progress.insert(name.clone()) {
                        bail!("kernel modules depend on each other in a cycle through {name}");
                    }
                    deps_of(&name)?
                }
            };
            match pending.pop() {
                Some(dep) if !done.contains(&dep) => {
                    if in_progress.contains(&dep) {
                        bail!("kernel modules depend on each other in a cycle through {dep}");
                    }
                    stack.push((name, Some(pending)));
                    stack.push((dep, None));
                }
                Some(_) => stack.push((name, Some(pending))),
                None => {
                    in_progress.remove(&name);
                    done.insert(name.clone());
                    order.push(name);
                    if order.len() > MAX_MODULES {
                        bail!("more than {MAX_MODULES} kernel modules needed for {roots:?}");
                    }
                }
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> impl FnMut(&str) -> anyhow::Result<Vec<String>> {
        let map: BTreeMap<String, Vec<String>> = edges
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        move |name| {
            map.get(name)
                .cloned()
                .with_context(|| format!("no module {name}"))
        }
    }

    #[test]
    fn reads_the_depends_field() {
        let ko = b"\x7fELF...\0license=GPL\0depends=virtio_ring,virtio,net-failover\0retpoline=Y\0";
        assert_eq!(depends(ko), ["virtio_ring", "virtio", "net_failover"]);
        assert!(depends(b"\0depends=\0").is_empty());
        assert!(depends(b"nothing here").is_empty());
    }

    #[test]
    fn orders_dependencies_first_like_the_virtio_stack() {
        let mut deps = graph(&[
            ("virtio_net", &["virtio_ring", "virtio", "net_failover"]),
            ("net_failover", &["failover"]),
            ("failover", &[]),
            ("virtio", &["virtio_ring"]),
            ("virtio_ring", &[]),
            ("virtio_blk", &["virtio", "virtio_ring"]),
        ]);
        let order = load_order(&["virtio_net".into(), "virtio-blk".into()], &mut deps).unwrap();
        let pos = |m| order.iter().position(|x| x == m).unwrap();
        assert_eq!(order.len(), 6);
        assert!(pos("failover") < pos("net_failover"));
        assert!(pos("virtio_ring") < pos("virtio"));
        assert!(pos("virtio") < pos("virtio_net"));
        assert_eq!(order.last().map(String::as_str), Some("virtio_blk"));
    }

    #[test]
    fn refuses_cycles_missing_modules_and_too_many() {
        let err = load_order(&["a".into()], graph(&[("a", &["b"]), ("b", &["a"])])).unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
        assert!(load_order(&["a".into()], graph(&[("a", &["zz"])])).is_err());
        let names: Vec<String> = (0..=MAX_MODULES).map(|i| format!("m{i}")).collect();
        let chain = names.clone();
        let err = load_order(&[names[0].clone()], move |name| {
            let i = chain.iter().position(|n| n == name).unwrap();
            Ok(chain.get(i + 1).cloned().into_iter().collect())
        })
        .unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
    }
}
