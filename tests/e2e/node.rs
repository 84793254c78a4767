//! A real node: containerd (built from its Go module, Debian's runc and CNI
//! plugins) and the kubelet from the control plane's executable, inside the
//! run's namespaces (sandbox.rs). Images are imported, never pulled.
//!
//! Facts this rests on (docs/design.md, "A real node"): the host is cgroup v1
//! without systemd, so the kubelet needs `failCgroupV1: false` and the
//! cgroupfs driver, and its cgroup root must exist before it starts; root
//! lacks CAP_SYS_RESOURCE here, so containerd must not lower oom_score_adj
//! (`restrict_oom_score_adj`) or runc fails every sandbox; the kubelet
//! refuses a loopback node IP, so the node's address lives on a veth pair.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::api::Api;
use kube::Client;

use crate::cluster::{self, ControlPlane, Credentials};
use crate::pki::{self, Ca, Usage};
use crate::procs::{eventually, Proc};
use crate::sandbox::{self, CGROUP_HIERARCHIES};

pub const NODE_NAME: &str = "e2e-node";
/// The node's address, on a veth pair inside the run's network namespace.
pub const NODE_IP: &str = "10.250.0.1";
/// Pods' addresses (the CNI bridge's subnet).
const POD_SUBNET: &str = "10.88.0.0/16";
/// Below the usual 1500 and below this machine's own 1400, so a pod that
/// sees it got it from the CNI configuration and nowhere else.
pub const POD_MTU: u32 = 1380;

/// What the node runs: every image the scenarios use, imported from archives
/// (tests/e2e/build-images.sh writes them and an `images.txt` index of
/// `<archive> <reference>` lines).
#[derive(Clone)]
pub struct Images {
    /// (archive, reference) pairs.
    pub archives: Vec<(PathBuf, String)>,
    pub pause: String,
    pub dind: String,
    pub runner: String,
    /// The runner image with an ENTRYPOINT and no CMD (issue 16).
    pub runner_entrypoint: String,
    pub injector: String,
}

impl Images {
    /// Every `images.txt` under the given directories (`:`-separated).
    pub fn read(dirs: &Path) -> Result<Images> {
        let mut archives = Vec::new();
        for dir in std::env::split_paths(dirs) {
            let index = dir.join("images.txt");
            let text =
                std::fs::read_to_string(&index).with_context(|| index.display().to_string())?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let (file, reference) = line
                    .split_once(' ')
                    .with_context(|| format!("{}: {line:?}", index.display()))?;
                archives.push((dir.join(file), reference.trim().to_string()));
            }
        }
        let find = |name: &str| {
            archives
                .iter()
                .map(|(_, r)| r)
                .find(|r| {
                    r.rsplit_once(':')
                        .is_some_and(|(repo, _)| repo.ends_with(name))
                })
                .cloned()
                .with_context(|| format!("no image named {name} in {}", dirs.display()))
        };
        Ok(Images {
            pause: find("/pause")?,
            dind: find("/dind")?,
            runner: find("/runner")?,
            runner_entrypoint: find("/runner-entrypoint")?,
            injector: find("/dind-injector")?,
            archives,
        })
    }
}

pub struct Node {
    dir: PathBuf,
    containerd_bin: PathBuf,
    cgroup: String,
    // Stopped in this order by Drop: the kubelet before its runtime.
    kubelet: Option<Proc>,
    containerd: Option<Proc>,
}

