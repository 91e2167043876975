//! The action plan: desired state against running containers and the last applied state,
//! one action per stack and service. `apply --dry-run` prints it; `apply` executes exactly it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::desired::{
    Desired, DesiredService, DesiredStack, PROXY, PROXY_EDGE_HOLDER, PROXY_NAMESPACE_HOLDER,
    PROXY_SERVICE_HAPROXY, PROXY_SERVICE_TRAEFIK, hand_over_pair,
};
use super::docker::Observed;
use super::state::State;
use crate::model::{Engine, Rollout};

/// What happens to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing runs yet: bring it up.
    Create,
    /// Running and its hash matches: not touched.
    Unchanged,
    /// Start-first: new beside old, switch at the proxy, drain, stop the old.
    Rollout,
    /// Stop-first: stop the old, start the new (short downtime).
    Recreate,
    /// The project is disabled: stop its containers (they are kept).
    Stop,
    /// The project or service was removed: stop and remove its containers.
    Prune,
    /// The proxy's configuration changed: hitless reload.
    Reload,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Unchanged => "unchanged",
            Action::Rollout => "rollout",
            Action::Recreate => "recreate",
            Action::Stop => "stop",
            Action::Prune => "prune",
            Action::Reload => "reload",
        }
    }
}

/// One service's action.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceAction {
    pub service: String,
    pub action: Action,
    /// Why, in words (strategy reasons included).
    pub reason: String,
    /// The hash it will run with (empty for stop/prune).
    pub hash: String,
    /// Containers it acts on (old ones for rollout/recreate/stop/prune).
    #[serde(skip)]
    pub containers: Vec<Observed>,
    #[serde(skip)]
    pub desired: Option<DesiredService>,
}

/// The actions of one stack.
#[derive(Debug, Clone, Serialize)]
pub struct StackPlan {
    pub stack: String,
    pub compose_project: String,
    /// The whole project was removed from `projects/`.
    pub removed: bool,
    pub services: Vec<ServiceAction>,
    #[serde(skip)]
    pub desired: Option<DesiredStack>,
}

impl StackPlan {
    pub fn changes(&self) -> bool {
        self.services.iter().any(|s| s.action != Action::Unchanged)
    }
}

