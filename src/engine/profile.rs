//! Which Docker settings a pod gets: its profile, then its own annotations.
//!
//! Profiles are resolved once ([`Profiles::new`]); per pod the engine only
//! picks one (the pod's annotation, else its namespace's, else the
//! configured default) and, when the pod sets its own resources or storage
//! size, copies it with those applied. The copy is checked like the config
//! is (a request above its limit would be refused by the apiserver with a
//! message naming a field the user never wrote).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::overrides::Overrides;
use super::{Denial, DenyReason};
use crate::contract::annotation;
use crate::engine::config::{Config, ConfigError, DindConfig};
use crate::engine::quantity;

/// Every profile, resolved, and the default one's name.
#[derive(Debug, Clone)]
pub struct Profiles {
    by_name: BTreeMap<String, Arc<DindConfig>>,
    default: String,
}

/// Where the pod's profile was named, for the denial when it does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NamedBy {
    Pod,
    Namespace,
}

impl Profiles {
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            by_name: config
                .profiles()?
                .into_iter()
                .map(|(name, dind)| (name, Arc::new(dind)))
                .collect(),
            default: config.default_profile.clone(),
        })
    }

    /// The configured default profile (what the policy delivery renders).
    pub fn default_profile(&self) -> &Arc<DindConfig> {
        // Config::profiles checked that the default profile exists.
        self.by_name
            .get(&self.default)
            .expect("Config::profiles checks that defaultProfile names a profile")
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The settings for one pod: the profile its annotation names, else the
    /// one its namespace names, else the default; then the pod's own
    /// resources and storage size.
    pub fn for_pod(
        &self,
        overrides: &Overrides,
        namespace_profile: Option<&str>,
    ) -> Result<Arc<DindConfig>, Denial> {
        let (name, by) = match (&overrides.profile, namespace_profile) {
            (Some(name), _) => (name.as_str(), NamedBy::Pod),
            (None, Some(name)) => (name, NamedBy::Namespace),
            (None, None) => (self.default.as_str(), NamedBy::Pod),
        };
        let Some(profile) = self.by_name.get(name) else {
            let known = self.names().collect::<Vec<_>>().join(", ");
            let whose = match by {
                NamedBy::Pod => "annotation",
                NamedBy::Namespace => "the namespace's annotation",
            };
            return Err(Denial::new(
                DenyReason::UnknownProfile,
                format!(
                    "{whose} {}: {name:?} is not a configured profile (profiles: {known})",
                    annotation::PROFILE
                ),
            ));
        };
        let r = &overrides.resources;
        if overrides.storage_size_limit.is_none() && r.entries().next().is_none() {
            return Ok(profile.clone());
        }
        let mut dind = DindConfig::clone(profile);
        if let Some(size) = &overrides.storage_size_limit {
            dind.storage_size_limit = Some(size.clone());
        }
        for (_, resource, limit, value) in r.entries() {
            let map = if limit {
                &mut dind.resources.limits
            } else {
                &mut dind.resources.requests
            };
            map.insert(resource.into(), value.into());
        }
        check_requests_within_limits(&dind, overrides, name)?;
        Ok(Arc::new(dind))
    }
}

