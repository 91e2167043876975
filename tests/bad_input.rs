//! Every validation rule, driven through the real binary: each broken input gives exit 1 and the
//! exact `path:line:col: error: message` line. A broken project is left out while the others
//! still render; a broken platform file stops everything. Hostile input (alias bombs, huge
//! files, bad bytes, symlinks) is reported, never a panic or a hang.

mod common;

use common::*;

/// The valid project every project-level case renders beside the broken one.
const GOOD_DOMAIN: &str = "good.example.com";
/// The broken project's domain: it must not appear in any generated file.
const BAD_DOMAIN: &str = "bad.example.com";

/// A root with project `good` and project `bad` (files given; `compose` = services of its
/// compose file, none when empty).
fn with_bad(ingress: &str, compose: &[&str]) -> Root {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.write("projects/bad/ingress.yml", ingress);
    if !compose.is_empty() {
        root.compose("bad", compose);
    }
    root
}

/// `validate` and `render` both report exactly `want` with exit 1; `render` still writes the
/// valid projects and leaves every project in `broken` out (no upstream folder, no route).
#[track_caller]
fn assert_left_out(root: &Root, broken: &[&str], want: &[&str]) {
    root.itsup(&["validate"]).code(1).exactly(want);
    let run = root.itsup(&["render"]);
    run.code(1).exactly(want);
    assert!(
        run.stderr
            .contains(&format!("left out: {}", broken.join(", "))),
        "stderr: {}",
        run.stderr
    );
    assert!(
        root.exists("proxy/docker-compose.yml"),
        "the proxy was not rendered\n{}",
        run.stderr
    );
    assert!(
        root.exists("upstream/good/docker-compose.yml"),
        "the valid project was not rendered\n{}",
        run.stderr
    );
    for b in broken {
        assert!(
            !root.exists(&format!("upstream/{b}")),
            "broken project {b} was rendered"
        );
    }
    let text = root.generated_text();
    assert!(text.contains(GOOD_DOMAIN), "good project not routed");
    if broken.contains(&"bad") {
        assert!(
            !text.contains(BAD_DOMAIN),
            "broken project routed anyway:\n{text}"
        );
    }
}

/// The usual case: project `bad` is broken with exactly one diagnostic.
#[track_caller]
fn bad_project(ingress: &str, compose: &[&str], want: &str) {
    let root = with_bad(ingress, compose);
    assert_left_out(&root, &["bad"], &[want]);
}

/// `validate` and `render` report exactly `want` with exit 1 and nothing at all is written.
#[track_caller]
fn assert_nothing_rendered(root: &Root, want: &[&str]) {
    root.itsup(&["validate"]).code(1).exactly(want);
    let run = root.itsup(&["render"]);
    run.code(1).exactly(want);
    assert!(
        run.stderr.contains("nothing written"),
        "stderr: {}",
        run.stderr
    );
    assert!(!root.exists("proxy"), "proxy/ was written");
    assert!(!root.exists("upstream"), "upstream/ was written");
    // diff is an error too, and shows nothing.
    let diff = root.itsup(&["diff"]);
    diff.code(1);
    assert!(diff.stdout.is_empty(), "diff printed: {}", diff.stdout);
}

/// A valid tree plus one broken platform file.
#[track_caller]
fn bad_platform(file: &str, text: &str, want: &[&str]) {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.write(file, text);
    assert_nothing_rendered(&root, want);
}

// ---------------------------------------------------------------------------------------------
// Schema: unknown keys, types, ports
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_row_key_suggests_the_right_one() {
    bad_project(
        "ingress:\n  - service: web\n    domian: bad.example.com\n    port: 80\n",
        &["web"],
        "projects/bad/ingress.yml:3:5: error: unknown key `domian` (did you mean `domain`?)",
    );
}

#[test]
fn unknown_top_level_key_suggests_the_right_one() {
    bad_project(
        "ingres:\n  - service: web\n    domain: bad.example.com\n",
        &["web"],
        "projects/bad/ingress.yml:1:1: error: unknown key `ingres` (did you mean `ingress`?)",
    );
}

#[test]
fn unknown_key_without_a_close_match_has_no_suggestion() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    zzzzzz: 1\n",
        &["web"],
        "projects/bad/ingress.yml:4:5: error: unknown key `zzzzzz`",
    );
}

#[test]
fn wrong_type_of_port() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    port: eighty\n",
        &["web"],
        "projects/bad/ingress.yml:4:11: error: `port`: \"eighty\" is not of type \"integer\"",
    );
}

#[test]
fn yaml_1_1_booleans_are_strings_not_silently_true() {
    bad_project(
        "enabled: yes\ningress:\n  - service: web\n    domain: bad.example.com\n",
        &["web"],
        "projects/bad/ingress.yml:1:10: error: `enabled`: \"yes\" is not of type \"boolean\"",
    );
}

#[test]
fn ingress_must_be_a_list() {
    bad_project(
        "ingress:\n  service: web\n  domain: bad.example.com\n",
        &["web"],
        "projects/bad/ingress.yml:2:*: error: `ingress`: {\"service\":\"web\",\"domain\":\"bad.example.com\"} is not of type \"array\"",
    );
}

#[test]
fn router_enum_suggests() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    router: htp\n",
        &["web"],
        "projects/bad/ingress.yml:4:13: error: `router` must be one of http, tcp, udp, found \"htp\" (did you mean `http`?)",
    );
}

#[test]
fn port_above_range() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    port: 70000\n",
        &["web"],
        "projects/bad/ingress.yml:4:11: error: `port` is 70000, out of the port range 1–65535",
    );
}

#[test]
fn port_zero() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    port: 0\n",
        &["web"],
        "projects/bad/ingress.yml:4:11: error: `port` is 0, out of the port range 1–65535",
    );
}

#[test]
fn negative_port() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    port: -1\n",
        &["web"],
        "projects/bad/ingress.yml:4:11: error: `port` is -1, out of the port range 1–65535",
    );
}

#[test]
fn hostport_above_range() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    router: tcp\n    hostport: 65536\n",
        &["web"],
        "projects/bad/ingress.yml:5:15: error: `hostport` is 65536, out of the port range 1–65535",
    );
}

// ---------------------------------------------------------------------------------------------
// Domains and paths: nothing that could be injected into a rule or a config line
// ---------------------------------------------------------------------------------------------