/// Builds the action plan. `observed` holds the containers labelled for this root only.
pub fn plan(
    desired: &Desired,
    observed: &[Observed],
    state: &State,
    targets: &[String],
) -> Vec<StackPlan> {
    let mut by_project: BTreeMap<&str, Vec<&Observed>> = BTreeMap::new();
    for o in observed {
        by_project.entry(o.project.as_str()).or_default().push(o);
    }
    let wanted = |name: &str| targets.is_empty() || targets.iter().any(|t| t == name);
    let mut out = Vec::new();

    if let Some(proxy) = &desired.proxy
        && wanted(PROXY)
    {
        let containers = by_project
            .get(proxy.compose_project.as_str())
            .cloned()
            .unwrap_or_default();
        let mut stack = stack_plan(proxy, &containers);
        let old_config = state.proxy.as_ref().and_then(|p| p.config.clone());
        let config_changed = desired.proxy_config.is_some() && desired.proxy_config != old_config;
        for s in stack.services.iter_mut().filter(|_| config_changed) {
            match (desired.engine, s.service.as_str(), s.action) {
                (Engine::Haproxy, PROXY_SERVICE_HAPROXY, Action::Unchanged) => {
                    s.action = Action::Reload;
                    s.reason =
                        "haproxy.cfg changed: hitless reload through the master socket".into();
                }
                (Engine::Haproxy, PROXY_SERVICE_HAPROXY, Action::Rollout) => {
                    s.reason = format!("{}; its new process reads the new haproxy.cfg", s.reason);
                }
                (Engine::Traefik, PROXY_SERVICE_TRAEFIK, Action::Recreate) => {
                    s.reason = format!(
                        "Traefik's static configuration changed (entrypoints); {}",
                        s.reason
                    );
                }
                (Engine::Traefik, PROXY_SERVICE_TRAEFIK, Action::Rollout) => {
                    s.reason = format!(
                        "Traefik's static configuration changed (entrypoints); {}",
                        s.reason
                    );
                }
                _ => {}
            }
        }
        if let Some((follower, holder)) = hand_over_pair(desired.engine) {
            follow_namespace_holder(&mut stack, holder, follower);
        }
        if desired.engine == Engine::Traefik {
            move_behind_the_edge(&mut stack);
        }
        out.push(stack);
    }
    for project in &desired.projects {
        if !wanted(&project.name) {
            continue;
        }
        let containers = by_project
            .get(project.compose_project.as_str())
            .cloned()
            .unwrap_or_default();
        out.push(stack_plan(project, &containers));
    }

    // Removed projects: known from the state file or from containers labelled for this root.
    let desired_names: BTreeSet<&str> = desired
        .projects
        .iter()
        .map(|p| p.compose_project.as_str())
        .chain(desired.proxy.iter().map(|p| p.compose_project.as_str()))
        .collect();
    let mut removed: BTreeSet<&str> = state.projects.keys().map(String::as_str).collect();
    removed.extend(by_project.keys().copied());
    for name in removed {
        if desired_names.contains(name) || !wanted(name) {
            continue;
        }
        let containers = by_project.get(name).cloned().unwrap_or_default();
        let mut services: BTreeMap<&str, Vec<Observed>> = BTreeMap::new();
        for c in &containers {
            services
                .entry(c.service.as_str())
                .or_default()
                .push((*c).clone());
        }
        if services.is_empty() {
            // Known from the state only and nothing left running: forget it quietly.
            out.push(StackPlan {
                stack: name.to_string(),
                compose_project: name.to_string(),
                removed: true,
                services: Vec::new(),
                desired: None,
            });
            continue;
        }
        out.push(StackPlan {
            stack: name.to_string(),
            compose_project: name.to_string(),
            removed: true,
            services: services
                .into_iter()
                .map(|(service, containers)| ServiceAction {
                    service: service.to_string(),
                    action: Action::Prune,
                    reason: "project removed from projects/".into(),
                    hash: String::new(),
                    containers,
                    desired: None,
                })
                .collect(),
            desired: None,
        });
    }
    out
}

fn stack_plan(stack: &DesiredStack, containers: &[&Observed]) -> StackPlan {
    let mut services = Vec::new();
    for d in &stack.services {
        let mine: Vec<Observed> = containers
            .iter()
            .filter(|c| c.service == d.name)
            .map(|c| (*c).clone())
            .collect();
        let running: Vec<&Observed> = mine.iter().filter(|c| c.running).collect();
        let (action, reason) = if !stack.enabled {
            if running.is_empty() {
                (
                    Action::Unchanged,
                    "project disabled, already stopped".to_string(),
                )
            } else {
                (Action::Stop, "project disabled".to_string())
            }
        } else if running.is_empty() {
            (Action::Create, "not running".to_string())
        } else if running
            .iter()
            .all(|c| c.hash.as_deref() == Some(d.hash.as_str()))
        {
            (Action::Unchanged, "hash matches".to_string())
        } else {
            let was = running
                .iter()
                .find_map(|c| c.hash.clone())
                .unwrap_or_else(|| "unlabelled".into());
            let strategy = match d.rollout.strategy {
                Rollout::StartFirst => Action::Rollout,
                Rollout::StopFirst => Action::Recreate,
            };
            let kind = match strategy {
                Action::Rollout => "start-first",
                _ => "stop-first",
            };
            (
                strategy,
                format!("changed ({was} → {}); {kind}: {}", d.hash, d.rollout.reason),
            )
        };
        let reason = if d.image_missing
            && matches!(action, Action::Create | Action::Rollout | Action::Recreate)
        {
            format!(
                "{reason}; image {} is not present locally (Compose will try to pull it)",
                d.image.as_deref().unwrap_or("?")
            )
        } else {
            reason
        };
        services.push(ServiceAction {
            service: d.name.clone(),
            action,
            reason,
            hash: d.hash.clone(),
            containers: mine,
            desired: Some(d.clone()),
        });
    }
    // Services that left the compose file.
    let known: BTreeSet<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
    let mut gone: BTreeMap<&str, Vec<Observed>> = BTreeMap::new();
    for c in containers
        .iter()
        .filter(|c| !known.contains(c.service.as_str()))
    {
        gone.entry(c.service.as_str())
            .or_default()
            .push((*c).clone());
    }
    for (service, containers) in gone {
        services.push(ServiceAction {
            service: service.to_string(),
            action: Action::Prune,
            reason: "service removed from the compose file".into(),
            hash: String::new(),
            containers,
            desired: None,
        });
    }
    StackPlan {
        stack: stack.name.clone(),
        compose_project: stack.compose_project.clone(),
        removed: false,
        services,
        desired: Some(stack.clone()),
    }
}

