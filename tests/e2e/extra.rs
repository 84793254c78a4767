//! A second mutating webhook, as another team's would be: it adds a
//! container to pods labelled `e2e-extra=true`. Registered after ours with
//! `reinvocationPolicy: IfNeeded`, it changes the pod after we injected, which
//! is what makes the apiserver call our webhook a second time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub const CONTAINER: &str = "e2e-extra";
pub const LABEL: &str = "e2e-extra";

pub struct Extra {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
}

impl Extra {
    /// Serves with `<dir>/extra.crt` and `.key` until the runtime ends.
    pub async fn start(dir: &Path) -> Result<Extra> {
        let certs =
            CertificateDer::pem_file_iter(dir.join("extra.crt"))?.collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(dir.join("extra.key"))?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, counter) = (acceptor.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let counter = counter.clone();
                        async move { Ok::<_, Infallible>(answer(req, &counter).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Extra { addr, calls })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn answer(req: Request<Incoming>, calls: &AtomicUsize) -> Response<Full<Bytes>> {
    calls.fetch_add(1, Ordering::SeqCst);
    let review = match review(req).await {
        Ok(v) => v,
        Err(e) => {
            return Response::builder()
                .status(400)
                .body(Full::new(Bytes::from(format!("{e:#}"))))
                .unwrap_or_default()
        }
    };
    let pod = &review["request"]["object"];
    let has_it = pod["spec"]["containers"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["name"] == CONTAINER));
    let mut response = json!({"uid": review["request"]["uid"], "allowed": true});
    if !has_it {
        let patch = json!([{
            "op": "add",
            "path": "/spec/containers/-",
            "value": {"name": CONTAINER, "image": "busybox:1.37", "command": ["sleep", "infinity"]}
        }]);
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
    }
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

async fn review(req: Request<Incoming>) -> Result<Value> {
    let body = req.into_body().collect().await?.to_bytes();
    serde_json::from_slice(&body).context("AdmissionReview JSON")
}
