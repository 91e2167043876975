//! `projects/middlewares.yml` with engine itsup: each Traefik middleware (`ipAllowList`,
//! `basicAuth`, `headers`, `redirectScheme`, `redirectRegex`, `stripPrefix`, `rateLimit`)
//! translated into the proxy's own `middlewares` entry (see `proxy::base::config_middleware`).
//! A kind or key the proxy cannot honour is a problem at its place in the file, never dropped
//! silently: a middleware half applied (an allowlist without its `ipStrategy`, a rate limit
//! on the wrong key) would be worse than none. `render::itsup` uses the same translation.

use serde_json::{Map, Value, json};

use crate::diagnostic::Diagnostic;
use crate::load::Source;
use crate::proxy::base::config_middleware::{self, Middleware, RedisConfig};
use crate::yaml::escape_pointer;

/// A problem at a JSON pointer of `middlewares.yml`; `key` when it is about the key itself.
pub struct Refusal {
    pub pointer: String,
    pub key: bool,
    pub message: String,
}

/// What a middleware of `middlewares.yml` becomes for engine itsup.
pub struct Translated {
    /// The `proxy.yml` middleware (`{"rate_limit": {...}}`).
    pub middleware: Value,
    /// `redis://` URL a shared rate limit needs.
    pub redis: Option<String>,
}

/// Every middleware of the file, translated, or the problems of those that cannot be.
pub fn translate_all(file: &Value) -> (Vec<(String, Translated)>, Vec<Refusal>) {
    let mut out = Vec::new();
    let mut refusals = Vec::new();
    let Some(defs) = file.pointer("/http/middlewares").and_then(Value::as_object) else {
        return (out, refusals);
    };
    for (name, def) in defs {
        let at = format!("/http/middlewares/{}", escape_pointer(name));
        match translate(name, &at, def) {
            Ok(t) => out.push((name.clone(), t)),
            Err(mut r) => refusals.append(&mut r),
        }
    }
    (out, refusals)
}

/// Diagnostics for `middlewares.yml` under engine itsup.
pub fn check(src: &Source, diagnostics: &mut Vec<Diagnostic>) {
    let (_, refusals) = translate_all(&src.doc.value);
    for r in refusals {
        diagnostics.push(Diagnostic::new(
            &src.path,
            src.doc.pos(&r.pointer, r.key),
            None,
            r.message,
        ));
    }
}

fn refuse(pointer: String, message: String) -> Vec<Refusal> {
    vec![Refusal {
        pointer,
        key: true,
        message,
    }]
}

fn translate(name: &str, at: &str, def: &Value) -> Result<Translated, Vec<Refusal>> {
    let Some(kinds) = def.as_object().filter(|m| m.len() == 1) else {
        return Err(vec![Refusal {
            pointer: at.to_string(),
            key: true,
            message: "a middleware needs exactly one kind".into(),
        }]);
    };
    let Some((kind, body)) = kinds.iter().next() else {
        return Err(Vec::new());
    };
    let at = format!("{at}/{}", escape_pointer(kind));
    let empty = Map::new();
    let body = body.as_object().unwrap_or(&empty);
    let mut t = Fields {
        at: &at,
        kind,
        body,
        problems: Vec::new(),
    };
    let (middleware, redis) = match kind.as_str() {
        "ipAllowList" => (
            json!({ "ip_allow_list": { "source_range": t.strings("sourceRange") } }),
            None,
        ),
        "basicAuth" => (
            json!({ "basic_auth": {
                "users": t.strings("users"),
                "realm": t.opt_string("realm").unwrap_or_else(|| "traefik".into()),
                "remove_header": t.bool("removeHeader"),
            }}),
            None,
        ),
        "headers" => (headers(&mut t), None),
        "redirectScheme" => {
            let port = t.opt_string("port").and_then(|p| p.parse::<u16>().ok());
            (
                json!({ "redirect_scheme": {
                    "scheme": t.opt_string("scheme").unwrap_or_else(|| "https".into()),
                    "port": port,
                    "permanent": t.bool("permanent"),
                }}),
                None,
            )
        }
        "redirectRegex" => (
            json!({ "redirect_regex": {
                "regex": t.opt_string("regex").unwrap_or_default(),
                "replacement": t.opt_string("replacement").unwrap_or_default(),
                "permanent": t.bool("permanent"),
            }}),
            None,
        ),
        "stripPrefix" => {
            t.seen("forceSlash");
            (
                json!({ "strip_prefix": { "prefixes": t.strings("prefixes") } }),
                None,
            )
        }
        "rateLimit" => rate_limit(&mut t),
        other => {
            return Err(refuse(
                at.clone(),
                format!(
                    "middleware kind `{other}` is not supported by engine itsup (it applies ipAllowList, basicAuth, headers, redirectScheme, redirectRegex, stripPrefix, rateLimit); use engine traefik for it"
                ),
            ));
        }
    };
    t.refuse_unknown();
    if t.problems.is_empty() {
        t.problems = proxy_problems(name, &at, &middleware, redis.as_deref());
    }
    if t.problems.is_empty() {
        Ok(Translated { middleware, redis })
    } else {
        Err(t.problems)
    }
}

