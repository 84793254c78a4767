//! Per-pod overrides, read from `dind-injector.io/*` annotations.
//!
//! Each value is validated; an invalid one becomes a denial whose message
//! names the annotation, the value and what is accepted, because that text is
//! what the user sees in `kubectl` output. Unknown keys with our prefix are
//! denied too: a typo must not be silently ignored.

use super::view::Pairs;
use crate::contract::{annotation, ANNOTATION_PREFIX};
use crate::engine::config::{check_mount_path, is_dns_label, SidecarMode, MAX_SECONDS};
use crate::engine::{quantity, shared};

/// A shared directory override: `None` = not set, `Some(None)` = disabled.
pub type DirOverride = Option<Option<String>>;

#[derive(Debug, Default, PartialEq)]
pub struct Overrides {
    pub sidecar_mode: Option<SidecarMode>,
    pub runner_container: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub termination_grace_period: Option<u32>,
    pub drain_timeout: Option<u32>,
    pub docker_wait: Option<u32>,
    pub storage_size_limit: Option<String>,
    pub work_dir: DirOverride,
    pub externals_dir: DirOverride,
    /// The profile's name as written; whether it exists is the plan's
    /// question (the engine knows the profiles).
    pub profile: Option<String>,
    pub resources: ResourceOverrides,
}

/// The `dind` container's requests and limits, per pod (quantities).
#[derive(Debug, Default, PartialEq)]
pub struct ResourceOverrides {
    pub cpu_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_request: Option<String>,
    pub memory_limit: Option<String>,
}

impl ResourceOverrides {
    /// Each set value with its annotation, its resource and whether it is a
    /// limit, in the order the checks name them.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &'static str, bool, &str)> {
        [
            (annotation::CPU_REQUEST, "cpu", false, &self.cpu_request),
            (annotation::CPU_LIMIT, "cpu", true, &self.cpu_limit),
            (
                annotation::MEMORY_REQUEST,
                "memory",
                false,
                &self.memory_request,
            ),
            (annotation::MEMORY_LIMIT, "memory", true, &self.memory_limit),
        ]
        .into_iter()
        .filter_map(|(key, resource, limit, v)| v.as_deref().map(|v| (key, resource, limit, v)))
    }
}

/// An annotation with a value the injector cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: {value:?} is not valid: expected {expected}")]
pub struct AnnotationError {
    pub key: String,
    pub value: String,
    pub expected: String,
}

fn error(key: &str, value: &str, expected: impl Into<String>) -> AnnotationError {
    AnnotationError {
        key: key.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

/// `dind-injector.io/inject`: `Ok(false)` when the pod opted out.
pub fn inject_wanted(annotations: Option<&Pairs>) -> Result<bool, AnnotationError> {
    match annotations.and_then(|a| a.get(annotation::INJECT)) {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(error(annotation::INJECT, other, "\"true\" or \"false\"")),
    }
}

impl Overrides {
    /// Parses every `dind-injector.io/*` annotation. The pod's shape has been
    /// checked: annotation values are strings.
    pub fn parse(annotations: Option<&Pairs>) -> Result<Self, AnnotationError> {
        let mut o = Overrides::default();
        let Some(annotations) = annotations else {
            return Ok(o);
        };
        for (key, v) in annotations.iter() {
            if !key.starts_with(ANNOTATION_PREFIX) {
                continue;
            }
            match key {
                annotation::INJECT | annotation::STATUS => {}
                annotation::SIDECAR_MODE => {
                    o.sidecar_mode = Some(
                        SidecarMode::parse(v)
                            .ok_or_else(|| error(key, v, SidecarMode::ACCEPTED))?,
                    )
                }
                annotation::RUNNER_CONTAINER => {
                    if v.is_empty() {
                        return Err(error(key, v, "the name of one of the pod's containers"));
                    }
                    o.runner_container = Some(v.to_string());
                }
                annotation::ENTRYPOINT => o.entrypoint = Some(parse_command(key, v)?),
                annotation::TERMINATION_GRACE_PERIOD => {
                    o.termination_grace_period = Some(parse_seconds(key, v, 1)?)
                }
                annotation::DRAIN_TIMEOUT => o.drain_timeout = Some(parse_seconds(key, v, 0)?),
                annotation::DOCKER_WAIT => o.docker_wait = Some(parse_seconds(key, v, 0)?),
                annotation::STORAGE_SIZE_LIMIT => {
                    o.storage_size_limit = Some(parse_quantity(key, v, "20Gi")?)
                }
                annotation::PROFILE => {
                    if !is_dns_label(v) {
                        return Err(error(key, v, "the name of a configured profile"));
                    }
                    o.profile = Some(v.to_string());
                }
                annotation::CPU_REQUEST => {
                    o.resources.cpu_request = Some(parse_quantity(key, v, "500m")?)
                }
                annotation::CPU_LIMIT => o.resources.cpu_limit = Some(parse_quantity(key, v, "2")?),
                annotation::MEMORY_REQUEST => {
                    o.resources.memory_request = Some(parse_quantity(key, v, "1Gi")?)
                }
                annotation::MEMORY_LIMIT => {
                    o.resources.memory_limit = Some(parse_quantity(key, v, "4Gi")?)
                }
                annotation::WORK_DIR => o.work_dir = Some(parse_dir(key, v)?),
                annotation::EXTERNALS_DIR => o.externals_dir = Some(parse_dir(key, v)?),
                _ => {
                    return Err(AnnotationError {
                        key: key.to_string(),
                        value: v.to_string(),
                        expected: format!(
                            "no such dind-injector annotation; known: {}",
                            annotation::ALL.join(", ")
                        ),
                    })
                }
            }
        }
        Ok(o)
    }
}

fn parse_quantity(key: &str, v: &str, example: &str) -> Result<String, AnnotationError> {
    if !quantity::is_valid(v) {
        return Err(error(
            key,
            v,
            format!("a Kubernetes quantity such as {example}"),
        ));
    }
    Ok(v.to_string())
}

fn parse_seconds(key: &str, v: &str, min: u32) -> Result<u32, AnnotationError> {
    let expected = || format!("a whole number of seconds from {min} to {MAX_SECONDS}");
    // Only plain digits: "30s", "+30" and " 30" are refused, not reinterpreted.
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error(key, v, expected()));
    }
    match v.parse::<u32>() {
        Ok(n) if (min..=MAX_SECONDS).contains(&n) => Ok(n),
        _ => Err(error(key, v, expected())),
    }
}

