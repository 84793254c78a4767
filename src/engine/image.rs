//! Just enough of the image-reference grammar to match images by repository.

/// The repository part of an image reference: without `@digest` and without
/// `:tag` (a `:` before the last `/` is a registry port, not a tag).
pub fn repository(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => &image[..last_slash + colon],
        None => image,
    }
}

/// The tag of an image reference, if it has one.
pub fn tag(image: &str) -> Option<&str> {
    let name = image.split_once('@').map_or(image, |(name, _)| name);
    let repo = repository(name);
    name.get(repo.len() + 1..).filter(|t| !t.is_empty())
}

/// Whether `image` belongs to `pattern`: an exact repository
/// (`ghcr.io/actions/actions-runner`) or a repository prefix ending in `*`
/// (`ghcr.io/my-org/runners/*`). Tags and digests never take part, so a
/// pattern keeps matching across runner upgrades.
pub fn matches(pattern: &str, image: &str) -> bool {
    let repo = repository(image);
    match pattern.strip_suffix('*') {
        Some(prefix) => repo.starts_with(prefix),
        None => repo == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_strips_tag_and_digest_but_not_port() {
        let cases = [
            (
                "ghcr.io/actions/actions-runner:2.321.0",
                "ghcr.io/actions/actions-runner",
            ),
            (
                "ghcr.io/actions/actions-runner",
                "ghcr.io/actions/actions-runner",
            ),
            ("registry:5000/runner", "registry:5000/runner"),
            ("registry:5000/runner:1.0", "registry:5000/runner"),
            ("docker:dind", "docker"),
            ("img@sha256:abcd", "img"),
            ("img:1@sha256:abcd", "img"),
        ];
        for (image, repo) in cases {
            assert_eq!(repository(image), repo, "{image}");
        }
    }

    #[test]
    fn tag_is_found_only_after_the_last_slash() {
        assert_eq!(tag("docker:28-dind"), Some("28-dind"));
        assert_eq!(tag("registry:5000/docker"), None);
        assert_eq!(tag("registry:5000/docker:dind@sha256:ab"), Some("dind"));
    }

    #[test]
    fn patterns_match_exact_repositories_or_prefixes() {
        assert!(matches(
            "ghcr.io/actions/actions-runner",
            "ghcr.io/actions/actions-runner:2.3"
        ));
        assert!(!matches(
            "ghcr.io/actions/actions-runner",
            "ghcr.io/actions/actions-runner-dind"
        ));
        assert!(matches("ghcr.io/org/*", "ghcr.io/org/runner:1"));
        assert!(!matches("ghcr.io/org/*", "ghcr.io/other/runner:1"));
    }
}
