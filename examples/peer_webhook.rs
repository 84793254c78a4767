//! The peer baseline for `make bench-load` (benches/load.sh): a mutating
//! webhook written the way a typical kube-rs webhook is (kube-rs's own
//! `admission_controller` example): kube-core's `AdmissionReview` over
//! `DynamicObject`, axum's `Json` extractor, one JSON Patch operation (a
//! label), one log line per request. Served over the same TLS stack as the
//! webhook and the ceiling (rustls with ring, hyper's HTTP/1.1 + HTTP/2), so
//! the comparison measures the request path alone.
//!
//! Usage: peer_webhook ADDR CERT KEY
//! Built with `--features peer` (kube-core's admission types, axum's Json).

mod common;

use axum::routing::post;
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use json_patch::{AddOperation, Patch, PatchOperation};
use jsonptr::PointerBuf;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use kube::ResourceExt;

async fn mutate(
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(e) => return Json(AdmissionResponse::invalid(e.to_string()).into_review()),
    };
    let mut response = AdmissionResponse::from(&request);
    if let Some(object) = &request.object {
        let name = object.name_any();
        let label = PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "labels", "peer-webhook"]),
            value: serde_json::json!("seen"),
        });
        response = match response.clone().with_patch(Patch(vec![label])) {
            Ok(patched) => {
                tracing::info!(uid = %request.uid, "accepted: {:?} on Pod {name}", request.operation);
                patched
            }
            Err(e) => {
                tracing::warn!(uid = %request.uid, "denied: {e}");
                response.deny(e.to_string())
            }
        };
    }
    Json(response.into_review())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, cert, key] = args.as_slice() else {
        anyhow::bail!("usage: peer_webhook ADDR CERT KEY");
    };
    let acceptor = common::tls_acceptor(cert, key)?;
    let app = Router::new().route("/mutate", post(mutate));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening peer=https://{}/", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                .await;
        });
    }
}
