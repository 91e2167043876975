//! Validate: schema + semantic rules over a loaded tree, reporting every error at once.
//!
//! Platform files (`itsup.yml`, `traefik.yml`, `middlewares.yml`) must be valid for anything to
//! render. Projects fail one by one: a broken project is reported and left out, the others
//! go on to the Plan.

mod acme;
mod dns;
mod global;
mod go_template;
pub mod middlewares_itsup;
pub mod names;
mod rules;
mod schema;
mod swarm;

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use ipnet::Ipv4Net;
use rayon::prelude::*;
use serde_json::{Map, Value};

pub use crate::diagnostic::Diagnostic;
pub use schema::{SchemaCheck, suggest};

use crate::load::{ProjectSource, Source, Tree};
use crate::model::{ItsupConfig, ProjectFile, schema_of};
use crate::yaml::Pos;

/// A project that passed every rule.
#[derive(Debug, Clone)]
pub struct ValidProject {
    pub name: String,
    pub file: ProjectFile,
    pub compose: Option<Map<String, Value>>,
}

/// Each project's name with its compose file, as `model::resolve_egress` looks providers up.
pub(crate) fn compose_files(
    projects: &[ValidProject],
) -> impl Iterator<Item = (&str, Option<&Map<String, Value>>)> {
    projects
        .iter()
        .map(|p| (p.name.as_str(), p.compose.as_ref()))
}

/// What the Plan is built from.
#[derive(Debug, Clone)]
pub struct Validated {
    pub config: ItsupConfig,
    /// Valid projects, sorted by name.
    pub projects: Vec<ValidProject>,
    pub traefik_overrides: Option<Value>,
    pub middleware_overrides: Option<Value>,
    /// The PEM text of `acme.caBundle`, read and checked.
    pub acme_ca_pem: Option<String>,
}

/// The result of validation.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `None` when a platform file is invalid: nothing can be rendered then.
    pub validated: Option<Validated>,
    /// Every error, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// Projects left out because of errors.
    pub broken: BTreeSet<String>,
    /// Broken projects still routed with their last good configuration.
    pub kept: BTreeSet<String>,
}