impl Node {
    /// Starts containerd, imports the images, starts the kubelet and returns
    /// once the node is Ready.
    pub async fn start(
        bin: &Path,
        containerd_bin: &Path,
        dir: &Path,
        ca: &Ca,
        cp: &ControlPlane,
        client: &Client,
        images: &Images,
    ) -> Result<Node> {
        let started = Instant::now();
        let dir = dir.join("node");
        std::fs::create_dir_all(&dir)?;
        let cgroup = sandbox::cgroup_name(dir.parent().unwrap_or(&dir));
        let mut node = Node {
            dir: dir.clone(),
            containerd_bin: containerd_bin.to_path_buf(),
            cgroup,
            kubelet: None,
            containerd: None,
        };
        node.network()?;
        node.cgroup_root()?;
        node.start_containerd(&images.pause)?;
        node.import(images)?;
        println!(
            "e2e: containerd up with {} images in {:.1} s",
            images.archives.len(),
            started.elapsed().as_secs_f64()
        );
        node.start_kubelet(bin, ca, cp)?;
        let nodes: Api<NodeObject> = Api::all(client.clone());
        let kubelet = node.kubelet.as_mut().context("kubelet")?;
        let log = kubelet.log.clone();
        eventually("the node to be Ready", Duration::from_secs(120), || {
            let nodes = nodes.clone();
            let log = log.clone();
            async move {
                let ready = nodes.get_opt(NODE_NAME).await?.is_some_and(|n| {
                    n.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
                if !ready {
                    // Fail fast with the log when the kubelet died.
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if text.contains("command failed") || text.contains("Failed to run kubelet") {
                        bail!("the kubelet failed:\n{}", tail(&text, 30));
                    }
                }
                Ok(ready.then_some(()))
            }
        })
        .await?;
        node.check_alive()?;
        println!(
            "e2e: node {NODE_NAME} Ready at {NODE_IP} after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(node)
    }

    /// The node's address on a veth pair whose both ends stay in the run's
    /// network namespace (the kernel here has no dummy interfaces).
    fn network(&self) -> Result<()> {
        let ip = |args: &str| sandbox::run("ip", &args.split(' ').collect::<Vec<_>>());
        ip("link add e2e-node type veth peer name e2e-node-peer")?;
        ip(&format!("addr add {NODE_IP}/24 dev e2e-node"))?;
        ip("link set e2e-node up")?;
        ip("link set e2e-node-peer up")?;
        Ok(())
    }

    /// The kubelet's cgroup root, in every v1 hierarchy; cpuset needs its
    /// CPUs and memory nodes before a task can join.
    fn cgroup_root(&self) -> Result<()> {
        for h in CGROUP_HIERARCHIES {
            let base = Path::new("/sys/fs/cgroup").join(h);
            if !base.exists() {
                continue;
            }
            let path = base.join(&self.cgroup);
            std::fs::create_dir_all(&path).with_context(|| path.display().to_string())?;
            if *h == "cpuset" {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(base.join(file))?;
                    std::fs::write(path.join(file), value.trim())
                        .with_context(|| format!("{}/{file}", path.display()))?;
                }
            }
        }
        Ok(())
    }

    fn start_containerd(&mut self, pause: &str) -> Result<()> {
        let cni = self.dir.join("cni");
        std::fs::create_dir_all(&cni)?;
        std::fs::write(cni.join("10-e2e.conflist"), cni_config(&self.dir))?;
        let config = self.dir.join("containerd.toml");
        std::fs::write(&config, containerd_config(&self.dir, &cni, pause))?;
        let mut cmd = Command::new(self.containerd_bin.join("containerd"));
        cmd.arg("--config").arg(&config);
        // The shim is found on PATH, runc too (Debian's, /usr/sbin).
        cmd.env("PATH", path_with(&self.containerd_bin));
        let mut proc = Proc::spawn("containerd", cmd, &self.dir.join("containerd.log"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            proc.check_alive()?;
            if self.ctr(&["version"]).is_ok() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "containerd did not answer within 30 s:\n{}",
                proc.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.containerd = Some(proc);
        Ok(())
    }

    fn import(&self, images: &Images) -> Result<()> {
        for (archive, reference) in &images.archives {
            self.ctr(&["images", "import", &archive.display().to_string()])
                .with_context(|| format!("importing {reference}"))?;
        }
        let listed = self.ctr(&["images", "list", "-q"])?;
        for (_, reference) in &images.archives {
            ensure!(
                listed.lines().any(|l| l == reference),
                "{reference} is not among the imported images: {listed}"
            );
        }
        Ok(())
    }

    /// `ctr -n k8s.io …` (the CRI's namespace); its stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        let args: Vec<&str> = ["-n", "k8s.io"].iter().chain(args).copied().collect();
        sandbox::output(self.containerd_bin.join("ctr"), &args)
    }

    fn start_kubelet(&mut self, bin: &Path, ca: &Ca, cp: &ControlPlane) -> Result<()> {
        let pki_dir = self.dir.join("pki");
        std::fs::create_dir_all(&pki_dir)?;
        ca.issue(
            &pki_dir,
            "kubelet",
            &format!("system:node:{NODE_NAME}"),
            Usage::Client {
                organization: "system:nodes",
            },
        )?;
        let kubeconfig = self.dir.join("kubelet.kubeconfig");
        pki::write(
            &kubeconfig,
            &cluster::kubeconfig(
                &cp.server,
                &cp.ca_file,
                Credentials::Cert {
                    cert: &pki_dir.join("kubelet.crt"),
                    key: &pki_dir.join("kubelet.key"),
                },
            ),
        )?;
        let config = self.dir.join("kubelet.yaml");
        std::fs::write(&config, kubelet_config(&cp.ca_file, &self.cgroup))?;
        let mut cmd = Command::new(bin);
        cmd.arg("kubelet")
            .arg(format!("--config={}", config.display()))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--root-dir={}", self.dir.join("kubelet").display()))
            .arg(format!(
                "--cert-dir={}",
                self.dir.join("kubelet-pki").display()
            ))
            .arg(format!("--hostname-override={NODE_NAME}"))
            .arg(format!("--node-ip={NODE_IP}"))
            .arg("--v=1");
        self.kubelet = Some(Proc::spawn("kubelet", cmd, &self.dir.join("kubelet.log"))?);
        Ok(())
    }

    pub fn check_alive(&mut self) -> Result<()> {
        for proc in [&mut self.containerd, &mut self.kubelet]
            .into_iter()
            .flatten()
        {
            proc.check_alive()?;
        }
        Ok(())
    }

    /// Stops the kubelet, every container and containerd, and removes the
    /// cgroup root: after it, nothing of the node is left.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.stop(libc::SIGTERM, Duration::from_secs(20))?;
        }
        // Every container process lives below the cgroup root: kill until
        // it is empty (a dying process may fork once more).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pids = self.cgroup_pids();
            if pids.is_empty() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "processes still in the node's cgroups after 30 s: {pids:?}"
            );
            for pid in pids {
                // SAFETY: kill(2) on a pid read from our own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(mut containerd) = self.containerd.take() {
            containerd.stop(libc::SIGTERM, Duration::from_secs(20))?;
        }
        // The shims outlive containerd by design; in the run's PID namespace
        // they are ours alone.
        for pid in processes_named("containerd-shim") {
            // SAFETY: kill(2) on a shim of this run's namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        self.remove_cgroups()
    }

    fn cgroup_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for h in CGROUP_HIERARCHIES {
            let root = Path::new("/sys/fs/cgroup").join(h).join(&self.cgroup);
            walk(&root, &mut |dir| {
                if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                    pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
                }
            });
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    fn remove_cgroups(&self) -> Result<()> {
        let mut failed = Vec::new();
        for h in CGROUP_HIERARCHIES {
            let root = Path::new("/sys/fs/cgroup").join(h).join(&self.cgroup);
            if !root.exists() {
                continue;
            }
            let mut dirs = Vec::new();
            walk(&root, &mut |dir| dirs.push(dir.to_path_buf()));
            // Deepest first.
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for dir in dirs {
                if let Err(e) = std::fs::remove_dir(&dir) {
                    failed.push(format!("{}: {e}", dir.display()));
                }
            }
        }
        ensure!(failed.is_empty(), "cgroups not removed: {failed:?}");
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("e2e: stopping the node: {e:#}");
        }
    }
}

