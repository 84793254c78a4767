//! The control plane: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler from the one `controlplane` executable
//! (tests/e2e/controlplane), on 127.0.0.1 with ephemeral ports and the run's
//! own directory. The node that runs the pods is node.rs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use crate::pki::{self, Ca, Usage};
use crate::procs::{free_port, Proc};

pub struct ControlPlane {
    pub server: String,
    pub ca_file: PathBuf,
    /// The certificate and key the apiserver presents to webhooks (its
    /// AdmissionConfiguration's kubeConfigFile), issued by `ca_file`.
    pub webhook_client: (PathBuf, PathBuf),
    // Stopped in reverse order of start by Drop (fields drop in order).
    scheduler: Proc,
    kcm: Proc,
    apiserver: Proc,
    etcd: Proc,
}

/// How a kubeconfig user authenticates.
pub enum Credentials<'a> {
    Cert { cert: &'a Path, key: &'a Path },
    Token(&'a str),
}

pub fn kubeconfig(server: &str, ca: &Path, user: Credentials) -> String {
    let user = match user {
        Credentials::Cert { cert, key } => format!(
            "client-certificate: {}\n    client-key: {}",
            cert.display(),
            key.display()
        ),
        Credentials::Token(token) => format!("token: {token}"),
    };
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: e2e
  user:
    {user}
contexts:
- name: e2e
  context:
    cluster: e2e
    user: e2e
current-context: e2e
",
        ca = ca.display()
    )
}

pub async fn client_from(path: &Path) -> Result<Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("kubeconfig")?;
    Ok(Client::try_from(config)?)
}

