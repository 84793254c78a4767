//! Watching runner pods run on the node: their phase, their containers'
//! states, and their logs as the kubelet wrote them, with the kubelet's own
//! nanosecond timestamps, so a scenario can tell what happened in which
//! order and how long it took.
//!
//! Logs are read from the node's files (`/var/log/pods`, the run's own in
//! the sandbox) and kept as they grow: the kubelet removes them with the pod,
//! and a scale-down scenario must still read them afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::Api;

/// One log line: seconds since the epoch (the kubelet's clock) and text.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: f64,
    pub text: String,
}

/// Everything seen of one pod while it ran.
#[derive(Default)]
pub struct Recording {
    /// Container name → its log lines (every restart, in order).
    logs: BTreeMap<String, Vec<Line>>,
    raw: BTreeMap<PathBuf, String>,
    pub last: Option<Pod>,
    pub gone: bool,
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Recording {
    /// Reads the pod and its log files once.
    pub async fn poll(&mut self, api: &Api<Pod>, name: &str) -> Result<()> {
        match api.get_opt(name).await? {
            Some(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                self.read_logs(&Path::new("/var/log/pods").join(format!("{ns}_{name}_{uid}")));
                self.last = Some(pod);
            }
            None => self.gone = true,
        }
        Ok(())
    }

    fn read_logs(&mut self, dir: &Path) {
        let Ok(containers) = std::fs::read_dir(dir) else {
            return;
        };
        for container in containers.flatten() {
            let Ok(files) = std::fs::read_dir(container.path()) else {
                continue;
            };
            for file in files.flatten() {
                if let Ok(text) = std::fs::read_to_string(file.path()) {
                    let kept = self.raw.entry(file.path()).or_default();
                    if text.len() >= kept.len() {
                        *kept = text;
                    }
                }
            }
        }
        self.logs.clear();
        for (path, text) in &self.raw {
            let container = path
                .parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let lines = self.logs.entry(container).or_default();
            lines.extend(text.lines().filter_map(parse_cri_line));
            lines.sort_by(|a, b| a.at.total_cmp(&b.at));
        }
    }

    pub fn lines(&self, container: &str) -> &[Line] {
        self.logs.get(container).map_or(&[], Vec::as_slice)
    }

    /// The first line of `container` that contains `needle`.
    pub fn first(&self, container: &str, needle: &str) -> Result<&Line> {
        self.lines(container)
            .iter()
            .find(|l| l.text.contains(needle))
            .with_context(|| {
                format!(
                    "no line with {needle:?} in the logs of {container}:\n{}",
                    self.dump()
                )
            })
    }

    pub fn has(&self, container: &str, needle: &str) -> bool {
        self.lines(container)
            .iter()
            .any(|l| l.text.contains(needle))
    }

    /// Every container's log, for a failure message.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (container, lines) in &self.logs {
            out.push_str(&format!("--- {container}\n"));
            for l in lines {
                out.push_str(&format!("{:.3} {}\n", l.at, l.text));
            }
        }
        if let Some(pod) = &self.last {
            out.push_str(&format!(
                "--- status\n{}\n",
                serde_json::to_string_pretty(&pod.status).unwrap_or_default()
            ));
        }
        out
    }

    pub fn phase(&self) -> &str {
        self.last
            .as_ref()
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("")
    }

    /// Every container's status, init containers (native sidecars) included.
    pub fn statuses(&self) -> Vec<&ContainerStatus> {
        let Some(status) = self.last.as_ref().and_then(|p| p.status.as_ref()) else {
            return Vec::new();
        };
        status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
            .collect()
    }

    pub fn status(&self, container: &str) -> Result<&ContainerStatus> {
        self.statuses()
            .into_iter()
            .find(|s| s.name == container)
            .with_context(|| format!("no status for container {container}:\n{}", self.dump()))
    }

    /// The exit code of a terminated container.
    pub fn exit_code(&self, container: &str) -> Result<i32> {
        self.status(container)?
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code)
            .with_context(|| format!("{container} has not terminated:\n{}", self.dump()))
    }

    /// Names of containers that are running.
    pub fn running(&self) -> Vec<String> {
        self.statuses()
            .into_iter()
            .filter(|s| s.state.as_ref().and_then(|s| s.running.as_ref()).is_some())
            .map(|s| s.name.clone())
            .collect()
    }
}

/// Polls the pod every 100 ms until `done` says so, or fails after `limit`
/// with everything seen. Returns when `done` first held (seconds since the
/// epoch).
pub async fn watch_until(
    api: &Api<Pod>,
    name: &str,
    rec: &mut Recording,
    limit: Duration,
    what: &str,
    done: impl Fn(&Recording) -> bool,
) -> Result<f64> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        rec.poll(api, name).await?;
        if done(rec) {
            return Ok(now());
        }
        if std::time::Instant::now() > deadline {
            bail!("pod {name}: {what}: not within {limit:?}\n{}", rec.dump());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `2026-11-29T23:40:01.123456789Z stdout F text` → (seconds, text).
fn parse_cri_line(line: &str) -> Option<Line> {
    let mut parts = line.splitn(4, ' ');
    let at = rfc3339_seconds(parts.next()?)?;
    let _stream = parts.next()?;
    let _tag = parts.next()?;
    Some(Line {
        at,
        text: parts.next().unwrap_or_default().to_string(),
    })
}

/// Seconds since the epoch of a UTC RFC 3339 time (the kubelet writes `Z`).
fn rfc3339_seconds(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from civil (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}
