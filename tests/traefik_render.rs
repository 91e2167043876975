//! Engine traefik, rendered: the defects a real Traefik showed (issue 12, 1–5), each pinned on
//! the rendered files. `tests/traefik_live.rs` loads the same output into the real Traefik.

mod common;

use common::Root;

/// Shop API on a path of the website's apex, the website on apex + www (one certificate), a
/// dashboard, https on a non-default port.
fn tree() -> Root {
    let root = Root::new();
    root.write(
        "projects/itsup.yml",
        "traefikDomain: traefik.example.com\nproxy:\n  httpPort: 8080\n  httpsPort: 8443\n",
    )
    .write(
        "projects/middlewares.yml",
        "http:\n  middlewares:\n    from-env:\n      headers:\n        customRequestHeaders:\n          X-Site: '{{ env \"SITE\" }}'\n          X-Quoted: \"{{ \\\"it's\\\" }}\"\n",
    )
    .ingress(
        "web",
        "ingress:\n  - service: app\n    port: 80\n    tls:\n      main: example.com\n      sans: [www.example.com]\n",
        &["app"],
    )
    .ingress(
        "shop",
        "ingress:\n  - service: api\n    domain: example.com\n    path_prefix: /api\n    port: 8080\n    middlewares: [from-env]\n",
        &["api"],
    );
    root.itsup(&["render", "-q"]).code(0);
    root
}

fn label(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim().trim_start_matches('"');
        let rest = l.strip_prefix(key)?;
        let value = rest.trim_start_matches('"').strip_prefix(':')?.trim();
        Some(value.trim_matches('"').to_string())
    })
}

/// (1) Template actions reach Traefik byte for byte: no backslash escape inside `{{ }}`, in
/// the generated dashboard auth and in the operator's own middlewares alike.
#[test]
fn template_actions_are_written_without_escapes() {
    let root = tree();
    let text = root.read("proxy/traefik/dynamic/middlewares.yml");
    assert!(
        text.contains(r#"- '{{ env "TRAEFIK_DASHBOARD_USERS" | default "locked:!" }}'"#),
        "{text}"
    );
    assert!(text.contains(r#"X-Site: '{{ env "SITE" }}'"#), "{text}");
    assert!(text.contains(r#"X-Quoted: '{{ "it''s" }}'"#), "{text}");
    for line in text.lines().filter(|l| l.contains("{{")) {
        let action = &line[line.find("{{").unwrap_or(0)..];
        assert!(
            !action.contains('\\'),
            "escape inside a template action: {line}"
        );
    }
}

/// (2) No writable mount nested in the read-only config mount, and the folders the stack
/// mounts exist after `render`.
#[test]
fn proxy_mounts_are_not_nested_and_exist() {
    let root = tree();
    let compose = root.read("proxy/docker-compose.yml");
    let targets: Vec<(String, bool)> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- \"./"))
        .map(|m| {
            let parts: Vec<&str> = m.trim_end_matches('"').split(':').collect();
            (parts[1].to_string(), parts.get(2) == Some(&"ro"))
        })
        .collect();
    for (ro, _) in targets.iter().filter(|(_, ro)| *ro) {
        for (inner, _) in &targets {
            assert!(
                inner == ro || !inner.starts_with(&format!("{ro}/")),
                "{inner} is nested in the read-only {ro}:\n{compose}"
            );
        }
    }
    for dir in ["proxy/data/acme", "proxy/data/logs", "proxy/traefik"] {
        assert!(root.join(dir).is_dir(), "{dir} prepared by render");
    }
}

/// (3) Every router has an explicit priority, the host+path route above the host-only one.
#[test]
fn routers_carry_priorities_from_the_plan_order() {
    let root = tree();
    let web = root.read("upstream/web/docker-compose.yml");
    let shop = root.read("upstream/shop/docker-compose.yml");
    let prio = |text: &str, router: &str| -> u32 {
        label(text, &format!("traefik.http.routers.{router}.priority"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{router} has a priority:\n{text}"))
    };
    assert!(prio(&shop, "shop-api-8080") > prio(&web, "web-app-80"));
    assert_eq!(
        prio(&shop, "shop-api-8080-redirect"),
        prio(&shop, "shop-api-8080")
    );
    let http = root.read("proxy/traefik/dynamic/routers-http.yml");
    let routers = http.matches("      entryPoints:").count();
    assert_eq!(http.matches("      priority: ").count(), routers, "{http}");
}

/// (4) The http→https redirect keeps a non-default https port.
#[test]
fn redirect_keeps_the_https_port() {
    let root = tree();
    let text = root.read("proxy/traefik/dynamic/middlewares.yml");
    assert!(
        text.contains("scheme: https\n        permanent: true\n        port: \"8443\"\n"),
        "{text}"
    );
}

/// (5) Exactly one router requests the certificate of a name: the website's row (apex + www),
/// not the shop API's path row on the apex.
#[test]
fn one_router_owns_each_certificate_request() {
    let root = tree();
    let all = root.generated_text();
    let requests = all
        .lines()
        .filter(|l| l.contains(".tls.domains[0].main") && l.contains("example.com"))
        .count();
    assert_eq!(requests, 1, "{all}");
    let web = root.read("upstream/web/docker-compose.yml");
    let shop = root.read("upstream/shop/docker-compose.yml");
    assert_eq!(
        label(&web, "traefik.http.routers.web-app-80.tls.certresolver").as_deref(),
        Some("letsencrypt")
    );
    assert_eq!(
        label(&shop, "traefik.http.routers.shop-api-8080.tls").as_deref(),
        Some("true"),
        "TLS terminated with the stored certificate"
    );
    assert!(
        !shop.contains("certresolver"),
        "the path row requests nothing:\n{shop}"
    );
}
