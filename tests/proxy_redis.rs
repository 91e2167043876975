//! `itsup proxy` with state in a real Redis (Debian's `redis-server`, started on a free
//! loopback port): a rate limit shared by two proxy processes, the declared policy while
//! Redis is down and recovery once it is back, and server admin states that survive a proxy
//! restart and reach every proxy using the same Redis.

mod proxy_support;

use std::time::Duration;

use hyper::StatusCode;
use proxy_support::redis::Redis;
use proxy_support::*;

fn config(redis: &Redis, app: &Upstream) -> String {
    format!(
        "{HEAD}redis: {{url: '{}', key_prefix: 'itsup-test:'}}
middlewares:
  open:
    rate_limit: {{average: 1, period_ms: 60000, burst: 4, key: route, shared: true, on_redis_error: fail_open}}
  closed:
    rate_limit: {{average: 1, period_ms: 60000, burst: 4, key: route, shared: true, on_redis_error: fail_closed}}
routes:
  - {{host: open.test, cluster: app, middlewares: [open]}}
  - {{host: closed.test, cluster: app, middlewares: [closed]}}
clusters:
  app: {{servers: [{{address: '{}'}}]}}
",
        redis.url(),
        app.addr
    )
}

fn count(statuses: &[StatusCode], want: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == want).count()
}

#[test]
fn a_shared_limit_holds_across_two_proxies() {
    mt().block_on(async {
        let redis = Redis::start();
        let app = Upstream::start("app").await;
        let a = Proxy::start(&config(&redis, &app));
        let b = Proxy::start(&config(&redis, &app));
        // Burst 4 for the route, no refill within the test: 4 pass in all, whichever proxy.
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.extend(keep_alive(a.addr, "open.test", "/", 1, |_| Vec::new()).await);
            statuses.extend(keep_alive(b.addr, "open.test", "/", 1, |_| Vec::new()).await);
        }
        assert_eq!(count(&statuses, StatusCode::OK), 4, "{statuses:?}");
        assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 4);
        assert_eq!(app.count(), 4);
        assert_eq!(redis.cli(&["EXISTS", "itsup-test:rl:open:one"]), "1");
    });
}

#[test]
fn redis_down_applies_the_declared_policy_then_recovers() {
    mt().block_on(async {
        let mut redis = Redis::start();
        let app = Upstream::start("app").await;
        let proxy = Proxy::start(&config(&redis, &app));
        let burst = keep_alive(proxy.addr, "closed.test", "/", 5, |_| Vec::new()).await;
        assert_eq!(count(&burst, StatusCode::OK), 4);
        assert_eq!(burst[4], StatusCode::TOO_MANY_REQUESTS);

        redis.kill();
        let open = keep_alive(proxy.addr, "open.test", "/", 6, |_| Vec::new()).await;
        assert_eq!(open, vec![StatusCode::OK; 6], "fail_open lets requests through");
        let closed = keep_alive(proxy.addr, "closed.test", "/", 3, |_| Vec::new()).await;
        assert_eq!(closed, vec![StatusCode::SERVICE_UNAVAILABLE; 3], "fail_closed refuses");
        let m = |outcome: &str, name: &str| {
            format!("itsup_proxy_middleware_requests_total{{middleware=\"{name}\",kind=\"rate_limit\",outcome=\"{outcome}\"}}")
        };
        assert_eq!(proxy.metric(&m("redis_fail_open", "open")).await, 6.0);
        assert_eq!(proxy.metric(&m("redis_fail_closed", "closed")).await, 3.0);
        assert!(proxy.metric("itsup_proxy_redis_errors_total").await >= 1.0);

        // Back (empty, nothing was persisted): the limit applies again once the proxy
        // reconnects.
        redis.restart();
        proxy
            .wait_for("the limit again after redis restarts", Duration::from_secs(10), || async {
                let s = keep_alive(proxy.addr, "closed.test", "/", 1, |_| Vec::new()).await;
                s == [StatusCode::OK]
            })
            .await;
        let rest = keep_alive(proxy.addr, "closed.test", "/", 5, |_| Vec::new()).await;
        assert_eq!(count(&rest, StatusCode::OK), 3, "{rest:?}");
        assert_eq!(count(&rest, StatusCode::TOO_MANY_REQUESTS), 2);
    });
}

#[test]
fn admin_states_survive_a_restart_and_reach_every_proxy() {
    mt().block_on(async {
        let redis = Redis::start();
        let app = Upstream::start("app").await;
        let cfg = config(&redis, &app);
        let a = Proxy::start(&cfg);
        let b = Proxy::start(&cfg);
        assert_eq!(a.set_state("app", app.addr, "maint").await, StatusCode::OK);
        let state_of = |servers: serde_json::Value| {
            servers
                .as_array()
                .and_then(|l| l.first())
                .and_then(|s| s.get("admin_state").or_else(|| s.get("state")))
                .and_then(|s| s.as_str())
                .map(str::to_string)
                .unwrap_or_default()
        };
        b.wait_for(
            "maint to reach the other proxy",
            Duration::from_secs(10),
            || async { state_of(b.servers().await) == "maint" },
        )
        .await;
        let (s, _, _) = get(b.addr, "open.test", "/").await;
        assert_eq!(
            s,
            StatusCode::SERVICE_UNAVAILABLE,
            "no traffic to a server in maint"
        );
        drop(a);
        let a = Proxy::start(&cfg);
        assert_eq!(
            state_of(a.servers().await),
            "maint",
            "applied at start, before traffic"
        );
        assert_eq!(b.set_state("app", app.addr, "ready").await, StatusCode::OK);
        a.wait_for(
            "ready again everywhere",
            Duration::from_secs(10),
            || async { state_of(a.servers().await) == "ready" },
        )
        .await;
    });
}