/// The proxy's own checks of the translated middleware (an empty user list, a regex the
/// proxy cannot compile, ...), reported at the kind's key.
fn proxy_problems(name: &str, at: &str, middleware: &Value, redis: Option<&str>) -> Vec<Refusal> {
    let refusal = |message: String| Refusal {
        pointer: at.to_string(),
        key: true,
        message,
    };
    let m: Middleware = match serde_json::from_value(middleware.clone()) {
        Ok(m) => m,
        Err(e) => {
            return vec![refusal(format!(
                "engine itsup cannot apply this middleware: {e}"
            ))];
        }
    };
    let redis = redis.map(|url| RedisConfig {
        url: url.to_string(),
        key_prefix: "itsup:".into(),
        timeout_ms: 250,
    });
    let mut errors = Vec::new();
    let one = std::collections::BTreeMap::from([(name.to_string(), m)]);
    config_middleware::check(&one, redis.as_ref(), &[], &mut errors);
    errors
        .into_iter()
        .map(|e| refusal(format!("engine itsup cannot apply this middleware: {e}")))
        .collect()
}

/// Reads the fields of one middleware body, remembering which were understood.
struct Fields<'a> {
    at: &'a str,
    kind: &'a str,
    body: &'a Map<String, Value>,
    problems: Vec<Refusal>,
}

/// Keys of each kind engine itsup understands (anything else is refused).
fn known(kind: &str) -> &'static [&'static str] {
    match kind {
        "ipAllowList" => &["sourceRange"],
        "basicAuth" => &["users", "realm", "removeHeader"],
        "headers" => &[
            "stsSeconds",
            "stsIncludeSubdomains",
            "stsPreload",
            "forceSTSHeader",
            "frameDeny",
            "customFrameOptionsValue",
            "contentTypeNosniff",
            "contentSecurityPolicy",
            "referrerPolicy",
            "customResponseHeaders",
            "customRequestHeaders",
            "accessControlAllowOriginList",
            "accessControlAllowMethods",
            "accessControlAllowHeaders",
            "accessControlExposeHeaders",
            "accessControlAllowCredentials",
            "accessControlMaxAge",
            "addVaryHeader",
        ],
        "redirectScheme" => &["scheme", "port", "permanent"],
        "redirectRegex" => &["regex", "replacement", "permanent"],
        "stripPrefix" => &["prefixes", "forceSlash"],
        "rateLimit" => &["average", "period", "burst", "sourceCriterion", "redis"],
        _ => &[],
    }
}