#[test]
fn domains_with_injection_characters_are_all_reported_at_once() {
    let ingress = concat!(
        "ingress:\n",
        "  - service: web\n",
        "    domain: bad example.com\n",
        "  - service: web\n",
        "    domain: 'bad\"x.example.com'\n",
        "  - service: web\n",
        "    domain: bad`) || Host(`evil.com\n",
        "  - service: web\n",
        "    domain: bad#x.example.com\n",
        "  - service: web\n",
        "    domain: \"bad.example.com\\nx\"\n",
        "  - service: web\n",
        "    domain: \"bad'x.example.com\"\n",
    );
    let root = with_bad(ingress, &["web"]);
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/ingress.yml:3:13: error: `domain`: \"bad example.com\" is not a valid domain: it contains ' '",
            "projects/bad/ingress.yml:5:13: error: `domain`: \"bad\\\"x.example.com\" is not a valid domain: it contains '\"'",
            "projects/bad/ingress.yml:7:13: error: `domain`: \"bad`) || Host(`evil.com\" is not a valid domain: it contains '`'",
            "projects/bad/ingress.yml:9:13: error: `domain`: \"bad#x.example.com\" is not a valid domain: it contains '#'",
            "projects/bad/ingress.yml:11:13: error: `domain`: \"bad.example.com\\nx\" is not a valid domain: it contains '\\n'",
            "projects/bad/ingress.yml:13:13: error: `domain`: \"bad'x.example.com\" is not a valid domain: it contains '\\''",
        ],
    );
}

#[test]
fn domain_that_is_not_a_dns_name() {
    let ingress = concat!(
        "ingress:\n",
        "  - service: web\n",
        "    domain: -bad.example.com\n",
        "  - service: web\n",
        "    domain: bad..example.com\n",
        "  - service: web\n",
        "    domain: localbad\n",
        "  - service: web\n",
        "    domain: 10.0.0.1\n",
        "  - service: web\n",
        "    domain: '*.bad.example.com'\n",
        "  - service: web\n",
        "    domain: bad_x.example.com\n",
    );
    let root = with_bad(ingress, &["web"]);
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/ingress.yml:3:13: error: `domain`: \"-bad.example.com\" is not a valid domain: label `-bad` starts or ends with `-`",
            "projects/bad/ingress.yml:5:13: error: `domain`: \"bad..example.com\" is not a valid domain: empty label",
            "projects/bad/ingress.yml:7:13: error: `domain`: \"localbad\" is not a valid domain: it needs a dot (e.g. `localbad.example.com`)",
            "projects/bad/ingress.yml:9:13: error: `domain`: \"10.0.0.1\" is an IP address, not a domain",
            "projects/bad/ingress.yml:11:13: error: `domain`: \"*.bad.example.com\": wildcard domains are not supported; list each name",
            "projects/bad/ingress.yml:13:13: error: `domain`: \"bad_x.example.com\" is not a valid domain: label `bad_x` contains '_' (only a-z, 0-9 and `-`)",
        ],
    );
}

#[test]
fn tls_names_are_checked_like_domains() {
    bad_project(
        concat!(
            "ingress:\n",
            "  - service: web\n",
            "    tls:\n",
            "      main: bad.example.com\n",
            "      sans:\n",
            "        - ok.bad.example.com\n",
            "        - 'x y.bad.example.com'\n",
        ),
        &["web"],
        "projects/bad/ingress.yml:7:11: error: `tls.sans`: \"x y.bad.example.com\" is not a valid domain: it contains ' '",
    );
}

#[test]
fn path_prefix_must_start_with_slash() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    path_prefix: api\n",
        &["web"],
        "projects/bad/ingress.yml:4:18: error: path_prefix \"api\" must start with `/`",
    );
}

#[test]
fn path_prefix_without_spaces() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    path_prefix: /a b\n",
        &["web"],
        "projects/bad/ingress.yml:4:18: error: path_prefix \"/a b\" contains ' '",
    );
}

#[test]
fn path_prefix_only_on_http_rows() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    router: tcp\n    passthrough: true\n    path_prefix: /api\n",
        &["web"],
        "projects/bad/ingress.yml:6:18: error: `path_prefix` only applies to http rows (TLS SNI routing cannot see paths)",
    );
}

#[test]
fn strip_prefix_needs_a_path_prefix() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    strip_prefix: true\n",
        &["web"],
        "projects/bad/ingress.yml:4:19: error: `strip_prefix` needs a `path_prefix`",
    );
}

// ---------------------------------------------------------------------------------------------
// References into the compose file
// ---------------------------------------------------------------------------------------------

#[test]
fn ingress_service_missing_from_compose() {
    bad_project(
        "ingress:\n  - service: fronted\n    domain: bad.example.com\n",
        &["frontend", "db"],
        "projects/bad/ingress.yml:2:14: error: service `fronted` is not defined in docker-compose.yml (did you mean `frontend`?)",
    );
}

#[test]
fn ingress_service_missing_without_close_match() {
    bad_project(
        "ingress:\n  - service: cache\n    domain: bad.example.com\n",
        &["web", "db"],
        "projects/bad/ingress.yml:2:14: error: service `cache` is not defined in docker-compose.yml",
    );
}

#[test]
fn ingress_service_without_compose_file() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
        &[],
        "projects/bad/ingress.yml:2:14: error: `service` \"web\" needs a docker-compose.yml in the project (or drop it and set `host`)",
    );
}

#[test]
fn row_without_service_needs_a_host() {
    bad_project(
        "ingress:\n  - domain: bad.example.com\n",
        &["web"],
        "projects/bad/ingress.yml:2:*: error: ingress row has no `service` and the project has no `host` to route to",
    );
}

#[test]
fn host_must_be_an_ip_or_dns_name() {
    bad_project(
        "host: 'bad host'\ningress:\n  - domain: bad.example.com\n",
        &[],
        "projects/bad/ingress.yml:1:7: error: `host`: \"bad host\" is not a valid domain: it contains ' '",
    );
}

#[test]
fn service_with_network_mode_cannot_be_routed() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
        &[],
    );
    root.write(
        "projects/bad/docker-compose.yml",
        "services:\n  web:\n    image: nginx\n    network_mode: host\n",
    );
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/ingress.yml:2:14: error: service `web` uses `network_mode`, so it cannot join the proxy network",
        ],
    );
}

#[test]
fn compose_file_needs_services() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
        &[],
    );
    root.write("projects/bad/docker-compose.yml", "volumes:\n  data: {}\n");
    assert_left_out(
        &root,
        &["bad"],
        &["projects/bad/docker-compose.yml:1:*: error: a compose file needs a `services` mapping"],
    );
}

#[test]
fn rollout_of_unknown_service() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\nrollout:\n  wbe: stop-first\n",
        &["web"],
        "projects/bad/ingress.yml:5:3: error: rollout names service `wbe`, which the compose file does not define",
    );
}

#[test]
fn middleware_must_be_defined() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    middlewares: [secure-headrs]\n",
        &["web"],
    );
    root.write(
        "projects/middlewares.yml",
        "http:\n  middlewares:\n    secure-headers:\n      headers:\n        frameDeny: true\n",
    );
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/ingress.yml:4:19: error: middleware `secure-headrs` is not defined in projects/middlewares.yml (http.middlewares) (did you mean `secure-headers`?)",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Project names
// ---------------------------------------------------------------------------------------------

