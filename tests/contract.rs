//! The in-pod command line is a contract between the engine, which writes
//! it into every injected pod, and the helpers, which parse it. Every helper
//! command line in every golden file is parsed here with the helpers' own
//! parser ([`inpod::Helper`], what the binary runs) and rendered back with
//! the engine's renderer: a flag renamed, retyped or dropped on either side
//! fails here, naming the file and the command line.

mod common;

use clap::Parser;
use dind_injector::contract::{cmdline, path};
use dind_injector::inpod;
use serde_json::Value;

/// The binary as the pod runs it: argv[0], then a helper's subcommand.
#[derive(Debug, Parser)]
struct PodArgv {
    #[command(subcommand)]
    helper: inpod::Helper,
}

/// Every `command` list in a golden record (patch values and the pod),
/// container commands and exec hooks alike.
fn commands(value: &Value, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "command" {
                    if let Some(list) = v.as_array() {
                        out.push(
                            list.iter()
                                .map(|s| s.as_str().unwrap_or_default().to_string())
                                .collect(),
                        );
                    }
                }
                commands(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| commands(v, out)),
        _ => {}
    }
}

/// Parses one helper command line and renders it back, or says why not.
fn round_trip(argv: &[String]) -> Result<&'static str, String> {
    let parsed = PodArgv::try_parse_from(argv).map_err(|e| e.render().to_string())?;
    let (name, rendered) = match &parsed.helper {
        inpod::Helper::Init(args) => (cmdline::INIT, args.argv(&argv[0])),
        inpod::Helper::Supervise(args) => (cmdline::SUPERVISE, args.spec.argv()),
        inpod::Helper::Sidecar(args) => (cmdline::SIDECAR, args.spec.argv()),
        inpod::Helper::WaitDocker(args) => (cmdline::WAIT_DOCKER, args.spec.argv()),
    };
    if rendered != argv {
        return Err(format!(
            "parsed as {parsed:?}, rendered back as {rendered:?}"
        ));
    }
    Ok(name)
}

#[test]
fn every_helper_command_line_in_the_golden_files_parses_and_renders_back() {
    let dir = common::root().join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/golden")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    let mut failures = Vec::new();
    for file in &files {
        let mut found = Vec::new();
        commands(&common::read_json(file), &mut found);
        let ours = found.into_iter().filter(|c| {
            c.first()
                .is_some_and(|b| b == path::BINARY || b == path::IMAGE_BINARY)
        });
        for argv in ours {
            match round_trip(&argv) {
                Ok(name) => *seen.entry(name).or_default() += 1,
                Err(why) => failures.push(format!(
                    "{}: {argv:?}\n{why}",
                    file.file_name().unwrap_or_default().to_string_lossy()
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "helper command lines the helpers do not accept as written:\n\n{}",
        failures.join("\n\n")
    );
    for helper in [
        cmdline::INIT,
        cmdline::SUPERVISE,
        cmdline::SIDECAR,
        cmdline::WAIT_DOCKER,
    ] {
        assert!(
            seen.get(helper).is_some_and(|n| *n > 0),
            "no {helper} command line in tests/golden: {seen:?}"
        );
    }
}

/// The defaults the engine's config and the helpers share are one value.
#[test]
fn the_helpers_defaults_are_the_configs() {
    let config = dind_injector::engine::config::Config::default();
    let parsed = PodArgv::try_parse_from(["dind-injector", "supervise", "--", "/run.sh"])
        .expect("supervise with defaults");
    let inpod::Helper::Supervise(args) = parsed.helper else {
        panic!("not supervise: {parsed:?}");
    };
    assert_eq!(
        args.spec.drain_timeout.0,
        config.runner.drain_timeout_seconds
    );
    assert_eq!(args.spec.docker_wait.0, config.runner.docker_wait_seconds);
    assert_eq!(args.spec.drain_process, config.runner.drain_process);
}

/// The reasons are public names (metric labels, log fields, dashboard
/// legends): the table in docs/configuration.md lists exactly the ones the
/// code can produce, no more, no fewer.
#[test]
fn the_docs_list_exactly_the_outcomes_and_reasons() {
    use dind_injector::webhook::outcome::Outcome;
    use std::collections::BTreeSet;

    let docs = std::fs::read_to_string(common::root().join("docs/configuration.md"))
        .expect("docs/configuration.md");
    let section = docs
        .split("\n## Outcomes and reasons\n")
        .nth(1)
        .expect("docs/configuration.md has a section \"Outcomes and reasons\"");
    let section = section.split("\n## ").next().unwrap_or(section);
    let documented: BTreeSet<(String, String)> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(|c| c.trim().trim_matches('`')).collect();
            (cells[1].to_string(), cells[2].to_string())
        })
        .collect();
    let produced: BTreeSet<(String, String)> = Outcome::all()
        .into_iter()
        .map(|o| (o.as_str().to_string(), o.reason().to_string()))
        .collect();
    let missing: Vec<_> = produced.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&produced).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/configuration.md, Outcomes and reasons: missing {missing:?}, not produced {stale:?}"
    );
}