/// Calls `f` on `dir` and every directory below it.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    if !dir.is_dir() {
        return;
    }
    f(dir);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), f);
            }
        }
    }
}

fn processes_named(prefix: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim().starts_with(prefix))
        })
        .collect()
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        dir.display()
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A bridge with NAT off (nothing leaves the namespace anyway) and the MTU
/// the pods must see; host-local keeps its leases in the run's directory.
fn cni_config(dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "e2e",
        "plugins": [{
            "type": "bridge",
            "bridge": "e2e-cni0",
            "isGateway": true,
            "ipMasq": false,
            "mtu": POD_MTU,
            "ipam": {
                "type": "host-local",
                "dataDir": dir.join("cni-ipam").display().to_string(),
                "ranges": [[{"subnet": POD_SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }]
    })
    .to_string()
}

fn containerd_config(dir: &Path, cni: &Path, pause: &str) -> String {
    format!(
        r#"version = 3
root = "{root}"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: without this runc fails every sandbox
  # with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{cni}"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    SystemdCgroup = false
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "{pause}"
"#,
        root = dir.join("containerd").display(),
        cni = cni.display(),
    )
}

fn kubelet_config(ca: &Path, cgroup: &str) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 without systemd (1.35+ refuses v1 unless told).
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
failSwapOn: false
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: "{ca}"}}
authorization: {{mode: AlwaysAllow}}
registerNode: true
resolvConf: ""
# Nothing can be pulled again: never collect the imported images.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "100Mi", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}}
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
"#,
        ca = ca.display(),
    )
}