/// Egress networks of this root that no stack wants any more (their consumer/provider pair
/// went away: a project or an egress row was removed), to remove once the stacks ran, when
/// nothing is attached to them any more. Only on a full apply (with targets, stacks left out
/// may still use them), and never one that names a project with invalid input (it is missing
/// from `desired` but left exactly as it runs).
pub fn stale_networks(
    desired: &Desired,
    existing: &[String],
    broken: &BTreeSet<String>,
    targets: &[String],
) -> Vec<String> {
    if !targets.is_empty() {
        return Vec::new();
    }
    let wanted: BTreeSet<&str> = desired
        .projects
        .iter()
        .chain(desired.proxy.iter())
        .flat_map(|p| p.networks.iter().map(|(n, _)| n.as_str()))
        .collect();
    let names_broken = |net: &str| {
        broken.iter().any(|b| {
            net.starts_with(&format!("egress-{b}-to-")) || net.contains(&format!("-to-{b}-"))
        })
    };
    existing
        .iter()
        .filter(|n| !wanted.contains(n.as_str()) && !names_broken(n))
        .cloned()
        .collect()
}

/// HAProxy and the agent live in the network namespace `haproxy-net` holds (the edge in the one
/// `edge-net` holds): when it is recreated (its published ports changed), they must follow into
/// the new one. This is the one proxy change that is not a hand-over, and the plan says so.
/// Engine traefik: only the edge lives there (Traefik and the socket proxy do not).
fn follow_namespace_holder(stack: &mut StackPlan, holder: &str, follower: &str) {
    let recreated = stack
        .services
        .iter()
        .any(|s| s.service == holder && s.action == Action::Recreate);
    if !recreated {
        return;
    }
    let in_namespace =
        |name: &str| name == follower || (holder == PROXY_NAMESPACE_HOLDER && name != holder);
    for s in stack.services.iter_mut().filter(|s| {
        in_namespace(&s.service)
            && matches!(
                s.action,
                Action::Unchanged | Action::Reload | Action::Rollout
            )
            && s.containers.iter().any(|c| c.running)
    }) {
        s.action = Action::Recreate;
        s.reason = format!(
            "{holder} is recreated (published ports changed): restarts in the new network \
             namespace (a brief outage)"
        );
    }
}

