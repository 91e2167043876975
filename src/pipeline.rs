//! The generator pipeline in one call: load → validate → plan → render, as every command that
//! produces files (render, diff, apply) runs it.

use std::path::Path;

use crate::plan::Plan;
use crate::render::{Artifact, Templates};
use crate::validate::Outcome;

/// Everything one run of the generator produced.
pub struct Generated {
    pub outcome: Outcome,
    /// `None` when a platform file is invalid.
    pub plan: Option<Plan>,
    /// Rendered files of every valid project (empty when `plan` is `None`).
    pub artifacts: Vec<Artifact>,
    /// Every project folder found, valid or not.
    pub project_names: Vec<String>,
    /// What was read (kept so that callers decide when to free it).
    pub tree: crate::load::Tree,
}

/// Runs the generator over `root`.
pub fn generate(root: &Path) -> anyhow::Result<Generated> {
    let started = std::time::Instant::now();
    let tree = crate::load::load(root)?;
    tracing::info!(
        projects = tree.projects.len(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "loaded"
    );
    let outcome =
        crate::validate::validate(&tree, &|name| crate::output::last_good::load(root, name));
    tracing::info!(
        errors = outcome.diagnostics.len(),
        broken = outcome.broken.len(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "validated"
    );
    let project_names: Vec<String> = tree.projects.iter().map(|p| p.name.clone()).collect();
    let Some(validated) = &outcome.validated else {
        return Ok(Generated {
            outcome,
            plan: None,
            artifacts: Vec::new(),
            project_names,
            tree,
        });
    };
    let plan = crate::plan::build(validated);
    let templates = Templates::load(root)?;
    let artifacts = crate::render::render(&plan, &templates)?;
    tracing::info!(
        artifacts = artifacts.len(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "rendered"
    );
    Ok(Generated {
        outcome,
        plan: Some(plan),
        artifacts,
        project_names,
        tree,
    })
}

impl Generated {
    /// Records the projects that validated from their own files as their last good
    /// configuration; call after their artifacts were written.
    pub fn save_last_good(&self, root: &Path) -> std::io::Result<()> {
        let Some(validated) = &self.outcome.validated else {
            return Ok(());
        };
        let own: Vec<&crate::validate::ValidProject> = validated
            .projects
            .iter()
            .filter(|p| !self.outcome.kept.contains(&p.name))
            .collect();
        crate::output::last_good::save(root, &own, &self.project_names)
    }
}
