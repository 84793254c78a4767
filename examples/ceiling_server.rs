//! The ceiling for `make bench`'s load test (benches/load.sh): the same TLS stack as the
//! webhook (rustls with ring, hyper's HTTP/1.1 + HTTP/2) answering every
//! request with one fixed AdmissionReview. No routing, no limits, no engine:
//! whatever this serves per second is as fast as this machine can go.
//!
//! Usage: ceiling_server ADDR CERT KEY RESPONSE_FILE

mod common;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, cert, key, answer] = args.as_slice() else {
        anyhow::bail!("usage: ceiling_server ADDR CERT KEY RESPONSE_FILE");
    };
    let acceptor = common::tls_acceptor(cert, key)?;
    let answer = Bytes::from(std::fs::read(answer)?);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening ceiling=https://{}/", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, answer) = (acceptor.clone(), answer.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move {
                        // Read the body, as any real endpoint must.
                        let _ = req.into_body().collect().await;
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(answer))
                    }
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
