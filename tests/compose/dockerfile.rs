//! The Dockerfile's stages, and the properties of its runtime image.

use std::collections::BTreeMap;

/// One `FROM` of a Dockerfile.
#[derive(Debug)]
pub(crate) struct DockerStage {
    image: String,
    name: Option<String>,
    lines: Vec<String>,
}

/// The stages of a Dockerfile, with `ARG` defaults declared before the first `FROM` applied.
pub(crate) fn docker_stages(text: &str) -> Vec<DockerStage> {
    let mut joined = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') && cur.is_empty() {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
        } else {
            cur.push_str(t);
            if !cur.trim().is_empty() {
                joined.push(cur.trim().to_owned());
            }
            cur.clear();
        }
    }
    let mut args = BTreeMap::new();
    let mut stages: Vec<DockerStage> = Vec::new();
    for l in joined {
        let (instr, rest) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        match instr.to_ascii_uppercase().as_str() {
            "ARG" if stages.is_empty() => {
                if let Some((k, v)) = rest.trim().split_once('=') {
                    args.insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
            }
            "FROM" => {
                let parts: Vec<&str> = rest
                    .split_whitespace()
                    .filter(|p| !p.starts_with("--"))
                    .collect();
                let mut image = parts.first().copied().unwrap_or_default().to_owned();
                for (k, v) in &args {
                    image = image
                        .replace(&format!("${{{k}}}"), v)
                        .replace(&format!("${k}"), v);
                }
                let name = match parts.as_slice() {
                    [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(n.to_string()),
                    _ => None,
                };
                stages.push(DockerStage {
                    image,
                    name,
                    lines: Vec::new(),
                });
            }
            _ => {
                if let Some(s) = stages.last_mut() {
                    s.lines.push(l.clone());
                }
            }
        }
    }
    stages
}

/// Multi-stage: a Rust builder compiles the binary with `--locked`; the final image is a
/// different, small base that copies only the binary, runs as a non-root user, and starts crmflow.
pub(crate) fn check_dockerfile(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let stages = docker_stages(text);
    let (Some(builder), Some(runtime)) = (stages.first(), stages.last()) else {
        return vec!["the Dockerfile has no FROM".into()];
    };
    if stages.len() < 2 {
        return vec!["the Dockerfile is not multi-stage".into()];
    }
    if !builder.image.starts_with("rust:") {
        problems.push(format!("builder image {:?} is not rust", builder.image));
    }
    let builds = builder
        .lines
        .iter()
        .any(|l| l.contains("cargo build") && l.contains("--release") && l.contains("--locked"));
    if !builds {
        problems.push("the builder does not run cargo build --release --locked".into());
    }
    let earlier: Vec<&str> = stages[..stages.len() - 1]
        .iter()
        .filter_map(|s| s.name.as_deref())
        .collect();
    if runtime.image == builder.image
        || runtime.image.starts_with("rust:")
        || earlier.contains(&runtime.image.as_str())
    {
        problems.push(format!(
            "the runtime stage is built on {:?}, the builder's image",
            runtime.image
        ));
    }
    let small = ["debian:", "gcr.io/distroless/", "ubuntu:"]
        .iter()
        .any(|p| runtime.image.starts_with(p))
        && (runtime.image.contains("slim") || runtime.image.contains("distroless"));
    if !small {
        problems.push(format!(
            "runtime image {:?} is not a slim base",
            runtime.image
        ));
    }
    let copies_binary = runtime.lines.iter().any(|l| {
        builder
            .name
            .as_deref()
            .is_some_and(|b| l.starts_with("COPY") && l.contains(&format!("--from={b}")))
            && l.contains("crmflow")
    });
    if !copies_binary {
        problems.push("the runtime stage does not copy the binary from the builder".into());
    }
    let user = runtime
        .lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .map(|u| u.trim().to_owned());
    if user.as_deref().is_none_or(|u| {
        let u = u.split(':').next().unwrap_or_default();
        u == "root" || u == "0"
    }) {
        problems.push(format!("the runtime runs as {user:?}, not a non-root user"));
    }
    let entry = runtime
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .unwrap_or_default();
    if !entry.contains("crmflow") {
        problems.push(format!("ENTRYPOINT {entry:?} is not crmflow"));
    }
    problems
}