/// A JSON list of strings (`["/home/runner/run.sh", "--once"]`) or a single
/// executable path; a bare string is never split on spaces.
fn parse_command(key: &str, v: &str) -> Result<Vec<String>, AnnotationError> {
    let expected =
        "a JSON list of strings such as [\"/home/runner/run.sh\"], or one executable path";
    let command = if v.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<String>>(v).map_err(|_| error(key, v, expected))?
    } else {
        vec![v.to_string()]
    };
    match command.first() {
        Some(first) if !first.trim().is_empty() => Ok(command),
        _ => Err(error(key, v, expected)),
    }
}

/// A shared directory: mounted into the privileged `dind` too, so it must
/// not cover the daemon's own directories (the configured prefixes are
/// checked with the config, in the plan).
fn parse_dir(key: &str, v: &str) -> Result<Option<String>, AnnotationError> {
    if v == "none" {
        return Ok(None);
    }
    check_mount_path(v).map_err(|_| error(key, v, "an absolute path, or \"none\" to disable"))?;
    shared::check_path(v, &[]).map_err(|expected| error(key, v, expected))?;
    Ok(Some(v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::view::Text;

    fn pairs(pairs: &[(&str, &str)]) -> Pairs<'static> {
        Pairs(
            pairs
                .iter()
                .map(|(k, v)| (Text(k.to_string().into()), Text(v.to_string().into())))
                .collect(),
        )
    }

    fn parse(p: &[(&str, &str)]) -> Result<Overrides, AnnotationError> {
        Overrides::parse(Some(&pairs(p)))
    }

    #[test]
    fn valid_values_are_read() {
        let o = parse(&[
            (annotation::SIDECAR_MODE, "native"),
            (annotation::RUNNER_CONTAINER, "agent"),
            (annotation::ENTRYPOINT, r#"["/run.sh", "--once"]"#),
            (annotation::TERMINATION_GRACE_PERIOD, "600"),
            (annotation::DRAIN_TIMEOUT, "0"),
            (annotation::DOCKER_WAIT, "60"),
            (annotation::STORAGE_SIZE_LIMIT, "20Gi"),
            (annotation::WORK_DIR, "/work"),
            (annotation::EXTERNALS_DIR, "none"),
            (annotation::PROFILE, "big-builds"),
            (annotation::CPU_REQUEST, "1500m"),
            (annotation::CPU_LIMIT, "2"),
            (annotation::MEMORY_REQUEST, "2Gi"),
            (annotation::MEMORY_LIMIT, "4Gi"),
            ("other.io/x", "anything"),
        ])
        .unwrap();
        assert_eq!(o.sidecar_mode, Some(SidecarMode::Native));
        assert_eq!(o.runner_container.as_deref(), Some("agent"));
        assert_eq!(o.entrypoint, Some(vec!["/run.sh".into(), "--once".into()]));
        assert_eq!(o.termination_grace_period, Some(600));
        assert_eq!(o.drain_timeout, Some(0));
        assert_eq!(o.docker_wait, Some(60));
        assert_eq!(o.storage_size_limit.as_deref(), Some("20Gi"));
        assert_eq!(o.work_dir, Some(Some("/work".into())));
        assert_eq!(o.externals_dir, Some(None));
        assert_eq!(o.profile.as_deref(), Some("big-builds"));
        let set: Vec<_> = o.resources.entries().map(|(k, _, _, v)| (k, v)).collect();
        assert_eq!(
            set,
            [
                (annotation::CPU_REQUEST, "1500m"),
                (annotation::CPU_LIMIT, "2"),
                (annotation::MEMORY_REQUEST, "2Gi"),
                (annotation::MEMORY_LIMIT, "4Gi"),
            ]
        );
    }

    #[test]
    fn a_plain_entrypoint_is_one_executable() {
        let o = parse(&[(annotation::ENTRYPOINT, "/home/runner/run.sh --once")]).unwrap();
        assert_eq!(
            o.entrypoint,
            Some(vec!["/home/runner/run.sh --once".into()])
        );
    }

    /// Every invalid value is refused with the annotation named and the
    /// accepted values spelled out.
    #[test]
    fn invalid_values_name_the_annotation_and_what_is_accepted() {
        let cases = [
            (
                annotation::SIDECAR_MODE,
                "sidecar",
                "classic, native or auto",
            ),
            (annotation::RUNNER_CONTAINER, "", "containers"),
            (annotation::ENTRYPOINT, "[]", "JSON list"),
            (annotation::ENTRYPOINT, "[1]", "JSON list"),
            (annotation::ENTRYPOINT, "[\"/run.sh\"", "JSON list"),
            (annotation::ENTRYPOINT, "", "JSON list"),
            (
                annotation::TERMINATION_GRACE_PERIOD,
                "forever",
                "whole number of seconds",
            ),
            (annotation::TERMINATION_GRACE_PERIOD, "0", "from 1"),
            (annotation::TERMINATION_GRACE_PERIOD, "30s", "whole number"),
            (annotation::DRAIN_TIMEOUT, "-5", "whole number"),
            (annotation::DRAIN_TIMEOUT, "99999999999", "whole number"),
            (annotation::DOCKER_WAIT, "1.5", "whole number"),
            (annotation::STORAGE_SIZE_LIMIT, "20GB", "quantity"),
            (annotation::WORK_DIR, "work", "absolute path"),
            (annotation::EXTERNALS_DIR, "/a/../b", "absolute path"),
            (annotation::PROFILE, "Big", "configured profile"),
            (annotation::PROFILE, "", "configured profile"),
            (
                annotation::CPU_REQUEST,
                "1.5 cores",
                "quantity such as 500m",
            ),
            (annotation::CPU_LIMIT, "-1", "quantity"),
            (annotation::MEMORY_REQUEST, "2GB", "quantity such as 1Gi"),
            (annotation::MEMORY_LIMIT, "lots", "quantity"),
            (annotation::WORK_DIR, "/usr/local/bin", "covers /usr"),
            (annotation::WORK_DIR, "/var", "covers /var/lib/docker"),
            (
                annotation::EXTERNALS_DIR,
                "/certs",
                "Docker daemon's directories",
            ),
            (
                annotation::EXTERNALS_DIR,
                "/run/dind-injector",
                "covers /run",
            ),
            (
                "dind-injector.io/drain-timout",
                "60",
                "known: dind-injector.io/inject",
            ),
        ];
        for (key, value, expected) in cases {
            let err = parse(&[(key, value)]).expect_err(key).to_string();
            assert!(err.starts_with(&format!("annotation {key}: ")), "{err}");
            assert!(err.contains(expected), "{err} lacks {expected}");
        }
    }

    #[test]
    fn inject_annotation_accepts_only_true_and_false() {
        let map = |v: &str| pairs(&[(annotation::INJECT, v)]);
        assert_eq!(inject_wanted(None), Ok(true));
        assert_eq!(inject_wanted(Some(&map("true"))), Ok(true));
        assert_eq!(inject_wanted(Some(&map("false"))), Ok(false));
        let err = inject_wanted(Some(&map("no"))).unwrap_err().to_string();
        assert!(
            err.contains(annotation::INJECT) && err.contains("\"false\""),
            "{err}"
        );
    }
}