/// Project folder `name` (otherwise valid) is refused with `message` at its file's 1:1.
#[track_caller]
fn bad_name(name: &str, message: &str) {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN).project(name, BAD_DOMAIN);
    let want = format!("projects/{name}/ingress.yml:1:1: error: {message}");
    assert_left_out(&root, &[name], &[want.as_str()]);
    assert!(!root.generated_text().contains(BAD_DOMAIN), "{name} routed");
}

/// `proxy` names the proxy stack; every other name itsUP accepted loads (the corpus has `itsup`).
#[test]
fn reserved_name_proxy() {
    bad_name(
        "proxy",
        "project name `proxy` is reserved: it names the proxy stack (`itsup svc proxy`, the generated `proxy/` folder and the proxy's deploy state)",
    );
}

/// `<network>-proxy` is the proxy stack's Compose project: refused with the reason.
#[test]
fn reserved_name_proxy_compose_project() {
    bad_name(
        "proxynet-proxy",
        "project name `proxynet-proxy` is reserved: it is the Compose project name of the proxy stack (`<proxy.network>-proxy`), so its containers and networks would be mixed with the proxy's",
    );
}

/// Names itsUP's `create` reserved but nothing of itsup's collides with are ordinary projects.
#[test]
fn formerly_reserved_names_are_accepted() {
    let root = Root::new();
    for name in ["dns", "traefik", "itsup", "monitor", "api"] {
        root.project(name, &format!("{name}.example.com"));
    }
    root.itsup(&["validate"]).code(0);
}

#[test]
fn project_name_with_underscore() {
    bad_name(
        "a_b",
        "project name `a_b` is not a DNS label: label `a_b` contains '_' (only a-z, 0-9 and `-`)",
    );
}

#[test]
fn project_name_with_dot() {
    bad_name(
        "a.b",
        "project name `a.b` is not a DNS label: label `a.b` contains '.' (only a-z, 0-9 and `-`)",
    );
}

#[test]
fn project_name_with_leading_dash() {
    bad_name(
        "-lead",
        "project name `-lead` is not a DNS label: label `-lead` starts or ends with `-`",
    );
}

#[test]
fn project_name_with_space() {
    bad_name(
        "my app",
        "project name `my app` is not a DNS label: label `my app` contains ' ' (only a-z, 0-9 and `-`)",
    );
}

#[test]
fn project_name_with_uppercase() {
    bad_name(
        "Upper",
        "project name `Upper` must be lowercase (it becomes a DNS label and a compose project name)",
    );
}

#[test]
fn project_name_longer_than_a_dns_label() {
    let name = "a".repeat(64);
    let root = Root::new();
    root.project("good", GOOD_DOMAIN).project(&name, BAD_DOMAIN);
    let want = format!(
        "projects/{name}/ingress.yml:1:1: error: project name `{name}` is not a DNS label: label `{name}` is longer than 63 characters"
    );
    assert_left_out(&root, &[name.as_str()], &[want.as_str()]);
}

// ---------------------------------------------------------------------------------------------
// Claims across rows and projects
// ---------------------------------------------------------------------------------------------

#[test]
fn same_host_routed_by_two_rows() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n  - service: api\n    domain: bad.example.com\n",
        &["web", "api"],
        "projects/bad/ingress.yml:5:5: error: bad.example.com is already routed by project `bad` (ingress row 1)",
    );
}

#[test]
fn same_host_and_path_routed_by_two_projects() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    let row = "ingress:\n  - service: web\n    domain: shared.example.com\n    path_prefix: /api\n";
    root.ingress("a", row, &["web"]);
    root.ingress("b", row, &["web"]);
    assert_left_out(
        &root,
        &["b"],
        &[
            "projects/b/ingress.yml:3:5: error: shared.example.com/api is already routed by project `a` (ingress row 1)",
        ],
    );
    assert!(
        root.exists("upstream/a/docker-compose.yml"),
        "the first claim wins"
    );
}

#[test]
fn same_host_on_different_paths_is_fine() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.ingress(
        "a",
        "ingress:\n  - service: web\n    domain: shared.example.com\n    path_prefix: /api\n",
        &["web"],
    );
    root.ingress(
        "b",
        "ingress:\n  - service: web\n    domain: shared.example.com\n",
        &["web"],
    );
    root.itsup(&["validate"]).code(0).exactly(&[]);
    root.itsup(&["render"]).code(0).exactly(&[]);
    assert!(root.exists("upstream/a/docker-compose.yml"));
    assert!(root.exists("upstream/b/docker-compose.yml"));
}

#[test]
fn host_is_claimed_case_insensitively() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.project("a", "shared.example.com");
    root.project("b", "Shared.Example.COM");
    assert_left_out(
        &root,
        &["b"],
        &[
            "projects/b/ingress.yml:3:5: error: shared.example.com is already routed by project `a` (ingress row 1)",
        ],
    );
}

#[test]
fn project_domain_cannot_take_the_dashboard() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: traefik.example.com\n",
        &["web"],
    );
    root.write("projects/itsup.yml", "traefikDomain: traefik.example.com\n");
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/ingress.yml:3:5: error: traefik.example.com is already routed by the dashboard (traefikDomain in itsup.yml)",
        ],
    );
}

const PASSTHROUGH_ON_GOOD: &str = "ingress:\n  - service: web\n    domain: good.example.com\n    router: tcp\n    passthrough: true\n    port: 443\n";

#[test]
fn passthrough_sni_cannot_take_an_http_host() {
    // good.example.com is served (TLS-terminated) on :443; a passthrough on the same name and
    // port would steal its TLS connections. `zzz` sorts after `good`, so `good` claimed first.
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.ingress("zzz", PASSTHROUGH_ON_GOOD, &["web"]);
    assert_left_out(
        &root,
        &["zzz"],
        &[
            "projects/zzz/ingress.yml:3:5: error: good.example.com on port 443 is already routed by project `good` (ingress row 1)",
        ],
    );
}

#[test]

fn http_host_cannot_take_a_passthrough_sni_claimed_first() {
    // Same conflict, but the passthrough project (`aaa`) sorts first: one of the two must be
    // reported; today neither is and Traefik would send good.example.com's TLS to `aaa`.
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.ingress("aaa", PASSTHROUGH_ON_GOOD, &["web"]);
    let run = root.itsup(&["validate"]);
    run.code(1);
    let errors = run.errors();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("good.example.com") && errors[0].contains("already routed"),
        "{}",
        run.stderr
    );
    root.itsup(&["render"]).code(1);
    assert!(
        root.exists("upstream/aaa") != root.exists("upstream/good"),
        "exactly one of the two projects must be left out"
    );
}

#[test]
fn two_rows_claim_one_hostport() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    let row = "ingress:\n  - service: db\n    domain: db.example.com\n    router: tcp\n    port: 5432\n    hostport: 5432\n";
    root.ingress("a", row, &["db"]);
    root.ingress(
        "b",
        &row.replace("db.example.com", "db2.example.com"),
        &["db"],
    );
    assert_left_out(
        &root,
        &["b"],
        &[
            "projects/b/ingress.yml:6:5: error: hostport 5432/tcp is already claimed by project `a` (ingress row 1)",
        ],
    );
}

