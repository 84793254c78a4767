//! `dind-injector certs`: a dev CA and a serving certificate, for `make run`,
//! tests and local clusters. Production certificates come from cert-manager
//! or the Helm chart.

use std::path::PathBuf;

use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for ca.crt, ca.key, tls.crt, tls.key. An existing CA there is
    /// kept, so running again issues a new serving certificate from the same CA.
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// Extra DNS names or IPs for the serving certificate (repeatable), e.g.
    /// dind-injector.dind-injector.svc.
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
    /// Validity of the serving certificate in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Also a client certificate for NAME (client.crt, client.key), for
    /// `serve --client-ca DIR/ca.crt`.
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let sans = crate::webhook::pki::write_dev_certs(&args.out, &args.sans, args.days)?;
    eprintln!(
        "wrote {dir}/ca.crt (dev CA) and {dir}/tls.crt, {dir}/tls.key for {}",
        sans.join(", "),
        dir = args.out.display()
    );
    if let Some(name) = &args.client {
        crate::webhook::pki::write_client_cert(&args.out, name, args.days)?;
        eprintln!(
            "wrote {dir}/client.crt, {dir}/client.key for {name}",
            dir = args.out.display()
        );
    }
    Ok(())
}
