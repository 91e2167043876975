//! Deploy: bring rendered stacks up through the Docker API with zero-downtime rollouts.
