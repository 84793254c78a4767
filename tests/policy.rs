//! Golden test of `dind-injector policy`: the admission policies rendered
//! from the default config, in both modes. `UPDATE_GOLDEN=1 cargo test
//! --test policy` rewrites them; review the diff before committing it. The
//! e2e suite (`make e2e E2E_ARGS=policy`) proves them on a real apiserver.

mod common;

use std::process::Command;

#[test]
fn rendered_policies_match_their_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = common::root().join("tests/golden/policy");
    let mut mismatched = Vec::new();
    for mode in ["classic", "native"] {
        let out = Command::new(common::bin())
            .args(["policy", "--mode", mode])
            .output()
            .expect("run dind-injector policy");
        assert!(
            out.status.success(),
            "policy --mode {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8(out.stdout).expect("UTF-8");
        let path = dir.join(format!("{mode}.yaml"));
        if update {
            std::fs::write(&path, &got).expect("write golden");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(got.as_str()) {
            mismatched.push(mode);
        }
    }
    assert!(
        mismatched.is_empty(),
        "rendered policies differ from tests/golden/policy for {mismatched:?} \
         (UPDATE_GOLDEN=1 to rewrite, then review the diff)"
    );
}

/// `-o DIR` writes the same objects, one file each.
#[test]
fn output_directory_gets_one_file_per_object() {
    let dir = common::temp_dir("policy");
    let out = Command::new(common::bin())
        .args(["policy", "--mode", "native", "-o"])
        .arg(&dir)
        .output()
        .expect("run dind-injector policy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("read output dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "mutatingadmissionpolicy.yaml",
            "mutatingadmissionpolicybinding.yaml",
            "validatingadmissionpolicy.yaml",
            "validatingadmissionpolicybinding.yaml"
        ]
    );
    let joined: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).expect("read"))
        .collect();
    let golden = std::fs::read_to_string(common::root().join("tests/golden/policy/native.yaml"))
        .expect("golden");
    assert_eq!(joined.join("---\n"), golden);
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

/// The kustomize component ships the policies rendered from the base's
/// config; a change to either must regenerate it.
#[test]
fn kustomize_component_is_the_rendering_of_the_base_config() {
    let root = common::root();
    let out = Command::new(common::bin())
        .arg("policy")
        .arg("--config")
        .arg(root.join("manifests/base/config.yaml"))
        .output()
        .expect("run dind-injector policy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shipped =
        std::fs::read(root.join("manifests/components/policy-delivery/policy.yaml")).expect("read");
    assert!(
        shipped == out.stdout,
        "manifests/components/policy-delivery/policy.yaml is stale: regenerate it with \
         dind-injector policy --config manifests/base/config.yaml"
    );
}
