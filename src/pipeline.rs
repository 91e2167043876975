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
}

/// Runs the generator over `root`.
pub fn generate(root: &Path) -> anyhow::Result<Generated> {
    let tree = crate::load::load(root)?;
    let outcome = crate::validate::validate(&tree);
    let Some(validated) = &outcome.validated else {
        return Ok(Generated {
            outcome,
            plan: None,
            artifacts: Vec::new(),
        });
    };
    let plan = crate::plan::build(validated);
    let templates = Templates::load(root)?;
    let artifacts = crate::render::render(&plan, &templates)?;
    Ok(Generated {
        outcome,
        plan: Some(plan),
        artifacts,
    })
}