#[test]
fn two_rows_of_one_project_claim_one_udp_hostport() {
    bad_project(
        concat!(
            "ingress:\n",
            "  - service: web\n    domain: bad.example.com\n    router: udp\n    protocol: udp\n    hostport: 5353\n",
            "  - service: web\n    domain: bad.example.com\n    router: udp\n    protocol: udp\n    hostport: 5353\n",
        ),
        &["web"],
        "projects/bad/ingress.yml:11:5: error: hostport 5353/udp is already claimed by project `bad` (ingress row 1)",
    );
}

#[test]
fn tcp_hostport_cannot_be_the_http_port() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    router: tcp\n    hostport: 80\n",
        &["web"],
        "projects/bad/ingress.yml:5:15: error: hostport 80 is the proxy's HTTP port",
    );
}

#[test]
fn hostport_on_http_row() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    hostport: 8443\n",
        &["web"],
        "projects/bad/ingress.yml:4:15: error: `hostport` only applies to tcp and udp rows; http rows share the web entrypoints",
    );
}

#[test]
fn http_row_needs_a_domain() {
    bad_project(
        "ingress:\n  - service: web\n    port: 80\n",
        &["web"],
        "projects/bad/ingress.yml:2:*: error: http row needs a `domain` (or `tls.main`)",
    );
}

// ---------------------------------------------------------------------------------------------
// Pinned addresses
// ---------------------------------------------------------------------------------------------

#[test]
fn ipv4_address_outside_the_proxy_subnet() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    ipv4_address: 10.1.2.3\n",
        &["web"],
        "projects/bad/ingress.yml:4:19: error: `ipv4_address` 10.1.2.3 is outside the proxy subnet 172.20.0.0/16 (proxy.subnet in itsup.yml)",
    );
}

#[test]
fn ipv4_address_checked_against_a_custom_subnet() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    ipv4_address: 172.20.0.10\n",
        &["web"],
    );
    root.write("projects/itsup.yml", "proxy:\n  subnet: 10.5.0.0/24\n");
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/ingress.yml:4:19: error: `ipv4_address` 172.20.0.10 is outside the proxy subnet 10.5.0.0/24 (proxy.subnet in itsup.yml)",
        ],
    );
}

#[test]
fn ipv4_address_of_the_dns_honeypot_and_a_bad_dns_block() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    ipv4_address: 10.5.0.254\n",
        &["web"],
    );
    // The honeypot's default address is the subnet's last usable one.
    root.write(
        "projects/itsup.yml",
        "proxy:\n  subnet: 10.5.0.0/24\ndns:\n  enabled: true\n",
    );
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/ingress.yml:4:19: error: `ipv4_address` 10.5.0.254 is the DNS honeypot's address (dns.address in itsup.yml)",
        ],
    );
    root.write(
        "projects/itsup.yml",
        "proxy:\n  subnet: 10.5.0.0/24\ndns:\n  enabled: true\n  address: 10.6.0.53\n  upstream: [127.0.0.11, resolver]\n",
    );
    root.itsup(&["validate"])
        .code(1)
        .has("projects/itsup.yml:5:12: error: `address` 10.6.0.53 is not a usable address of the proxy subnet 10.5.0.0/24 (proxy.subnet)")
        .has("projects/itsup.yml:6:*: error: `upstream`: \"resolver\" is not an IP address");
}

#[test]
fn ipv4_address_network_broadcast_and_gateway() {
    let ingress = concat!(
        "ingress:\n",
        "  - service: web\n    domain: bad.example.com\n    ipv4_address: 172.20.0.0\n",
        "  - service: web\n    domain: bad2.example.com\n    ipv4_address: 172.20.255.255\n",
        "  - service: web\n    domain: bad3.example.com\n    ipv4_address: 172.20.0.1\n",
        "  - service: web\n    domain: bad4.example.com\n    ipv4_address: not-an-ip\n",
    );
    let root = with_bad(ingress, &["web"]);
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/ingress.yml:4:19: error: `ipv4_address` 172.20.0.0 is outside the proxy subnet 172.20.0.0/16 (proxy.subnet in itsup.yml)",
            "projects/bad/ingress.yml:7:19: error: `ipv4_address` 172.20.255.255 is outside the proxy subnet 172.20.0.0/16 (proxy.subnet in itsup.yml)",
            "projects/bad/ingress.yml:10:19: error: `ipv4_address` 172.20.0.1 is the gateway of 172.20.0.0/16",
            "projects/bad/ingress.yml:13:19: error: `ipv4_address` \"not-an-ip\" is not an IPv4 address",
        ],
    );
}

#[test]
fn ipv4_address_reused_by_another_project() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.ingress(
        "a",
        "ingress:\n  - service: web\n    domain: a.example.com\n    ipv4_address: 172.20.0.10\n",
        &["web"],
    );
    root.ingress(
        "b",
        "ingress:\n  - service: web\n    domain: b.example.com\n    ipv4_address: 172.20.0.10\n",
        &["web"],
    );
    assert_left_out(
        &root,
        &["b"],
        &[
            "projects/b/ingress.yml:4:5: error: ipv4_address 172.20.0.10 is already pinned to service `web` of project `a`",
        ],
    );
}

#[test]
fn ipv4_address_reused_within_a_project() {
    bad_project(
        concat!(
            "ingress:\n",
            "  - service: web\n    domain: bad.example.com\n    ipv4_address: 172.20.0.10\n",
            "  - service: api\n    domain: api.bad.example.com\n    ipv4_address: 172.20.0.10\n",
        ),
        &["web", "api"],
        "projects/bad/ingress.yml:7:5: error: ipv4_address 172.20.0.10 is already pinned to service `web` of project `bad`",
    );
}

#[test]
fn one_service_may_repeat_its_own_address() {
    let root = Root::new();
    root.ingress("a", concat!(
            "ingress:\n",
            "  - service: web\n    domain: a.example.com\n    ipv4_address: 172.20.0.10\n",
            "  - service: web\n    domain: a2.example.com\n    port: 81\n    ipv4_address: 172.20.0.10\n",
        ), &["web"]);
    root.itsup(&["render"]).code(0).exactly(&[]);
    assert!(
        root.read("upstream/a/docker-compose.yml")
            .contains("172.20.0.10")
    );
}

#[test]
fn allow_source_ips_and_dns_must_be_addresses() {
    let root = with_bad(
        concat!(
            "ingress:\n",
            "  - service: web\n",
            "    domain: bad.example.com\n",
            "    allow_source_ips: [10.0.0.0/8, 10.0.0.0/33, everyone]\n",
            "    dns: [1.1.1.1, dns.google]\n",
        ),
        &["web"],
    );
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/ingress.yml:4:36: error: `allow_source_ips`: \"10.0.0.0/33\" is neither an IP address nor a CIDR range",
            "projects/bad/ingress.yml:4:49: error: `allow_source_ips`: \"everyone\" is neither an IP address nor a CIDR range",
            "projects/bad/ingress.yml:5:20: error: `dns`: \"dns.google\" is not an IP address",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Egress
// ---------------------------------------------------------------------------------------------

#[test]
fn egress_to_unknown_project() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\negress:\n  - nope:web\n",
        &["web"],
        "projects/bad/ingress.yml:5:5: error: egress \"nope:web\": there is no project `nope`",
    );
}

