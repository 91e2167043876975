//! `itsup hosts`: writes the host names `itsup watch` routes into a managed block of a hosts
//! file, for systems whose resolver does not send `*.localhost` to the loopback address.

use std::path::PathBuf;

use anyhow::Context;

use crate::watch::{discovery, hosts, routes};

/// Arguments of `itsup hosts`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Hosts file to update.
    #[arg(long, default_value = "/etc/hosts")]
    pub file: PathBuf,
    /// Address the names resolve to (where HAProxy listens).
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
    /// Docker network shared by HAProxy and the routed containers (as for `itsup watch`).
    #[arg(long, env = "ITSUP_WATCH_NETWORK", default_value = "proxy")]
    pub network: String,
    /// Suffix of inferred host names (as for `itsup watch`).
    #[arg(long, default_value = ".localhost")]
    pub suffix: String,
    /// Remove the managed block instead of writing the current names.
    #[arg(long)]
    pub remove: bool,
}

/// Scans Docker the way the watcher does and writes what it would route.
pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.address.parse::<std::net::IpAddr>().is_err() {
        anyhow::bail!("--address `{}` is not an IP address", args.address);
    }
    let names = if args.remove {
        Vec::new()
    } else {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let containers = runtime.block_on(async {
            let docker = discovery::connect().await?;
            discovery::scan(&docker, &args.network).await
        })?;
        // Ports do not change which names are routed.
        let opts = routes::Options {
            suffix: crate::watch::normalize_suffix(&args.suffix),
            http_port: 80,
            https_port: 443,
            network: args.network.clone(),
        };
        let (_, outcome) = routes::build(&containers, &opts);
        for p in &outcome.problems {
            eprintln!("warning: container {}: {}", p.container, p.message);
        }
        let mut names: Vec<String> = outcome.routes.into_iter().map(|r| r.host).collect();
        names.sort();
        names.dedup();
        names
    };
    let changed = hosts::write(&args.file, &args.address, &names)?;
    let state = if changed {
        "updated"
    } else {
        "already up to date"
    };
    println!(
        "{}: {state} ({} host names)",
        args.file.display(),
        names.len()
    );
    Ok(0)
}
