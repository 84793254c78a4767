//! What became of one review, in stable names: the `outcome` and `reason`
//! labels of `dind_injector_reviews_total`, the `decision` and `reason`
//! fields of the review log line, the dashboard's legends, and the table of
//! reasons in `docs/configuration.md` (`tests/contract.rs` checks that the
//! table lists exactly [`Outcome::all`]).

use crate::engine::{DenyReason, SkipReason};

/// Mutually exclusive outcomes: they add up to the request rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    Skipped(Skip),
    Denied(DenyReason),
    /// A request we could not answer properly (bad input or our bug).
    Error(ErrorReason),
}

/// Why a review was allowed without a patch: the engine's reasons, plus the
/// ones only the wire format can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Engine(SkipReason),
    /// An operation other than CREATE (the webhook only registers CREATE).
    NotCreate,
    /// A CREATE without an object.
    NoObject,
}

/// Why a request got no proper answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReason {
    /// Content type other than `application/json` (415).
    UnsupportedMediaType,
    /// Body over the limit (413).
    TooLarge,
    /// The body could not be read (400).
    BadBody,
    /// The body did not arrive in time (408).
    BodyTimeout,
    /// The budget of bodies or reviews in flight stayed full (503).
    Overloaded,
    /// The body is not an AdmissionReview we can answer (400).
    BadReview,
    /// Our answer could not be encoded (500).
    Encode,
    /// A bug in the engine: answered `allowed: false`, code 500.
    Internal,
}

impl Skip {
    pub const WIRE: [Skip; 2] = [Skip::NotCreate, Skip::NoObject];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Engine(r) => r.as_str(),
            Skip::NotCreate => "not-create",
            Skip::NoObject => "no-object",
        }
    }
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 8] = [
        Self::UnsupportedMediaType,
        Self::TooLarge,
        Self::BadBody,
        Self::BodyTimeout,
        Self::Overloaded,
        Self::BadReview,
        Self::Encode,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::TooLarge => "too-large",
            Self::BadBody => "bad-body",
            Self::BodyTimeout => "body-timeout",
            Self::Overloaded => "overloaded",
            Self::BadReview => "bad-review",
            Self::Encode => "encode",
            Self::Internal => "internal",
        }
    }
}

impl Outcome {
    /// The `outcome` label and the log line's `decision`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::Skipped(_) => "skipped",
            Outcome::Denied(_) => "denied",
            Outcome::Error(_) => "error",
        }
    }

    /// The `reason` label: empty for `injected` only.
    pub fn reason(self) -> &'static str {
        match self {
            Outcome::Injected => "",
            Outcome::Skipped(s) => s.as_str(),
            Outcome::Denied(d) => d.as_str(),
            Outcome::Error(e) => e.as_str(),
        }
    }

    /// Worth a warning in the log: the user or the operator has to act.
    pub fn is_problem(self) -> bool {
        matches!(self, Outcome::Denied(_) | Outcome::Error(_))
    }

    /// Every outcome with every reason it can carry.
    pub fn all() -> Vec<Outcome> {
        let skips = SkipReason::ALL
            .map(Skip::Engine)
            .into_iter()
            .chain(Skip::WIRE);
        std::iter::once(Outcome::Injected)
            .chain(skips.map(Outcome::Skipped))
            .chain(DenyReason::ALL.map(Outcome::Denied))
            .chain(ErrorReason::ALL.map(Outcome::Error))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_within_an_outcome() {
        let all = Outcome::all();
        let labels: std::collections::HashSet<_> =
            all.iter().map(|o| (o.as_str(), o.reason())).collect();
        assert_eq!(labels.len(), all.len(), "{all:?}");
    }
}