#[test]
fn egress_to_unknown_service() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\negress:\n  - good:db\n",
        &["web"],
        "projects/bad/ingress.yml:5:5: error: egress \"good:db\": project `good` has no service `db` (nor `good-db`)",
    );
}

#[test]
fn egress_with_path_traversal() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\negress:\n  - ../x:svc\n",
        &["web"],
        "projects/bad/ingress.yml:5:5: error: egress \"../x:svc\" must be `project:service`",
    );
}

#[test]
fn egress_without_service() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\negress:\n  - good\n",
        &["web"],
        "projects/bad/ingress.yml:5:5: error: egress \"good\" must be `project:service`",
    );
}

#[test]
fn egress_to_itself() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\negress:\n  - bad:web\n",
        &["web"],
        "projects/bad/ingress.yml:5:5: error: egress \"bad:web\" points at the project itself",
    );
}

#[test]
fn egress_to_a_valid_service_renders() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.ingress(
        "user",
        "ingress:\n  - service: web\n    domain: user.example.com\negress:\n  - good:web\n",
        &["web"],
    );
    root.itsup(&["render"]).code(0).exactly(&[]);
}

#[test]
fn egress_cycle() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.ingress(
        "a",
        "ingress:\n  - service: web\n    domain: a.example.com\negress:\n  - b:web\n",
        &["web"],
    );
    root.ingress(
        "b",
        "ingress:\n  - service: web\n    domain: b.example.com\negress:\n  - c:web\n",
        &["web"],
    );
    root.ingress(
        "c",
        "ingress:\n  - service: web\n    domain: c.example.com\negress:\n  - a:web\n",
        &["web"],
    );
    let run = root.itsup(&["validate"]);
    run.code(1).has(
        "projects/a/ingress.yml:5:5: error: egress cycle: a → b → c → a (providers must deploy before consumers)",
    );
    // The cycle is reported once, on its first member, which is left out; the others are not
    // punished for consuming a broken provider and still render.
    assert_eq!(run.errors().len(), 1, "{}", run.stderr);
    let run = root.itsup(&["render"]);
    run.code(1);
    assert!(run.stderr.contains("left out: a\n"), "{}", run.stderr);
    assert!(!root.exists("upstream/a"), "a rendered");
    for p in ["b", "c"] {
        assert!(
            root.exists(&format!("upstream/{p}/docker-compose.yml")),
            "{p} not rendered"
        );
    }
    assert!(root.exists("upstream/good/docker-compose.yml"));
}

// ---------------------------------------------------------------------------------------------
// Router kinds and engines
// ---------------------------------------------------------------------------------------------

#[test]
fn passthrough_on_http_router() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    passthrough: true\n",
        &["web"],
        "projects/bad/ingress.yml:4:18: error: `passthrough` only applies to tcp rows (router: tcp)",
    );
}

#[test]
fn protocol_udp_needs_router_udp() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    router: tcp\n    hostport: 5000\n    protocol: udp\n",
        &["web"],
        "projects/bad/ingress.yml:6:15: error: `protocol: udp` needs `router: udp`",
    );
}

#[test]
fn plain_tcp_on_the_shared_tls_entrypoint() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    router: tcp\n    port: 5432\n",
        &["web"],
        "projects/bad/ingress.yml:2:*: error: tcp row without TLS would need HostSNI(*) on the shared TLS entrypoint :443; give it a dedicated `hostport` or set `passthrough: true`",
    );
}

#[test]
fn plain_tcp_on_an_explicit_https_hostport() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    router: tcp\n    hostport: 8443\n",
        &["web"],
    );
    root.write("projects/itsup.yml", "proxy:\n  httpsPort: 8443\n");
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/ingress.yml:2:*: error: tcp row without TLS would need HostSNI(*) on the shared TLS entrypoint :8443; give it a dedicated `hostport` or set `passthrough: true`",
        ],
    );
}

#[test]
fn tcp_sni_row_needs_a_domain() {
    bad_project(
        "ingress:\n  - service: web\n    router: tcp\n    passthrough: true\n",
        &["web"],
        "projects/bad/ingress.yml:2:*: error: tcp row routed by SNI needs a `domain` (or `tls.main`)",
    );
}

#[test]
fn udp_row_needs_a_hostport() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    router: udp\n    protocol: udp\n",
        &["web"],
        "projects/bad/ingress.yml:2:*: error: udp row needs a `hostport` to listen on",
    );
}

#[test]
fn udp_rows_under_haproxy() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    router: udp\n    protocol: udp\n    hostport: 5353\n",
        &["web"],
    );
    root.write("projects/itsup.yml", "proxy:\n  engine: haproxy\n");
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/ingress.yml:4:13: error: HAProxy cannot route UDP; use engine traefik or remove this row",
        ],
    );
    assert!(root.exists("proxy/haproxy/haproxy.cfg"));
}

#[test]
fn udp_rows_under_traefik_are_fine() {
    let root = Root::new();
    root.ingress("dns1", "ingress:\n  - service: web\n    domain: dns1.example.com\n    router: udp\n    protocol: udp\n    hostport: 5353\n", &["web"]);
    root.itsup(&["render"]).code(0).exactly(&[]);
    assert!(root.read("proxy/traefik/traefik.yml").contains("5353/udp"));
}

/// Engine itsup serves tcp and udp rows and their allowlists, and an http row's allowlist
/// becomes an `ip_allow_list` middleware on its route.
#[test]
fn engine_itsup_takes_tcp_and_udp_rows_and_http_allowlists() {
    let root = Root::new();
    root.ingress(
        "l4",
        "ingress:\n  - service: db\n    router: tcp\n    port: 5432\n    hostport: 5432\n    allow_source_ips: [10.0.0.0/8]\n  - service: dns\n    router: udp\n    protocol: udp\n    port: 53\n    hostport: 5353\n",
        &["db", "dns"],
    );
    root.write("projects/itsup.yml", "proxy:\n  engine: itsup\n");
    root.itsup(&["render"]).code(0).exactly(&[]);
    let proxy = root.read("proxy/itsup/proxy.yml");
    assert!(
        proxy.contains("0.0.0.0:5432") && proxy.contains("0.0.0.0:5353"),
        "{proxy}"
    );
    assert!(proxy.contains("10.0.0.0/8"), "the tcp allowlist: {proxy}");
    let compose = root.read("proxy/docker-compose.yml");
    assert!(
        compose.contains("5432:5432") && compose.contains("5353:5353/udp"),
        "{compose}"
    );

    let http = Root::new();
    http.ingress(
        "web",
        "ingress:\n  - service: web\n    domain: web.example.com\n    port: 80\n    allow_source_ips: [10.0.0.0/8]\n",
        &["web"],
    );
    http.write("projects/itsup.yml", "proxy:\n  engine: itsup\n");
    http.itsup(&["render"]).code(0).exactly(&[]);
    let proxy = http.read("proxy/itsup/proxy.yml");
    assert!(
        proxy.contains("ip_allow_list") && proxy.contains("10.0.0.0/8"),
        "{proxy}"
    );
}

