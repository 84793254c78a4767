//! `dind-injector inject -f FILE`: the engine offline, for laptops, CI and
//! GitOps pipelines (like `istioctl kube-inject` or `linkerd inject`).
//!
//! Output is all-or-nothing: when any document is denied or unreadable,
//! nothing is printed to stdout, so `inject | kubectl apply -f -` can never
//! apply half a manifest.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::engine::config::{Config, SidecarMode};
use crate::engine::workload;
use crate::engine::{Decision, Engine, Mode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest to read (multi-document YAML or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// Config file (the same YAML the webhook reads); defaults apply without it.
    #[arg(long, env = "DIND_INJECTOR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides the config's sidecarMode. Offline, `auto` means classic,
    /// which works on every Kubernetes version; with --from-cluster, what
    /// the webhook would detect.
    #[arg(long, value_parser = SidecarMode::parse_arg)]
    pub mode: Option<SidecarMode>,
    /// Use the config installed in the cluster (KUBECONFIG), so the output is
    /// what the installed webhook or policies would inject.
    #[arg(long, conflicts_with = "config")]
    pub from_cluster: bool,
    /// With --from-cluster: the namespace dind-injector is installed in.
    #[arg(long, default_value = "dind-injector", requires = "from_cluster")]
    pub namespace: String,
    /// With --from-cluster: the ConfigMap holding config.yaml, when several do.
    #[arg(long, value_name = "NAME", requires = "from_cluster")]
    pub config_map: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let config = Config::load_or_default(args.config.as_deref(), None)?;
    run_with(&args, config, Mode::Classic)
}

/// `inject` with a config from elsewhere (the cluster); `auto` is what
/// `sidecarMode: auto` means there, `--mode` still overrides the config's.
pub fn run_with(args: &Args, mut config: Config, auto: Mode) -> Result<()> {
    if let Some(mode) = args.mode {
        config.sidecar_mode = mode;
    }
    let engine = Engine::new(config, auto)?;
    let input = read_input(&args.file)?;
    let source = args.file.display().to_string();

    let mut stderr = std::io::stderr().lock();
    let output = inject_stream(&engine, &input, &source, &mut stderr)?;
    std::io::stdout()
        .lock()
        .write_all(output.as_bytes())
        .context("cannot write to stdout")?;
    Ok(())
}

fn read_input(file: &PathBuf) -> Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the manifest from stdin")?;
        Ok(text)
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read manifest {}", file.display()))
    }
}

/// Injects every document of a YAML stream and returns the printed result.
/// Notes (warnings, skip reasons) go to `notes`, one line per document.
pub fn inject_stream(
    engine: &Engine,
    input: &str,
    source: &str,
    notes: &mut dyn Write,
) -> Result<String> {
    let mut docs = Vec::new();
    for (i, document) in serde_norway::Deserializer::from_str(input).enumerate() {
        let n = i + 1;
        let value = Value::deserialize(document)
            .with_context(|| format!("{source}: document {n} is not valid YAML"))?;
        if value.is_null() {
            continue; // an empty document (a stray `---`)
        }
        if !value.is_object() {
            bail!("{source}: document {n} is not a Kubernetes object (a mapping with kind and metadata)");
        }
        docs.push((n, value));
    }

    let mut denials = Vec::new();
    for (n, doc) in &mut docs {
        let what = format!("{source}: document {n} ({})", workload::describe(doc));
        let decision = workload::inject_document(engine, doc)
            .with_context(|| format!("{what}: cannot be injected"))?;
        match decision {
            None => {}
            Some(Decision::Inject(injection)) => {
                writeln!(notes, "{what}: injected ({} mode)", injection.mode.as_str())?;
                for warning in &injection.warnings {
                    writeln!(notes, "{what}: warning: {warning}")?;
                }
            }
            Some(Decision::Skip { reason, warning }) => match warning {
                Some(w) => writeln!(notes, "{what}: skipped ({reason}): {w}")?,
                None => writeln!(notes, "{what}: skipped ({reason})")?,
            },
            Some(Decision::Deny { message, .. }) => {
                denials.push(format!("{what}: denied: {message}"))
            }
        }
    }
    if !denials.is_empty() {
        bail!("{}", denials.join("\n"));
    }

    let mut out = String::new();
    for (i, (n, doc)) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let text = serde_norway::to_string(doc)
            .with_context(|| format!("{source}: document {n} cannot be written as YAML"))?;
        out.push_str(&text);
    }
    Ok(out)
}
