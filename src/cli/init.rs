//! `itsup init` (scaffold a root) and `itsup create NAME` (scaffold a project). Files start with
//! a `yaml-language-server` line pointing at schemas written beside them, so editors complete
//! and check fields.

use std::path::Path;

use super::Global;
use super::schema::{Which, schema_text};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Domain of the Traefik dashboard (left out when not given).
    #[arg(long)]
    pub dashboard_domain: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Project name (a DNS label).
    pub name: String,
    /// Domain routed to the project's service.
    #[arg(long)]
    pub domain: String,
    /// Image of the service.
    #[arg(long, default_value = "nginx:alpine")]
    pub image: String,
    /// Port the service listens on.
    #[arg(long, default_value_t = 80)]
    pub port: u16,
}

const SCHEMA_DIR: &str = "projects/.schemas";

fn write_new(path: &Path, text: &str) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    crate::atomic::write(path, text.as_bytes())?;
    Ok(true)
}

fn write_schemas(root: &Path) -> anyhow::Result<()> {
    let dir = root.join(SCHEMA_DIR);
    std::fs::create_dir_all(&dir)?;
    for (which, name) in [
        (Which::Itsup, "itsup.schema.json"),
        (Which::Project, "project.schema.json"),
    ] {
        let path = dir.join(name);
        let text = schema_text(which)? + "\n";
        crate::atomic::write_if_changed(&path, text.as_bytes())?;
    }
    Ok(())
}

pub fn run_init(global: &Global, args: InitArgs) -> anyhow::Result<i32> {
    if let Some(d) = &args.dashboard_domain
        && let Some(p) = crate::validate::names::domain_problem(d)
    {
        anyhow::bail!("--dashboard-domain: {p}");
    }
    let root = &global.root;
    write_schemas(root)?;
    let dashboard = args
        .dashboard_domain
        .map(|d| format!("traefikDomain: {d}\n"))
        .unwrap_or_else(|| {
            "# traefikDomain: traefik.example.com  # dashboard, behind basic auth\n".into()
        });
    let itsup = format!(
        "# yaml-language-server: $schema=.schemas/itsup.schema.json\n{dashboard}proxy:\n  engine: traefik\nacme:\n  staging: false\n"
    );
    let created = write_new(&root.join("projects/itsup.yml"), &itsup)?;
    write_new(
        &root.join("projects/traefik.yml"),
        "# Native Traefik static configuration, deep-merged over the generated traefik.yml.\n",
    )?;
    write_new(
        &root.join("projects/middlewares.yml"),
        "# Native Traefik dynamic configuration, deep-merged over the generated middlewares.yml.\n# http:\n#   middlewares:\n#     my-headers:\n#       headers:\n#         frameDeny: true\n",
    )?;
    if !global.quiet {
        println!(
            "{} {}",
            if created {
                "initialised"
            } else {
                "schemas refreshed in"
            },
            root.join("projects").display()
        );
    }
    Ok(0)
}

pub fn run_create(global: &Global, args: CreateArgs) -> anyhow::Result<i32> {
    if let Some(p) = crate::validate::names::project_name_problem(&args.name) {
        anyhow::bail!("{p}");
    }
    if let Some(p) = crate::validate::names::domain_problem(&args.domain) {
        anyhow::bail!("--domain: {p}");
    }
    let root = &global.root;
    let dir = root.join("projects").join(&args.name);
    if dir.exists() {
        anyhow::bail!("{} already exists", dir.display());
    }
    write_schemas(root)?;
    let service = "web";
    write_new(
        &dir.join("ingress.yml"),
        &format!(
            "# yaml-language-server: $schema=../.schemas/project.schema.json\nenabled: true\ningress:\n  - service: {service}\n    domain: {}\n    port: {}\n",
            args.domain, args.port
        ),
    )?;
    write_new(
        &dir.join("docker-compose.yml"),
        &format!(
            "services:\n  {service}:\n    image: {}\n    restart: unless-stopped\n",
            args.image
        ),
    )?;
    if !global.quiet {
        println!("created {}", dir.display());
    }
    Ok(0)
}
