//! What may be shared with the privileged `dind` container.
//!
//! The work directory and the externals are mounted into `dind` at the
//! path the runner uses. `dind` is privileged, so whoever chooses that path
//! or that volume steers it: a ConfigMap mounted at `/usr/local/bin`
//! replaces the daemon's entrypoint, a path over `/var/lib/docker` or
//! `/certs` hands its data or keys to the pod's author. So a shared path
//! must cover none of the daemon's own directories (neither be one, nor lie
//! inside one, nor contain one), may be narrowed to configured prefixes, and
//! a volume the runner already mounts there is shared only if it is plain
//! storage.

use serde_json::Value;

/// The directories the daemon's container runs from, and the injector's
/// mounts in it. Whole trees: `/usr` covers `/usr/local/bin`.
pub const DAEMON_DIRS: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/root",
    "/var/lib/docker",
    "/var/run",
    "/run",
    "/certs",
    "/proc",
    "/sys",
    "/dev",
    "/dind-injector",
];

/// Volume types that are plain storage: nothing in them is chosen by
/// anyone but the pod's own processes.
pub const PLAIN_STORAGE: &[&str] = &["emptyDir", "persistentVolumeClaim", "ephemeral"];

/// The path's components (`//` and `.` dropped).
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// Whether one path is the other or inside it.
fn nested(a: &[&str], b: &[&str]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// The daemon directory `path` covers (is, is inside, or contains), if any.
pub fn daemon_dir_covered(path: &str) -> Option<&'static str> {
    let path = components(path);
    DAEMON_DIRS
        .iter()
        .copied()
        .find(|dir| nested(&path, &components(dir)))
}

/// Whether `path` is one of `prefixes` or inside one; any path when there
/// are none.
pub fn within(path: &str, prefixes: &[String]) -> bool {
    let path = components(path);
    prefixes.is_empty()
        || prefixes.iter().any(|prefix| {
            let prefix = components(prefix);
            path.len() >= prefix.len() && nested(&path, &prefix)
        })
}

/// Why a shared path is refused, in words that end an "expected …" phrase.
pub fn check_path(path: &str, prefixes: &[String]) -> Result<(), String> {
    if let Some(dir) = daemon_dir_covered(path) {
        return Err(format!(
            "a path that covers none of the Docker daemon's directories ({path} covers {dir})"
        ));
    }
    if !within(path, prefixes) {
        return Err(format!(
            "a path under one of the allowed prefixes ({})",
            prefixes.join(", ")
        ));
    }
    Ok(())
}

/// The volume type of a pod volume: its one key other than `name`.
pub fn volume_type(volume: &Value) -> Option<&str> {
    volume
        .as_object()?
        .keys()
        .map(String::as_str)
        .find(|k| *k != "name")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_over_under_or_at_the_daemons_directories_are_refused() {
        for (path, dir) in [
            ("/usr/local/bin", "/usr"),
            ("/usr", "/usr"),
            ("/var", "/var/lib/docker"),
            ("/var/lib", "/var/lib/docker"),
            ("/var/lib/docker/volumes", "/var/lib/docker"),
            ("/certs/client", "/certs"),
            ("/run/dind-injector", "/run"),
            ("/dind-injector", "/dind-injector"),
            ("/etc/", "/etc"),
            ("//etc/./docker", "/etc"),
            ("/proc/1", "/proc"),
        ] {
            assert_eq!(daemon_dir_covered(path), Some(dir), "{path}");
            let err = check_path(path, &[]).expect_err(path);
            assert!(err.contains(dir), "{err}");
        }
        for path in [
            "/home/runner/_work",
            "/work",
            "/opt/externals",
            "/var/cache/x",
            "/usrx",
        ] {
            assert_eq!(daemon_dir_covered(path), None, "{path}");
            assert_eq!(check_path(path, &[]), Ok(()), "{path}");
        }
    }

    #[test]
    fn configured_prefixes_narrow_the_paths() {
        let prefixes = vec!["/home/runner".to_string(), "/work/".to_string()];
        for ok in ["/home/runner", "/home/runner/_work", "/work/x"] {
            assert_eq!(check_path(ok, &prefixes), Ok(()), "{ok}");
        }
        for bad in ["/home", "/home/runner2", "/opt/x"] {
            let err = check_path(bad, &prefixes).expect_err(bad);
            assert!(err.contains("/home/runner, /work/"), "{err}");
        }
    }

    #[test]
    fn volume_types() {
        assert_eq!(
            volume_type(&json!({"name": "w", "emptyDir": {}})),
            Some("emptyDir")
        );
        assert_eq!(
            volume_type(&json!({"configMap": {"name": "c"}, "name": "w"})),
            Some("configMap")
        );
        assert_eq!(volume_type(&json!({"name": "w"})), None);
    }
}