impl Fields<'_> {
    /// `key` is a pointer tail already (`users/0`, `customResponseHeaders/<escaped>`).
    fn ptr(&self, key: &str) -> String {
        format!("{}/{key}", self.at)
    }

    fn seen(&self, _key: &str) {}

    fn problem(&mut self, key: &str, message: String) {
        self.problems.push(Refusal {
            pointer: self.ptr(key),
            key: false,
            message,
        });
    }

    /// A scalar as text; Go templates cannot be evaluated by engine itsup.
    fn text_of(&mut self, key: &str, v: &Value) -> Option<String> {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                self.problem(
                    key,
                    format!("`{}.{key}`: expected a single value", self.kind),
                );
                return None;
            }
        };
        if text.contains("{{") {
            self.problem(
                key,
                format!(
                    "`{}.{key}`: Go templates are Traefik's; engine itsup cannot evaluate them",
                    self.kind
                ),
            );
            return None;
        }
        Some(text)
    }

    fn opt_string(&mut self, key: &str) -> Option<String> {
        let v = self.body.get(key)?;
        self.text_of(key, v)
    }

    fn bool(&mut self, key: &str) -> bool {
        match self.body.get(key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(_) => {
                self.problem(
                    key,
                    format!("`{}.{key}`: expected true or false", self.kind),
                );
                false
            }
        }
    }

    fn number(&mut self, key: &str) -> Option<u64> {
        let text = self.opt_string(key)?;
        match text.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.problem(
                    key,
                    format!("`{}.{key}`: {text:?} is not a whole number", self.kind),
                );
                None
            }
        }
    }

    fn strings(&mut self, key: &str) -> Vec<String> {
        match self.body.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let items = items.clone();
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| self.text_of(&format!("{key}/{i}"), v))
                    .collect()
            }
            Some(v) => {
                let v = v.clone();
                self.text_of(key, &v).into_iter().collect()
            }
        }
    }

    fn map(&mut self, key: &str) -> Map<String, Value> {
        let Some(Value::Object(m)) = self.body.get(key) else {
            return Map::new();
        };
        let m = m.clone();
        m.iter()
            .filter_map(|(k, v)| {
                let text = self.text_of(&format!("{key}/{}", escape_pointer(k)), v)?;
                Some((k.clone(), Value::String(text)))
            })
            .collect()
    }

    fn refuse_unknown(&mut self) {
        let allowed = known(self.kind);
        for key in self.body.keys() {
            if !allowed.contains(&key.as_str()) {
                self.problems.push(Refusal {
                    pointer: self.ptr(key),
                    key: true,
                    message: format!(
                        "`{}.{key}` is not supported by engine itsup; remove it or use engine traefik",
                        self.kind
                    ),
                });
            }
        }
    }
}

fn headers(t: &mut Fields<'_>) -> Value {
    let frame = match t.opt_string("customFrameOptionsValue") {
        Some(v) => Some(v),
        None => t.bool("frameDeny").then(|| "DENY".to_string()),
    };
    t.bool("forceSTSHeader");
    t.bool("addVaryHeader");
    let origins = t.strings("accessControlAllowOriginList");
    let cors = (!origins.is_empty()).then(|| {
        json!({
            "allow_origins": origins,
            "allow_methods": t.strings("accessControlAllowMethods"),
            "allow_headers": t.strings("accessControlAllowHeaders"),
            "expose_headers": t.strings("accessControlExposeHeaders"),
            "allow_credentials": t.bool("accessControlAllowCredentials"),
            "max_age_s": t.number("accessControlMaxAge"),
        })
    });
    json!({ "headers": {
        "sts_seconds": t.number("stsSeconds").unwrap_or(0),
        "sts_include_subdomains": t.bool("stsIncludeSubdomains"),
        "sts_preload": t.bool("stsPreload"),
        "frame_options": frame,
        "content_type_nosniff": t.bool("contentTypeNosniff"),
        "content_security_policy": t.opt_string("contentSecurityPolicy"),
        "referrer_policy": t.opt_string("referrerPolicy"),
        "custom_response_headers": t.map("customResponseHeaders"),
        "custom_request_headers": t.map("customRequestHeaders"),
        "cors": cors,
    }})
}

/// Traefik durations (`1s`, `500ms`, `2m`, `1h`, or a number of seconds) in milliseconds.
pub fn duration_ms(text: &str) -> Option<u64> {
    if let Ok(secs) = text.parse::<u64>() {
        return secs.checked_mul(1000);
    }
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1e3,
        "m" => n * 60e3,
        "h" => n * 3600e3,
        _ => return None,
    };
    (1.0..1e15).contains(&ms).then_some(ms as u64)
}