/// A request above its limit, once the pod's annotations are applied, is
/// denied naming the annotation that made it so.
fn check_requests_within_limits(
    dind: &DindConfig,
    overrides: &Overrides,
    profile: &str,
) -> Result<(), Denial> {
    let r = &overrides.resources;
    for (resource, request_key, limit_key, set_request, set_limit) in [
        (
            "cpu",
            annotation::CPU_REQUEST,
            annotation::CPU_LIMIT,
            &r.cpu_request,
            &r.cpu_limit,
        ),
        (
            "memory",
            annotation::MEMORY_REQUEST,
            annotation::MEMORY_LIMIT,
            &r.memory_request,
            &r.memory_limit,
        ),
    ] {
        let request = dind.resources.requests.get(resource);
        let limit = dind.resources.limits.get(resource);
        let (Some(request), Some(limit)) = (request, limit) else {
            continue;
        };
        let above = matches!(
            (quantity::value(request), quantity::value(limit)),
            (Some(req), Some(lim)) if req > lim
        );
        if !above {
            continue;
        }
        let (key, value, what) = match (set_request, set_limit) {
            (Some(v), _) => (
                request_key,
                v,
                format!("is above the {resource} limit {limit}"),
            ),
            (None, Some(v)) => (
                limit_key,
                v,
                format!("is below the {resource} request {request}"),
            ),
            // Config::profiles refuses a profile whose request is above its
            // limit: only what the pod set can make it so.
            (None, None) => continue,
        };
        return Err(Denial::new(
            DenyReason::InvalidAnnotation,
            format!(
                "annotation {key}: {value:?} {what} (profile {profile}); \
                 set {request_key} and {limit_key} together"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::overrides::ResourceOverrides;

    fn profiles() -> Profiles {
        let config = Config::from_yaml(
            "dind:\n  resources:\n    requests: {cpu: 100m, memory: 256Mi}\n    limits: {memory: 1Gi}\n\
             profiles:\n  big:\n    resources:\n      requests: {cpu: '2', memory: 4Gi}\n      limits: {memory: 8Gi}\n",
        )
        .unwrap();
        Profiles::new(&config).unwrap()
    }

    fn pod(profile: Option<&str>, resources: ResourceOverrides) -> Overrides {
        Overrides {
            profile: profile.map(String::from),
            resources,
            ..Overrides::default()
        }
    }

    #[test]
    fn the_pod_wins_over_its_namespace_which_wins_over_the_default() {
        let p = profiles();
        let cpu = |o: &Overrides, ns| p.for_pod(o, ns).unwrap().resources.requests["cpu"].clone();
        assert_eq!(cpu(&pod(None, ResourceOverrides::default()), None), "100m");
        assert_eq!(
            cpu(&pod(None, ResourceOverrides::default()), Some("big")),
            "2"
        );
        assert_eq!(
            cpu(
                &pod(Some("default"), ResourceOverrides::default()),
                Some("big")
            ),
            "100m"
        );
    }

    #[test]
    fn an_unknown_profile_is_denied_naming_it_and_who_named_it() {
        let p = profiles();
        let err = p
            .for_pod(&pod(Some("huge"), ResourceOverrides::default()), None)
            .unwrap_err();
        assert_eq!(err.reason, DenyReason::UnknownProfile);
        assert!(
            err.message
                .starts_with("annotation dind-injector.io/profile: \"huge\"")
                && err.message.contains("profiles: big, default"),
            "{}",
            err.message
        );
        let err = p
            .for_pod(&pod(None, ResourceOverrides::default()), Some("gone"))
            .unwrap_err();
        assert!(
            err.message.starts_with("the namespace's annotation"),
            "{}",
            err.message
        );
    }

    #[test]
    fn pod_resources_land_on_top_of_the_profile_and_are_checked() {
        let p = profiles();
        let o = pod(
            Some("big"),
            ResourceOverrides {
                memory_limit: Some("16Gi".into()),
                cpu_limit: Some("3".into()),
                ..Default::default()
            },
        );
        let dind = p.for_pod(&o, None).unwrap();
        assert_eq!(dind.resources.limits["memory"], "16Gi");
        assert_eq!(dind.resources.limits["cpu"], "3");
        assert_eq!(dind.resources.requests["memory"], "4Gi");

        let too_big = pod(
            None,
            ResourceOverrides {
                memory_request: Some("2Gi".into()),
                ..Default::default()
            },
        );
        let err = p.for_pod(&too_big, None).unwrap_err().message;
        assert!(
            err.starts_with("annotation dind-injector.io/memory-request: \"2Gi\" is above the memory limit 1Gi (profile default)"),
            "{err}"
        );
        let too_small = pod(
            Some("big"),
            ResourceOverrides {
                memory_limit: Some("1Gi".into()),
                ..Default::default()
            },
        );
        let err = p.for_pod(&too_small, None).unwrap_err().message;
        assert!(
            err.starts_with(
                "annotation dind-injector.io/memory-limit: \"1Gi\" is below the memory request 4Gi"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_pod_without_settings_shares_its_profile() {
        let p = profiles();
        let a = p
            .for_pod(&pod(None, ResourceOverrides::default()), None)
            .unwrap();
        assert!(Arc::ptr_eq(&a, p.default_profile()));
    }
}