/// `controlplane <component> --version`, trimmed to its first line.
pub fn component_version(bin: &Path, component: &str) -> Result<String> {
    let out = Command::new(bin)
        .args([component, "--version"])
        .output()
        .with_context(|| format!("running {} {component} --version", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

impl ControlPlane {
    /// Starts everything and returns once the apiserver is ready and the
    /// controller-manager has created the `default` ServiceAccount.
    pub async fn start(bin: &Path, dir: &Path, ca: &Ca) -> Result<(ControlPlane, Client)> {
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(&pki_dir)?;
        let ca_file = pki_dir.join("ca.crt");
        pki::write(&ca_file, &ca.cert_pem)?;
        ca.issue(
            &pki_dir,
            "apiserver",
            "kube-apiserver",
            Usage::Server {
                sans: &["127.0.0.1", "localhost", "kubernetes.default.svc"],
            },
        )?;
        ca.issue(
            &pki_dir,
            "admin",
            "e2e-admin",
            Usage::Client {
                organization: "system:masters",
            },
        )?;
        ca.issue(
            &pki_dir,
            "controller-manager",
            "system:kube-controller-manager",
            Usage::Client {
                organization: "system:kube-controller-manager",
            },
        )?;
        ca.issue(
            &pki_dir,
            "scheduler",
            "system:kube-scheduler",
            Usage::Client {
                organization: "system:kube-scheduler",
            },
        )?;
        // The apiserver's identity towards kubelets (logs, exec).
        ca.issue(
            &pki_dir,
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            Usage::Client {
                organization: "system:masters",
            },
        )?;
        // The apiserver's identity towards webhooks: the injector runs with
        // --client-ca, so every scenario's review goes through it.
        ca.issue(
            &pki_dir,
            "apiserver-webhook-client",
            "kube-apiserver-webhook-client",
            Usage::Client {
                organization: "kube-apiserver",
            },
        )?;
        pki::service_account_keys(&pki_dir)?;
        let p = |name: &str| pki_dir.join(name).display().to_string();
        let admission_config = webhook_client_config(&pki_dir)?;

        let (client_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd = Command::new(bin);
        etcd.arg("etcd").args([
            "--name=e2e",
            &format!("--data-dir={}", dir.join("etcd").display()),
            &format!("--listen-client-urls={client_url}"),
            &format!("--advertise-client-urls={client_url}"),
            &format!("--listen-peer-urls={peer_url}"),
            &format!("--initial-advertise-peer-urls={peer_url}"),
            &format!("--initial-cluster=e2e={peer_url}"),
            "--log-level=warn",
            // Throw-away data: no fsync, the tests are I/O-bound otherwise.
            "--unsafe-no-fsync",
        ]);
        let mut etcd = Proc::spawn("etcd", etcd, &dir.join("etcd.log"))?;

        let server = format!("https://127.0.0.1:{api_port}");
        let mut api = Command::new(bin);
        api.arg("kube-apiserver").args([
            &format!("--etcd-servers={client_url}"),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            &format!("--secure-port={api_port}"),
            &format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            &format!("--tls-cert-file={}", p("apiserver.crt")),
            &format!("--tls-private-key-file={}", p("apiserver.key")),
            &format!("--client-ca-file={}", p("ca.crt")),
            // Node: the kubelet reads its pods and their secrets, mints
            // service-account tokens.
            "--authorization-mode=Node,RBAC",
            // The node's address, never a DNS lookup of its name.
            "--kubelet-preferred-address-types=InternalIP",
            &format!(
                "--kubelet-client-certificate={}",
                p("apiserver-kubelet-client.crt")
            ),
            &format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")),
            "--enable-admission-plugins=MutatingAdmissionWebhook",
            &format!(
                "--admission-control-config-file={}",
                admission_config.display()
            ),
            // dind is privileged: real clusters that run it allow that.
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            &format!("--service-account-key-file={}", p("sa.pub")),
            &format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/24",
            // No kube-proxy: a webhook behind a Service (the Helm journey)
            // is reached at its endpoints, the pods' addresses.
            "--enable-aggregator-routing=true",
            // The `kubernetes` Service's endpoints may not be loopback.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]);
        let mut apiserver = Proc::spawn("kube-apiserver", api, &dir.join("apiserver.log"))?;

        let admin_kubeconfig = dir.join("admin.kubeconfig");
        let kcm_kubeconfig = dir.join("controller-manager.kubeconfig");
        let (admin_crt, admin_key) = (pki_dir.join("admin.crt"), pki_dir.join("admin.key"));
        let (kcm_crt, kcm_key) = (
            pki_dir.join("controller-manager.crt"),
            pki_dir.join("controller-manager.key"),
        );
        pki::write(
            &admin_kubeconfig,
            &kubeconfig(
                &server,
                &ca_file,
                Credentials::Cert {
                    cert: &admin_crt,
                    key: &admin_key,
                },
            ),
        )?;
        pki::write(
            &kcm_kubeconfig,
            &kubeconfig(
                &server,
                &ca_file,
                Credentials::Cert {
                    cert: &kcm_crt,
                    key: &kcm_key,
                },
            ),
        )?;
        let scheduler_kubeconfig = dir.join("scheduler.kubeconfig");
        pki::write(
            &scheduler_kubeconfig,
            &kubeconfig(
                &server,
                &ca_file,
                Credentials::Cert {
                    cert: &pki_dir.join("scheduler.crt"),
                    key: &pki_dir.join("scheduler.key"),
                },
            ),
        )?;
        let client = client_from(&admin_kubeconfig).await?;

        wait_until(
            "kube-apiserver /readyz",
            &mut [&mut etcd, &mut apiserver],
            || {
                let client = client.clone();
                async move {
                    let request = http::Request::get("/readyz").body(Vec::new())?;
                    Ok(client.request_text(request).await? == "ok")
                }
            },
        )
        .await?;

        let mut kcm = Command::new(bin);
        kcm.arg("kube-controller-manager").args([
            &format!("--kubeconfig={}", kcm_kubeconfig.display()),
            &format!("--authentication-kubeconfig={}", kcm_kubeconfig.display()),
            &format!("--authorization-kubeconfig={}", kcm_kubeconfig.display()),
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            &format!("--secure-port={}", free_port()?),
            &format!("--cert-dir={}", dir.join("kcm-certs").display()),
            // Pods get their service-account credentials from controllers
            // of their own, as on a real cluster.
            "--use-service-account-credentials=true",
            &format!("--service-account-private-key-file={}", p("sa.key")),
            &format!("--root-ca-file={}", p("ca.crt")),
        ]);
        let mut kcm = Proc::spawn(
            "kube-controller-manager",
            kcm,
            &dir.join("controller-manager.log"),
        )?;

        let mut scheduler = Command::new(bin);
        scheduler.arg("kube-scheduler").args([
            &format!("--kubeconfig={}", scheduler_kubeconfig.display()),
            &format!(
                "--authentication-kubeconfig={}",
                scheduler_kubeconfig.display()
            ),
            &format!(
                "--authorization-kubeconfig={}",
                scheduler_kubeconfig.display()
            ),
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            &format!("--secure-port={}", free_port()?),
        ]);
        let mut scheduler = Proc::spawn("kube-scheduler", scheduler, &dir.join("scheduler.log"))?;

        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        wait_until(
            "kube-controller-manager creating the default ServiceAccount",
            &mut [&mut etcd, &mut apiserver, &mut kcm, &mut scheduler],
            || {
                let accounts = accounts.clone();
                async move { Ok(accounts.get_opt("default").await?.is_some()) }
            },
        )
        .await?;

        Ok((
            ControlPlane {
                server,
                webhook_client: (
                    pki_dir.join("apiserver-webhook-client.crt"),
                    pki_dir.join("apiserver-webhook-client.key"),
                ),
                ca_file,
                scheduler,
                kcm,
                apiserver,
                etcd,
            },
            client,
        ))
    }

    /// Fails with the log of whichever component has died.
    pub fn check_alive(&mut self) -> Result<()> {
        self.etcd.check_alive()?;
        self.apiserver.check_alive()?;
        self.kcm.check_alive()?;
        self.scheduler.check_alive()
    }
}

/// Polls `ready` until it says yes; fails at once, with its log, when one of
/// `procs` dies, and after two minutes (a cold start takes seconds).
async fn wait_until<F, Fut>(what: &str, procs: &mut [&mut Proc], mut ready: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::from("no answer yet");
    loop {
        for proc in procs.iter_mut() {
            proc.check_alive()
                .with_context(|| format!("waiting for {what}"))?;
        }
        match ready().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = procs
                .iter()
                .map(|p| format!("{} log:\n{}", p.name, p.log_tail(20)))
                .collect();
            bail!(
                "{what}: not within 120 s (last: {last})\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The AdmissionConfiguration that makes the apiserver present
/// `apiserver-webhook-client` to every webhook that asks (`*`), as an
/// operator would for `serve --client-ca`; returns its path.
fn webhook_client_config(pki_dir: &Path) -> Result<PathBuf> {
    let kubeconfig = pki_dir.join("webhook-client.kubeconfig");
    pki::write(
        &kubeconfig,
        &format!(
            "apiVersion: v1\nkind: Config\nusers:\n- name: '*'\n  user:\n    \
             client-certificate: {}\n    client-key: {}\n",
            pki_dir.join("apiserver-webhook-client.crt").display(),
            pki_dir.join("apiserver-webhook-client.key").display()
        ),
    )?;
    let config = pki_dir.join("admission.yaml");
    let plugin = |name: &str| {
        format!(
            "- name: {name}\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    \
             kind: WebhookAdmissionConfiguration\n    kubeConfigFile: {}\n",
            kubeconfig.display()
        )
    };
    pki::write(
        &config,
        &format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n{}{}",
            plugin("MutatingAdmissionWebhook"),
            plugin("ValidatingAdmissionWebhook")
        ),
    )?;
    Ok(config)
}