// ---------------------------------------------------------------------------------------------
// Platform files: an error here renders nothing at all
// ---------------------------------------------------------------------------------------------

#[test]
fn itsup_yml_unknown_key_with_suggestion() {
    bad_platform(
        "projects/itsup.yml",
        "traefikDomian: traefik.example.com\n",
        &[
            "projects/itsup.yml:1:1: error: unknown key `traefikDomian` (did you mean `traefikDomain`?)",
        ],
    );
}

#[test]
fn itsup_yml_unknown_nested_key_with_suggestion() {
    bad_platform(
        "projects/itsup.yml",
        "proxy:\n  engine: traefik\n  subnett: 10.0.0.0/16\n",
        &["projects/itsup.yml:3:3: error: unknown key `subnett` (did you mean `subnet`?)"],
    );
}

#[test]

fn itsup_yml_engine_typo() {
    bad_platform(
        "projects/itsup.yml",
        "proxy:\n  engine: trafik\n",
        &[
            "projects/itsup.yml:2:11: error: `engine` must be one of traefik, haproxy, itsup, found \"trafik\" (did you mean `traefik`?)",
        ],
    );
}

#[test]
fn itsup_yml_bad_subnet() {
    bad_platform(
        "projects/itsup.yml",
        "proxy:\n  subnet: 10.0.0.0/33\n",
        &["projects/itsup.yml:2:11: error: `subnet` \"10.0.0.0/33\" is not an IPv4 CIDR range"],
    );
}

#[test]
fn itsup_yml_ports_must_differ() {
    bad_platform(
        "projects/itsup.yml",
        "proxy:\n  httpPort: 8080\n  httpsPort: 8080\n",
        &["projects/itsup.yml:3:14: error: `httpPort` and `httpsPort` must differ"],
    );
}

#[test]
fn itsup_yml_acme_ca_server_and_bundle_checked() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.write("projects/ca/junk.pem", "not a certificate\n");
    root.write(
        "projects/itsup.yml",
        "acme:\n  caServer: http://pebble:14000/dir\n  caBundle: ca/junk.pem\n",
    );
    assert_nothing_rendered(
        &root,
        &[
            "projects/itsup.yml:2:13: error: `caServer` \"http://pebble:14000/dir\": must be an https:// URL of the ACME directory",
            "projects/itsup.yml:3:13: error: `caBundle` \"ca/junk.pem\": holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ],
    );
    root.write(
        "projects/itsup.yml",
        "acme:\n  caBundle: ../secrets/ca.pem\n",
    );
    assert_nothing_rendered(
        &root,
        &[
            "projects/itsup.yml:2:13: error: `caBundle` \"../secrets/ca.pem\": must be a path inside projects/ (relative, without `..`)",
        ],
    );
}

#[test]
fn itsup_yml_acme_ca_server_refused_by_engines_without_acme() {
    bad_platform(
        "projects/itsup.yml",
        "proxy:\n  engine: haproxy\nacme:\n  caServer: https://ca.internal/dir\n",
        &[
            "projects/itsup.yml:4:13: error: `acme.caServer` is only honoured by engines traefik and itsup (engine haproxy obtains no ACME certificates: it serves the PEM files in its certs folder)",
        ],
    );
}

#[test]
fn itsup_yml_port_out_of_range() {
    bad_platform(
        "projects/itsup.yml",
        "proxy:\n  httpsPort: 100000\n",
        &["projects/itsup.yml:2:14: error: `httpsPort` is 100000, out of the port range 1–65535"],
    );
}

#[test]
fn itsup_yml_bad_network_and_dashboard_domain() {
    bad_platform(
        "projects/itsup.yml",
        "traefikDomain: 'traefik example.com'\nproxy:\n  network: proxy_net\n",
        &[
            "projects/itsup.yml:1:16: error: `traefikDomain`: \"traefik example.com\" is not a valid domain: it contains ' '",
            "projects/itsup.yml:3:12: error: `network`: label `proxy_net` contains '_' (only a-z, 0-9 and `-`)",
        ],
    );
}

#[test]
fn itsup_yml_invalid_yaml() {
    bad_platform(
        "projects/itsup.yml",
        "proxy:\n  engine: [traefik\n",
        &[
            "projects/itsup.yml:3:1: error: invalid YAML: while parsing a flow sequence, expected ',' or ']'",
        ],
    );
}

#[test]
fn traefik_yml_must_be_a_mapping() {
    bad_platform(
        "projects/traefik.yml",
        "- not\n- a mapping\n",
        &["projects/traefik.yml:1:1: error: must be a mapping of native Traefik configuration"],
    );
}

#[test]
fn middlewares_yml_duplicate_key() {
    bad_platform(
        "projects/middlewares.yml",
        "http:\n  middlewares:\n    a:\n      headers: {}\n    a:\n      headers: {}\n",
        &["projects/middlewares.yml:5:5: error: invalid YAML: duplicate key `a`"],
    );
}

#[test]
fn platform_and_project_errors_are_reported_together() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domian: bad.example.com\n",
        &["web"],
    );
    root.write("projects/itsup.yml", "proxy:\n  subnet: nope\n");
    assert_nothing_rendered(
        &root,
        &[
            "projects/bad/ingress.yml:3:5: error: unknown key `domian` (did you mean `domain`?)",
            "projects/itsup.yml:2:11: error: `subnet` \"nope\" is not an IPv4 CIDR range",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile files
// ---------------------------------------------------------------------------------------------

fn alias_bomb() -> String {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    text
}

#[test]
fn alias_bomb_in_a_compose_file() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
        &[],
    );
    root.write(
        "projects/bad/docker-compose.yml",
        format!(
            "services:\n  web:\n    image: nginx\nx-bomb:\n{}",
            indent(&alias_bomb())
        ),
    );
    let started = std::time::Instant::now();
    let run = root.itsup(&["render"]);
    assert!(
        started.elapsed().as_secs() < 5,
        "alias bomb took {:?}",
        started.elapsed()
    );
    run.code(1);
    let errors = run.errors();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].starts_with("projects/bad/docker-compose.yml:")
            && errors[0].contains("error: invalid YAML:")
            && errors[0].contains("alias"),
        "{}",
        run.stderr
    );
    assert!(!root.exists("upstream/bad"));
    assert!(root.exists("upstream/good/docker-compose.yml"));
}