impl Outcome {
    pub fn is_valid(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

fn project_schema() -> &'static SchemaCheck {
    static CHECK: OnceLock<SchemaCheck> = OnceLock::new();
    CHECK.get_or_init(|| {
        SchemaCheck::new(schema_of::<ProjectFile>()).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn itsup_schema() -> &'static SchemaCheck {
    static CHECK: OnceLock<SchemaCheck> = OnceLock::new();
    CHECK.get_or_init(|| {
        SchemaCheck::new(schema_of::<ItsupConfig>()).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// Validates a loaded tree. `last_good` gives a broken project's last good configuration, if
/// one was recorded: the caller reads the snapshots (`output::last_good`), validation only
/// decides when one stands in.
pub fn validate(tree: &Tree, last_good: &dyn Fn(&str) -> Option<ValidProject>) -> Outcome {
    let mut diagnostics = tree.diagnostics.clone();
    let mut broken: BTreeSet<String> = tree
        .projects
        .iter()
        .filter(|p| p.broken)
        .map(|p| p.name.clone())
        .collect();

    let mut acme_ca_pem = None;
    let config = platform_config(tree, &mut diagnostics, &mut acme_ca_pem);
    let traefik_overrides = mapping_file(tree.traefik.as_ref(), &mut diagnostics);
    let middleware_overrides = mapping_file(tree.middlewares.as_ref(), &mut diagnostics);
    if let Some(src) = tree
        .middlewares
        .as_ref()
        .filter(|_| middleware_overrides.is_some())
    {
        go_template::check(src, &mut diagnostics);
        if config
            .as_ref()
            .is_some_and(|c| c.proxy.engine == crate::model::Engine::Itsup)
        {
            middlewares_itsup::check(src, &mut diagnostics);
        }
    }
    let subnet: Option<Ipv4Net> = config.as_ref().and_then(|c| c.proxy.subnet.parse().ok());
    let middleware_names: Vec<String> = middleware_overrides
        .as_ref()
        .and_then(|m| m.pointer("/http/middlewares"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    // Anything wrong with a platform file (read or checked) means nothing may be rendered.
    let platform_ok = !diagnostics.iter().any(|d| d.project.is_none());
    let config = config.unwrap_or_default();

    let all_names: BTreeSet<String> = tree.projects.iter().map(|p| p.name.clone()).collect();
    let mut valid: Vec<ValidProject> = Vec::new();
    let mut sources: HashMap<String, &Source> = HashMap::new();
    // Projects are independent until the cross-project rules: check them in parallel, merge in order.
    let checked: Vec<Checked> = tree
        .projects
        .par_iter()
        .map(|source| check_project(source, &config, subnet, &middleware_names))
        .collect();
    for (source, result) in tree.projects.iter().zip(checked) {
        diagnostics.extend(result.diagnostics);
        match result.project {
            Some(project) => {
                if let Some(file) = &source.file {
                    sources.insert(project.name.clone(), file);
                }
                valid.push(project);
            }
            None => {
                broken.insert(source.name.clone());
            }
        }
    }

    // A broken project keeps running as it last validated: its snapshot stands in for it.
    let mut kept: BTreeSet<String> = BTreeSet::new();
    for name in &broken {
        if tree.projects.iter().any(|p| &p.name == name)
            && let Some(snapshot) = last_good(name)
        {
            valid.push(snapshot);
            kept.insert(name.clone());
        }
    }
    valid.sort_by(|a, b| a.name.cmp(&b.name));

    // Cross-project rules can break further projects; repeat until no new conflict appears so
    // that a project left out never blocks another one's claim.
    loop {
        let conflicts = global::conflicts(&valid, &all_names, &config);
        if conflicts.is_empty() {
            break;
        }
        let mut newly: BTreeSet<String> = BTreeSet::new();
        for c in conflicts {
            if let Some(src) = sources.get(&c.project) {
                let key = c.pointer.starts_with("/egress");
                diagnostics.push(Diagnostic::new(
                    &src.path,
                    src.doc.pos(&c.pointer, !key),
                    Some(&c.project),
                    c.message,
                ));
            }
            newly.insert(c.project);
        }
        valid.retain(|p| !newly.contains(&p.name));
        kept.retain(|p| !newly.contains(p));
        broken.extend(newly);
    }

    diagnostics.sort();
    diagnostics.dedup();
    let validated = platform_ok.then(|| Validated {
        config,
        projects: valid,
        traefik_overrides,
        middleware_overrides,
        acme_ca_pem,
    });
    Outcome {
        validated,
        diagnostics,
        broken,
        kept,
    }
}

/// `itsup.yml` parsed and checked; `ca_pem` receives the text of `acme.caBundle`.
fn platform_config(
    tree: &Tree,
    diagnostics: &mut Vec<Diagnostic>,
    ca_pem: &mut Option<String>,
) -> Option<ItsupConfig> {
    let Some(src) = &tree.itsup else {
        return Some(ItsupConfig::default());
    };
    if src.doc.value.is_null() {
        return Some(ItsupConfig::default());
    }
    let violations = itsup_schema().check(&src.doc);
    if !violations.is_empty() {
        for v in violations {
            diagnostics.push(Diagnostic::new(&src.path, v.pos, None, v.message));
        }
        return None;
    }
    let config: ItsupConfig = match serde_json::from_value(src.doc.value.clone()) {
        Ok(c) => c,
        Err(e) => {
            diagnostics.push(Diagnostic::new(
                &src.path,
                Pos::default(),
                None,
                e.to_string(),
            ));
            return None;
        }
    };
    let mut ok = true;
    let mut fail = |pointer: &str, message: String| {
        diagnostics.push(Diagnostic::new(
            &src.path,
            src.doc.value_pos(pointer),
            None,
            message,
        ));
        ok = false;
    };
    if config.proxy.subnet.parse::<Ipv4Net>().is_err() {
        fail(
            "/proxy/subnet",
            format!(
                "`subnet` {:?} is not an IPv4 CIDR range",
                config.proxy.subnet
            ),
        );
    }
    for (pointer, message) in dns::problems(&config) {
        fail(&pointer, message);
    }
    for (pointer, message) in swarm::platform_problems(&config) {
        fail(&pointer, message);
    }
    if config.proxy.http_port == config.proxy.https_port {
        fail(
            "/proxy/httpsPort",
            "`httpPort` and `httpsPort` must differ".into(),
        );
    }
    if let Some(p) = names::label_problem(&config.proxy.network) {
        fail("/proxy/network", format!("`network`: {p}"));
    }
    if let Some(domain) = &config.traefik_domain
        && let Some(p) = names::domain_problem(domain)
    {
        fail("/traefikDomain", format!("`traefikDomain`: {p}"));
    }
    let (pem, problems) = acme::check(&tree.root, &config);
    for p in problems {
        fail(p.pointer, p.message);
    }
    *ca_pem = pem;
    ok.then_some(config)
}

/// A native Traefik override file must be a mapping (or empty).
fn mapping_file(src: Option<&Source>, diagnostics: &mut Vec<Diagnostic>) -> Option<Value> {
    let src = src?;
    match &src.doc.value {
        Value::Null => None,
        Value::Object(_) => Some(src.doc.value.clone()),
        _ => {
            diagnostics.push(Diagnostic::new(
                &src.path,
                Pos { line: 1, col: 1 },
                None,
                "must be a mapping of native Traefik configuration",
            ));
            None
        }
    }
}

/// One project's own checks.
struct Checked {
    diagnostics: Vec<Diagnostic>,
    project: Option<ValidProject>,
}

/// Schema and per-project rules of one project (no cross-project rules).
fn check_project(
    source: &ProjectSource,
    config: &ItsupConfig,
    subnet: Option<Ipv4Net>,
    middleware_names: &[String],
) -> Checked {
    let name = source.name.as_str();
    let mut diagnostics = Vec::new();
    let fail = |diagnostics: Vec<Diagnostic>| Checked {
        diagnostics,
        project: None,
    };
    let report = |diags: &mut Vec<Diagnostic>, file: &Source, at: Pos, message: String| {
        diags.push(Diagnostic::new(&file.path, at, Some(name), message));
    };
    if let Some(problem) = names::project_name_problem(name)
        .or_else(|| names::project_name_collision(name, &config.proxy.network))
    {
        diagnostics.push(Diagnostic::new(
            &source.file_path,
            Pos { line: 1, col: 1 },
            Some(name),
            problem,
        ));
        return fail(diagnostics);
    }
    let (Some(file_src), false) = (&source.file, source.broken) else {
        return fail(diagnostics);
    };
    // An empty file is a project with defaults: nothing routed yet.
    if !file_src.doc.value.is_null() {
        for v in project_schema().check(&file_src.doc) {
            report(&mut diagnostics, file_src, v.pos, v.message);
        }
    }
    if let Some(c) = &source.compose {
        for p in rules::compose_problems(&c.doc) {
            report(&mut diagnostics, c, c.doc.pos(&p.pointer, p.key), p.message);
        }
    }
    if !diagnostics.is_empty() {
        return fail(diagnostics);
    }
    let file: ProjectFile = if file_src.doc.value.is_null() {
        ProjectFile::default()
    } else {
        match serde_json::from_value(file_src.doc.value.clone()) {
            Ok(f) => f,
            Err(e) => {
                report(
                    &mut diagnostics,
                    file_src,
                    Pos { line: 1, col: 1 },
                    e.to_string(),
                );
                return fail(diagnostics);
            }
        }
    };
    let compose = source
        .compose
        .as_ref()
        .and_then(|c| c.doc.value.as_object().cloned());
    let mut problems =
        rules::project_problems(&file, compose.as_ref(), config, subnet, middleware_names);
    problems.extend(swarm::project_problems(&file, compose.as_ref(), config));
    for p in &problems {
        let src = match (&source.compose, p.in_compose) {
            (Some(c), true) => c,
            _ => file_src,
        };
        report(
            &mut diagnostics,
            src,
            src.doc.pos(&p.pointer, p.key),
            p.message.clone(),
        );
    }
    if !problems.is_empty() {
        return fail(diagnostics);
    }
    Checked {
        diagnostics,
        project: Some(ValidProject {
            name: name.to_string(),
            file,
            compose,
        }),
    }
}