fn rate_limit(t: &mut Fields<'_>) -> (Value, Option<String>) {
    let average = t.number("average");
    if average == Some(0) || average.is_none() {
        t.problem(
            "average",
            "`rateLimit.average` must be a number above 0 for engine itsup".into(),
        );
    }
    let period_ms = match t.opt_string("period") {
        None => 1000,
        Some(p) => duration_ms(&p).unwrap_or_else(|| {
            t.problem(
                "period",
                format!("`rateLimit.period`: {p:?} is not a duration like 1s or 1m"),
            );
            1000
        }),
    };
    let burst = t.number("burst").unwrap_or(1).max(1);
    let mut key = json!("client_ip");
    if let Some(Value::Object(c)) = t.body.get("sourceCriterion") {
        let at = t.ptr("sourceCriterion");
        for (k, v) in c {
            match (k.as_str(), v) {
                ("requestHeaderName", Value::String(h)) => key = json!({ "header": h }),
                ("requestHost", Value::Bool(true)) => key = json!("route"),
                ("requestHost", Value::Bool(false)) => {}
                _ => t.problems.push(Refusal {
                    pointer: format!("{at}/{}", escape_pointer(k)),
                    key: true,
                    message: format!(
                        "`rateLimit.sourceCriterion.{k}` is not supported by engine itsup (it keys by the client address behind trusted_proxies, requestHeaderName or requestHost)"
                    ),
                }),
            }
        }
    }
    let mut redis = None;
    if let Some(r) = t.body.get("redis") {
        let at = t.ptr("redis");
        let endpoint = r
            .get("endpoints")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
            .and_then(Value::as_str);
        match endpoint {
            Some(e) => redis = Some(format!("redis://{e}")),
            None => t.problems.push(Refusal {
                pointer: at.clone(),
                key: true,
                message: "`rateLimit.redis` needs `endpoints` (host:port)".into(),
            }),
        }
        if let Some(m) = r.as_object() {
            for k in m.keys().filter(|k| k.as_str() != "endpoints") {
                t.problems.push(Refusal {
                    pointer: format!("{at}/{}", escape_pointer(k)),
                    key: true,
                    message: format!("`rateLimit.redis.{k}` is not supported by engine itsup"),
                });
            }
        }
    }
    (
        json!({ "rate_limit": {
            "average": average.unwrap_or(1).max(1),
            "period_ms": period_ms,
            "burst": burst.min(u64::from(u32::MAX)),
            "key": key,
            "shared": redis.is_some(),
        }}),
        redis,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> Value {
        crate::yaml::parse(yaml).expect("yaml").value
    }

    #[test]
    fn supported_kinds_translate_into_proxy_middlewares() {
        let (ok, refused) = translate_all(&file(
            "http:\n  middlewares:\n    a:\n      ipAllowList:\n        sourceRange: [10.0.0.0/8]\n    r:\n      rateLimit:\n        average: 100\n        period: 1m\n        burst: 50\n        sourceCriterion:\n          requestHeaderName: X-Key\n    h:\n      headers:\n        frameDeny: true\n        stsSeconds: 31536000\n        accessControlAllowOriginList: ['https://a.test']\n",
        ));
        assert!(refused.is_empty());
        let by_name: std::collections::HashMap<_, _> = ok.into_iter().collect();
        assert_eq!(
            by_name["a"].middleware["ip_allow_list"]["source_range"][0],
            "10.0.0.0/8"
        );
        assert_eq!(by_name["r"].middleware["rate_limit"]["period_ms"], 60_000);
        assert_eq!(
            by_name["r"].middleware["rate_limit"]["key"]["header"],
            "X-Key"
        );
        assert_eq!(by_name["h"].middleware["headers"]["frame_options"], "DENY");
        for t in by_name.values() {
            let m: crate::proxy::config::Middleware =
                serde_json::from_value(t.middleware.clone()).expect("proxy form");
            let _ = m.kind();
        }
    }

    #[test]
    fn unsupported_kinds_keys_and_templates_are_refused_at_their_place() {
        let (_, refused) = translate_all(&file(
            "http:\n  middlewares:\n    c:\n      compress: {}\n    a:\n      ipAllowList:\n        sourceRange: [10.0.0.0/8]\n        ipStrategy:\n          depth: 1\n    t:\n      basicAuth:\n        users: ['{{ env \"U\" }}']\n",
        ));
        let pointers: Vec<&str> = refused.iter().map(|r| r.pointer.as_str()).collect();
        assert!(
            pointers.contains(&"/http/middlewares/c/compress"),
            "{pointers:?}"
        );
        assert!(pointers.contains(&"/http/middlewares/a/ipAllowList/ipStrategy"));
        assert!(pointers.contains(&"/http/middlewares/t/basicAuth/users/0"));
        assert_eq!(duration_ms("1m"), Some(60_000));
        assert_eq!(duration_ms("250ms"), Some(250));
        assert_eq!(duration_ms("2"), Some(2000));
        assert_eq!(duration_ms("x"), None);
    }
}