#[test]
fn alias_bomb_in_itsup_yml() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.write("projects/itsup.yml", alias_bomb());
    let run = root.itsup(&["render"]);
    run.code(1);
    assert_eq!(run.errors().len(), 1, "{}", run.stderr);
    assert!(
        run.errors()[0].starts_with("projects/itsup.yml:"),
        "{}",
        run.stderr
    );
    assert!(!root.exists("proxy") && !root.exists("upstream"));
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[test]
fn fifty_megabyte_compose_file() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
        &[],
    );
    let f = std::fs::File::create(root.join("projects/bad/docker-compose.yml")).expect("create");
    f.set_len(50 * 1024 * 1024).expect("sparse file");
    drop(f);
    let started = std::time::Instant::now();
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/docker-compose.yml:1:1: error: file is 50.0 MiB, more than the 4 MiB an input file may have",
        ],
    );
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn fifty_megabyte_itsup_yml() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    let f = std::fs::File::create(root.join("projects/itsup.yml")).expect("create");
    f.set_len(50 * 1024 * 1024).expect("sparse file");
    drop(f);
    assert_nothing_rendered(
        &root,
        &[
            "projects/itsup.yml:1:1: error: file is 50.0 MiB, more than the 4 MiB an input file may have",
        ],
    );
}

#[test]
fn non_utf8_bytes() {
    let root = with_bad("", &["web"]);
    root.write(
        "projects/bad/ingress.yml",
        b"ingress:\n  - service: web\n    domain: bad\xff\xfe.example.com\n".as_slice(),
    );
    assert_left_out(
        &root,
        &["bad"],
        &["projects/bad/ingress.yml:3:16: error: file is not valid UTF-8"],
    );
}

#[test]
fn duplicate_yaml_keys() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n    domain: evil.example.com\n",
        &["web"],
        "projects/bad/ingress.yml:4:5: error: invalid YAML: duplicate key `domain`",
    );
}

#[test]
fn two_documents_in_one_file() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\n---\ningress: []\n",
        &["web"],
        "projects/bad/ingress.yml:4:1: error: invalid YAML: only one YAML document per file is supported",
    );
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let depth = 100_000;
    let text = format!(
        "services:\n  web:\n    image: nginx\nx-deep: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
        &[],
    );
    root.write("projects/bad/docker-compose.yml", text);
    let run = root.itsup(&["render"]);
    run.code(1);
    assert_eq!(run.errors().len(), 1, "{}", run.stderr);
    assert!(
        run.errors()[0].starts_with("projects/bad/docker-compose.yml:"),
        "{}",
        run.stderr
    );
    assert!(root.exists("upstream/good/docker-compose.yml"));
}

#[test]
fn both_ingress_yml_and_itsup_project_yml() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
        &["web"],
    );
    root.write(
        "projects/bad/itsup-project.yml",
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
    );
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/itsup-project.yml:1:1: error: project has both ingress.yml and itsup-project.yml; keep one (they share one schema)",
        ],
    );
}

#[test]
fn itsup_project_yml_alone_is_a_project() {
    let root = Root::new();
    root.write(
        "projects/old/itsup-project.yml",
        "ingress:\n  - service: web\n    domain: old.example.com\n",
    )
    .compose("old", &["web"]);
    root.itsup(&["render"]).code(0).exactly(&[]);
    assert!(root.exists("upstream/old/docker-compose.yml"));
}

#[test]
fn symlink_loop_in_projects() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    std::os::unix::fs::symlink("a", root.join("projects/a")).expect("symlink");
    let run = root.itsup(&["render"]);
    // Not a folder, so not a project: ignored like any stray file.
    run.code(0).exactly(&[]);
    assert!(root.exists("upstream/good/docker-compose.yml"));
    root.itsup(&["validate"]).code(0).exactly(&[]);
}

#[test]
fn symlinked_project_folder() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    // A real project outside projects/ linked in.
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        outside.path().join("ingress.yml"),
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
    )
    .expect("write");
    std::fs::write(
        outside.path().join("docker-compose.yml"),
        "services:\n  web:\n    image: nginx\n",
    )
    .expect("write");
    std::os::unix::fs::symlink(outside.path(), root.join("projects/bad")).expect("symlink");
    let want = "projects/bad:1:1: error: project folder is a symlink; projects must be real folders inside projects/";
    root.itsup(&["validate"]).code(1).exactly(&[want]);
    root.itsup(&["render"]).code(1).exactly(&[want]);
    assert!(root.exists("upstream/good/docker-compose.yml"));
    assert!(!root.exists("upstream/bad"));
    assert!(!root.generated_text().contains(BAD_DOMAIN));
}

#[test]

fn symlinked_project_folder_is_left_out_not_pruned() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN).project("bad", BAD_DOMAIN);
    root.itsup(&["render"]).code(0);
    assert!(root.exists("upstream/bad/docker-compose.yml"));
    // The folder is moved out and linked back in: an error, but never a reason to prune.
    let outside = tempfile::tempdir().expect("tempdir");
    let moved = outside.path().join("bad");
    std::fs::rename(root.join("projects/bad"), &moved).expect("move");
    std::os::unix::fs::symlink(&moved, root.join("projects/bad")).expect("symlink");
    let run = root.itsup(&["render"]);
    run.code(1).exactly(&["projects/bad:1:1: error: project folder is a symlink; projects must be real folders inside projects/"]);
    assert!(run.stderr.contains("left out: bad"), "{}", run.stderr);
    assert!(
        root.exists("upstream/bad/docker-compose.yml"),
        "a broken project's generated files were pruned\n{}",
        run.stdout
    );
}

#[test]
fn symlinked_input_file_leading_out_of_the_root() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
        &[],
    );
    std::os::unix::fs::symlink("/etc/passwd", root.join("projects/bad/docker-compose.yml"))
        .expect("symlink");
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/docker-compose.yml:1:1: error: is a symlink; input files must be regular files",
        ],
    );
}

#[test]
fn self_referencing_symlink_file() {
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
        &[],
    );
    std::os::unix::fs::symlink(
        "docker-compose.yml",
        root.join("projects/bad/docker-compose.yml"),
    )
    .expect("symlink");
    assert_left_out(
        &root,
        &["bad"],
        &[
            "projects/bad/docker-compose.yml:1:1: error: is a symlink; input files must be regular files",
        ],
    );
}

#[test]
fn project_file_that_is_a_directory() {
    let root = with_bad("", &["web"]);
    std::fs::remove_file(root.join("projects/bad/ingress.yml")).expect("rm");
    std::fs::create_dir(root.join("projects/bad/ingress.yml")).expect("mkdir");
    assert_left_out(
        &root,
        &["bad"],
        &["projects/bad/ingress.yml:1:1: error: is not a regular file"],
    );
}

#[test]
fn missing_projects_folder_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = itsup(dir.path(), &["render"]);
    run.code(1);
    assert!(run.stderr.contains("projects"), "{}", run.stderr);
    assert!(!dir.path().join("proxy").exists());
}