/// The first apply with the edge (a stack rendered before it, where Traefik published the
/// ports itself): the edge cannot publish them while the old Traefik holds them, so that
/// Traefik is stopped before the edge starts (see `execute::create`) and the new one started
/// behind it: once, a brief outage, and the plan says so.
fn move_behind_the_edge(stack: &mut StackPlan) {
    let edge_new = stack
        .services
        .iter()
        .any(|s| s.service == PROXY_EDGE_HOLDER && s.action == Action::Create);
    if !edge_new {
        return;
    }
    for s in stack.services.iter_mut().filter(|s| {
        s.service == PROXY_SERVICE_TRAEFIK
            && s.action == Action::Rollout
            && s.containers.iter().any(|c| c.running)
    }) {
        let reason = "moves behind the new edge, which takes over its published ports: \
                      Traefik is restarted once, a brief outage";
        s.action = Action::Recreate;
        s.reason = reason.into();
        if let Some(d) = s.desired.as_mut() {
            d.rollout.strategy = Rollout::StopFirst;
            d.rollout.reason = reason.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::deploy::state::StackState;
    use crate::plan::RolloutPlan;

    fn service(name: &str, hash: &str, strategy: Rollout) -> DesiredService {
        DesiredService {
            name: name.into(),
            hash: hash.into(),
            rollout: RolloutPlan {
                strategy,
                reason: "because".into(),
            },
            grace: Duration::from_secs(1),
            port: None,
            backends: Vec::new(),
            routed: false,
            has_healthcheck: false,
            image: None,
            image_missing: false,
        }
    }

    fn stack(name: &str, enabled: bool, services: Vec<DesiredService>) -> DesiredStack {
        DesiredStack {
            name: name.into(),
            compose_project: name.into(),
            enabled,
            depends_on: Vec::new(),
            services,
            env: Default::default(),
            networks: Vec::new(),
            compose_file: format!("upstream/{name}/docker-compose.yml"),
        }
    }

    fn running(project: &str, service: &str, hash: &str) -> Observed {
        Observed {
            id: format!("{project}-{service}-{hash}"),
            name: format!("{project}_{service}_1"),
            project: project.into(),
            service: service.into(),
            hash: Some(hash.into()),
            root: None,
            stack: None,
            running: true,
            health: None,
            status: String::new(),
            created: 0,
        }
    }

    fn actions(plans: &[StackPlan]) -> Vec<(String, String, Action)> {
        plans
            .iter()
            .flat_map(|p| {
                p.services
                    .iter()
                    .map(|s| (p.stack.clone(), s.service.clone(), s.action))
            })
            .collect()
    }

    #[test]
    fn traefik_is_blue_green_behind_the_edge_but_restarted_once_when_the_edge_is_new() {
        let proxy = |edge: bool| Desired {
            proxy: Some(stack(
                PROXY,
                true,
                [
                    edge.then(|| service(PROXY_EDGE_HOLDER, "n1", Rollout::StopFirst)),
                    edge.then(|| service("edge", "e1", Rollout::StartFirst)),
                    Some(service(PROXY_SERVICE_TRAEFIK, "t2", Rollout::StartFirst)),
                ]
                .into_iter()
                .flatten()
                .collect(),
            )),
            proxy_config: None,
            projects: Vec::new(),
            engine: Engine::Traefik,
        };
        let behind_edge = vec![
            running(PROXY, PROXY_EDGE_HOLDER, "n1"),
            running(PROXY, "edge", "e1"),
            running(PROXY, PROXY_SERVICE_TRAEFIK, "t1"),
        ];
        let state = State::default();
        let update = plan(&proxy(true), &behind_edge, &state, &[]);
        assert_eq!(
            actions(&update)[2],
            (PROXY.into(), PROXY_SERVICE_TRAEFIK.into(), Action::Rollout)
        );
        // A stack from before the edge: Traefik still holds the ports.
        let before_edge = vec![running(PROXY, PROXY_SERVICE_TRAEFIK, "t1")];
        let first = plan(&proxy(true), &before_edge, &state, &[]);
        assert_eq!(
            actions(&first),
            [
                (PROXY.into(), PROXY_EDGE_HOLDER.into(), Action::Create),
                (PROXY.into(), "edge".into(), Action::Create),
                (PROXY.into(), PROXY_SERVICE_TRAEFIK.into(), Action::Recreate),
            ]
        );
        assert!(first[0].services[2].reason.contains("brief outage"));
    }

    #[test]
    fn haproxy_hands_over_unless_its_namespace_holder_is_recreated() {
        let proxy = |holder: &str, haproxy: &str| Desired {
            proxy: Some(stack(
                PROXY,
                true,
                vec![
                    service(PROXY_NAMESPACE_HOLDER, holder, Rollout::StopFirst),
                    service("haproxy", haproxy, Rollout::StartFirst),
                    service("agent", "a1", Rollout::StopFirst),
                ],
            )),
            proxy_config: None,
            projects: Vec::new(),
            engine: Engine::Haproxy,
        };
        let observed = vec![
            running(PROXY, PROXY_NAMESPACE_HOLDER, "n1"),
            running(PROXY, "haproxy", "h1"),
            running(PROXY, "agent", "a1"),
        ];
        let state = State::default();
        let new_image = plan(&proxy("n1", "h2"), &observed, &state, &[]);
        assert_eq!(
            actions(&new_image),
            [
                (
                    PROXY.into(),
                    PROXY_NAMESPACE_HOLDER.into(),
                    Action::Unchanged
                ),
                (PROXY.into(), "haproxy".into(), Action::Rollout),
                (PROXY.into(), "agent".into(), Action::Unchanged),
            ]
        );
        let new_ports = plan(&proxy("n2", "h1"), &observed, &state, &[]);
        assert_eq!(
            actions(&new_ports),
            [
                (
                    PROXY.into(),
                    PROXY_NAMESPACE_HOLDER.into(),
                    Action::Recreate
                ),
                (PROXY.into(), "haproxy".into(), Action::Recreate),
                (PROXY.into(), "agent".into(), Action::Recreate),
            ]
        );
        assert!(new_ports[0].services[1].reason.contains("brief outage"));
    }

    #[test]
    fn every_action_from_desired_running_and_state() {
        let desired = Desired {
            proxy: Some(stack(
                PROXY,
                true,
                vec![service("haproxy", "p1", Rollout::StopFirst)],
            )),
            proxy_config: Some("cfg2".into()),
            projects: vec![
                stack(
                    "a",
                    true,
                    vec![
                        service("new", "h1", Rollout::StartFirst),
                        service("same", "h2", Rollout::StartFirst),
                        service("moved", "h3", Rollout::StartFirst),
                        service("ports", "h4", Rollout::StopFirst),
                    ],
                ),
                stack(
                    "off",
                    false,
                    vec![service("web", "h5", Rollout::StartFirst)],
                ),
            ],
            engine: Engine::Haproxy,
        };
        let observed = vec![
            running(PROXY, "haproxy", "p1"),
            running("a", "same", "h2"),
            running("a", "moved", "old"),
            running("a", "ports", "old"),
            running("a", "gone", "x"),
            running("off", "web", "h5"),
            running("removed", "db", "y"),
        ];
        let mut state = State {
            proxy: Some(StackState {
                enabled: true,
                services: Default::default(),
                config: Some("cfg1".into()),
            }),
            ..State::default()
        };
        state
            .projects
            .insert("forgotten".into(), StackState::default());
        let plans = plan(&desired, &observed, &state, &[]);
        let got = actions(&plans);
        let want = [
            (PROXY, "haproxy", Action::Reload),
            ("a", "new", Action::Create),
            ("a", "same", Action::Unchanged),
            ("a", "moved", Action::Rollout),
            ("a", "ports", Action::Recreate),
            ("a", "gone", Action::Prune),
            ("off", "web", Action::Stop),
            ("removed", "db", Action::Prune),
        ];
        let want: Vec<(String, String, Action)> = want
            .iter()
            .map(|(p, s, a)| (p.to_string(), s.to_string(), *a))
            .collect();
        assert_eq!(got, want);
        let forgotten = plans
            .iter()
            .find(|p| p.stack == "forgotten")
            .expect("known from state");
        assert!(forgotten.removed && forgotten.services.is_empty());
        let ports = &plans[1].services[3];
        assert!(
            ports.reason.contains("stop-first: because"),
            "{}",
            ports.reason
        );

        // Targets restrict the plan; nothing else is touched.
        let only = plan(&desired, &observed, &state, &["off".to_string()]);
        assert_eq!(
            actions(&only),
            vec![("off".into(), "web".into(), Action::Stop)]
        );
    }

    #[test]
    fn stale_egress_networks() {
        let mut consumer = stack("api", true, Vec::new());
        consumer.networks = vec![
            ("proxynet".into(), Some("10.0.0.0/24".into())),
            ("egress-api-to-db-store".into(), None),
        ];
        let desired = Desired {
            proxy: None,
            proxy_config: None,
            projects: vec![consumer],
            engine: Engine::Haproxy,
        };
        let existing: Vec<String> = [
            "egress-api-to-db-store",
            "egress-api-to-cache-redis",
            "egress-gone-to-db-store",
            "egress-typo-to-db-store",
            "egress-api-to-typo-x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let broken: BTreeSet<String> = ["typo".to_string()].into();
        assert_eq!(
            stale_networks(&desired, &existing, &broken, &[]),
            vec!["egress-api-to-cache-redis", "egress-gone-to-db-store"]
        );
        assert!(stale_networks(&desired, &existing, &broken, &["api".into()]).is_empty());
    }
}
