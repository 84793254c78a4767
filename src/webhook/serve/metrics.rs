//! Prometheus metrics, served on their own plain-HTTP port.
//!
//! Every review is counted exactly once, under one of the mutually exclusive
//! outcomes `injected`, `skipped` (with a `reason`), `denied` and `error`, so
//! that the outcomes add up to the request rate on a dashboard.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::CommandSource;
use crate::webhook::outcome::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub outcome: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// One counter per outcome and reason, resolved once: counting a review
    /// is then one atomic add, with no label hashing or map lock.
    reviews: Vec<(Outcome, Counter)>,
    duration: Histogram,
    cert_expiry: Gauge<i64, AtomicI64>,
    connections: Gauge<i64, AtomicI64>,
    accepted: Counter,
    ready: Gauge<i64, AtomicI64>,
    sidecar_mode: Family<ModeLabels, Gauge>,
    runner_commands: Family<SourceLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dind_injector");
        let family = Family::<ReviewLabels, Counter>::default();
        let reviews = Outcome::all()
            .into_iter()
            .map(|outcome| {
                let labels = ReviewLabels {
                    outcome: outcome.as_str(),
                    reason: outcome.reason(),
                };
                (outcome, family.get_or_create(&labels).clone())
            })
            .collect();
        registry.register(
            "reviews",
            "Admission reviews by outcome (injected, skipped, denied, error) and skip or error reason",
            family,
        );
        // 50 µs .. ~1.6 s, doubling: the engine takes well under a millisecond.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.000_05, 2.0, 16,
        ));
        registry.register(
            "review_duration_seconds",
            "Time from a complete request body to the answer",
            duration.clone(),
        );
        let cert_expiry = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, seconds since the epoch",
            cert_expiry.clone(),
        );
        let connections = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "open_connections",
            "Open webhook connections (TLS established)",
            connections.clone(),
        );
        // Connection churn: an apiserver that does not keep its connections
        // pays a TLS handshake per review.
        let accepted = Counter::default();
        registry.register(
            "connections",
            "Webhook connections established (TLS handshake completed)",
            accepted.clone(),
        );
        let ready = Gauge::<i64, AtomicI64>::default();
        registry.register("ready", "1 while the webhook reports ready", ready.clone());
        let sidecar_mode = Family::<ModeLabels, Gauge>::default();
        registry.register(
            "sidecar_mode",
            "1 for the sidecar mode that `auto` (or the configured mode) means now",
            sidecar_mode.clone(),
        );
        let runner_commands = Family::<SourceLabels, Counter>::default();
        for source in CommandSource::ALL {
            let _ = runner_commands.get_or_create(&SourceLabels {
                source: source.as_str(),
            });
        }
        registry.register(
            "runner_commands",
            "Injected pods by how the runner's command was found (spec, annotation, known-image, registry, none)",
            runner_commands.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Build information", build);
        Self {
            registry,
            reviews,
            duration,
            cert_expiry,
            connections,
            accepted,
            ready,
            sidecar_mode,
            runner_commands,
        }
    }

    /// Counts one injected pod under how its runner's command was found.
    pub fn runner_command(&self, source: CommandSource) {
        self.runner_commands
            .get_or_create(&SourceLabels {
                source: source.as_str(),
            })
            .inc();
    }

    pub fn set_sidecar_mode(&self, mode: &'static str) {
        for m in ["classic", "native"] {
            self.sidecar_mode
                .get_or_create(&ModeLabels { mode: m })
                .set(i64::from(m == mode));
        }
    }

    /// Counts one review; `took` (body complete to answer) only for reviews
    /// that were answered, so that slow or refused uploads do not skew the
    /// latency of the webhook itself.
    pub fn review(&self, outcome: Outcome, took: Option<Duration>) {
        if let Some((_, counter)) = self.reviews.iter().find(|(o, _)| *o == outcome) {
            counter.inc();
        }
        if let Some(took) = took {
            self.duration.observe(took.as_secs_f64());
        }
    }

    pub fn set_cert_expiry(&self, not_after: Option<i64>) {
        self.cert_expiry.set(not_after.unwrap_or(0));
    }

    /// +1 when a connection is established, -1 when it closes.
    pub fn connections(&self, delta: i64) {
        self.connections.inc_by(delta);
        if delta > 0 {
            self.accepted.inc_by(delta as u64);
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SkipReason;
    use crate::webhook::outcome::{ErrorReason, Skip};

    #[test]
    fn outcomes_are_counted_with_their_reason() {
        let m = Metrics::new();
        let not_a_runner = Outcome::Skipped(Skip::Engine(SkipReason::NotRunner));
        m.review(not_a_runner, Some(Duration::from_micros(80)));
        m.review(Outcome::Injected, Some(Duration::from_micros(300)));
        m.review(Outcome::Error(ErrorReason::TooLarge), None);
        m.set_cert_expiry(Some(1_900_000_000));
        m.connections(1);
        m.connections(1);
        m.connections(-1);
        m.runner_command(CommandSource::Registry);
        let text = m.encode().unwrap();
        assert!(
            text.contains(r#"dind_injector_runner_commands_total{source="registry"} 1"#)
                && text.contains(r#"dind_injector_runner_commands_total{source="none"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dind_injector_reviews_total{outcome="skipped",reason="not-a-runner"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"dind_injector_reviews_total{outcome="injected",reason=""} 1"#),
            "{text}"
        );
        // Every outcome is there from the start, at zero: dashboards see the
        // series before the first review of its kind.
        assert!(
            text.contains(
                r#"dind_injector_reviews_total{outcome="denied",reason="host-network"} 0"#
            ),
            "{text}"
        );
        for outcome in Outcome::all() {
            assert!(
                text.contains(&format!(
                    "dind_injector_reviews_total{{outcome=\"{}\",reason=\"{}\"}}",
                    outcome.as_str(),
                    outcome.reason()
                )),
                "{outcome:?}: {text}"
            );
        }
        assert!(
            text.contains("dind_injector_review_duration_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains("dind_injector_certificate_expiry_timestamp_seconds 1900000000"),
            "{text}"
        );
        assert!(text.contains("dind_injector_build_info{version="), "{text}");
        assert!(
            text.contains("dind_injector_open_connections 1\n"),
            "{text}"
        );
        assert!(
            text.contains("dind_injector_connections_total 2\n"),
            "{text}"
        );
    }
}