#[test]
fn empty_platform_files_are_fine() {
    let root = Root::new();
    root.write("projects/itsup.yml", "");
    root.write("projects/traefik.yml", "");
    root.write("projects/middlewares.yml", "# only a comment\n");
    root.project("good", GOOD_DOMAIN);
    root.itsup(&["render"]).code(0).exactly(&[]);
}

#[test]

fn empty_project_file_is_a_project_with_defaults() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.write("projects/empty/ingress.yml", "# nothing routed yet\n");
    root.compose("empty", &["worker"]);
    root.itsup(&["validate"]).code(0).exactly(&[]);
    root.itsup(&["render"]).code(0).exactly(&[]);
    assert!(root.exists("upstream/empty/docker-compose.yml"));
}

#[test]

fn mapping_positions_point_at_the_mapping_start() {
    bad_project(
        "ingress:\n  - service: web\n    router: udp\n    protocol: udp\n",
        &["web"],
        "projects/bad/ingress.yml:2:5: error: udp row needs a `hostport` to listen on",
    );
    bad_project(
        "ingress:\n  service: web\n  domain: bad.example.com\n",
        &["web"],
        "projects/bad/ingress.yml:2:3: error: `ingress`: {\"service\":\"web\",\"domain\":\"bad.example.com\"} is not of type \"array\"",
    );
    let root = with_bad(
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
        &[],
    );
    root.write("projects/bad/docker-compose.yml", "volumes:\n  data: {}\n");
    assert_left_out(
        &root,
        &["bad"],
        &["projects/bad/docker-compose.yml:1:1: error: a compose file needs a `services` mapping"],
    );
}

#[test]

fn rollout_value_typo() {
    bad_project(
        "ingress:\n  - service: web\n    domain: bad.example.com\nrollout:\n  web: stopfirst\n",
        &["web"],
        "projects/bad/ingress.yml:5:8: error: `web` must be one of start-first, stop-first, found \"stopfirst\" (did you mean `stop-first`?)",
    );
}

#[test]

fn trailing_dot_domain_is_the_same_host() {
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    root.project("a", "same.example.com");
    root.project("b", "same.example.com.");
    let run = root.itsup(&["render"]);
    run.code(1);
    // Either rejected outright or reported as a second claim on same.example.com: in both
    // cases `b` is left out and `a` keeps the name.
    let errors = run.errors();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].starts_with("projects/b/ingress.yml:3:"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("left out: b"), "{}", run.stderr);
    assert!(root.exists("upstream/a/docker-compose.yml"));
    assert!(!root.exists("upstream/b"));
}

#[test]

fn non_utf8_project_folder_name_breaks_only_itself() {
    use std::os::unix::ffi::OsStrExt;
    let root = Root::new();
    root.project("good", GOOD_DOMAIN);
    let name = std::ffi::OsStr::from_bytes(b"bad\xff");
    let dir = root.join("projects").join(name);
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(
        dir.join("ingress.yml"),
        "ingress:\n  - service: web\n    domain: bad.example.com\n",
    )
    .expect("write");
    let run = root.itsup(&["render"]);
    run.code(1);
    let errors = run.errors();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].starts_with("projects/bad") && errors[0].contains("not UTF-8"),
        "{}",
        run.stderr
    );
    assert!(root.exists("proxy/docker-compose.yml"), "{}", run.stderr);
    assert!(root.exists("upstream/good/docker-compose.yml"));
    assert!(!root.generated_text().contains(BAD_DOMAIN));
}

const ITSUP_ENGINE: &str = "proxy:\n  engine: itsup\n";
const MIDDLEWARE_ROW: &str = "ingress:\n  - service: web\n    domain: shop.example.com\n    port: 80\n    allow_source_ips: [10.0.0.0/8]\n    middlewares: [limit, auth, secure]\n";

#[test]
fn engine_itsup_renders_middlewares_yml_kinds_it_can_honour() {
    let root = Root::new();
    root.write("projects/itsup.yml", ITSUP_ENGINE);
    root.write(
        "projects/middlewares.yml",
        "http:\n  middlewares:\n    limit:\n      rateLimit:\n        average: 100\n        period: 1m\n        burst: 20\n        sourceCriterion:\n          requestHeaderName: X-Api-Key\n    auth:\n      basicAuth:\n        users: ['bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=']\n    secure:\n      headers:\n        frameDeny: true\n        stsSeconds: 600\n        accessControlAllowOriginList: ['https://ui.example.com']\n",
    );
    root.ingress("shop", MIDDLEWARE_ROW, &["web"]);
    root.itsup(&["validate"]).code(0).exactly(&[]);
    root.itsup(&["render"]).code(0);
    let text = root.read("proxy/itsup/proxy.yml");
    let config: serde_json::Value = serde_yaml_ng::from_str(&text).expect("proxy.yml");
    let route = &config["routes"][0];
    assert_eq!(
        route["middlewares"],
        serde_json::json!(["shop-web-80-allowlist", "limit", "auth", "secure"]),
        "{text}"
    );
    let m = &config["middlewares"];
    assert_eq!(
        m["shop-web-80-allowlist"]["ip_allow_list"]["source_range"][0], "10.0.0.0/8",
        "{text}"
    );
    assert_eq!(m["limit"]["rate_limit"]["period_ms"], 60_000);
    assert_eq!(m["limit"]["rate_limit"]["key"]["header"], "X-Api-Key");
    assert_eq!(
        m["auth"]["basic_auth"]["users"][0],
        "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="
    );
    assert_eq!(m["secure"]["headers"]["frame_options"], "DENY");
    // What was written is what the proxy itself accepts.
    let check = common::cmd()
        .args(["proxy", "--check", "--config"])
        .arg(root.join("proxy/itsup/proxy.yml"))
        .output()
        .expect("itsup proxy --check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn engine_itsup_refuses_middleware_kinds_and_keys_it_cannot_honour() {
    let root = Root::new();
    root.write("projects/itsup.yml", ITSUP_ENGINE);
    root.write(
        "projects/middlewares.yml",
        "http:\n  middlewares:\n    limit:\n      rateLimit:\n        average: 100\n        sourceCriterion:\n          ipStrategy:\n            depth: 2\n    auth:\n      basicAuth:\n        usersFile: /etc/htpasswd\n    secure:\n      compress: {}\n",
    );
    root.ingress("shop", MIDDLEWARE_ROW, &["web"]);
    let run = root.itsup(&["validate"]);
    run.code(1).exactly(&[
        "projects/middlewares.yml:7:11: error: `rateLimit.sourceCriterion.ipStrategy` is not supported by engine itsup (it keys by the client address behind trusted_proxies, requestHeaderName or requestHost)",
        "projects/middlewares.yml:11:9: error: `basicAuth.usersFile` is not supported by engine itsup; remove it or use engine traefik",
        "projects/middlewares.yml:13:7: error: middleware kind `compress` is not supported by engine itsup (it applies ipAllowList, basicAuth, headers, redirectScheme, redirectRegex, stripPrefix, rateLimit); use engine traefik for it",
    ]);
    root.itsup(&["render"]).code(1);
}
