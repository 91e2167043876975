//! Configuration of `itsup agent`: command-line flags, `ITSUP_AGENT_*` environment variables,
//! an optional TOML file and defaults, merged in that order of precedence and validated once at
//! start, remembering where each value came from so the effective configuration can be logged.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Command-line arguments of `itsup agent`. Each flag also has an `ITSUP_AGENT_*` variable and
/// a key in the `--config` TOML file (same name, `-` as `_`); flags win over variables, which
/// win over the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct AgentArgs {
    /// Address for HAProxy agent checks [env: ITSUP_AGENT_LISTEN] [default: 0.0.0.0:5555]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address of the Prometheus /metrics endpoint [env: ITSUP_AGENT_METRICS_LISTEN] [default: 127.0.0.1:9090]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// TOML configuration file [env: ITSUP_AGENT_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Total deadline of one check (connect, TLS and RPC); keep it below HAProxy's `timeout check` [env: ITSUP_AGENT_TIMEOUT_MS] [default: 1500]
    #[arg(long, value_name = "N")]
    pub timeout_ms: Option<u64>,
    /// Drain file written by `itsup apply` ({"draining": ["host:port", ...]}) [env: ITSUP_AGENT_DRAIN_FILE]
    #[arg(long, value_name = "PATH")]
    pub drain_file: Option<PathBuf>,
    /// Less common settings, boxed so the subcommand table's enum stays small.
    #[command(flatten)]
    pub tuning: Box<Tuning>,
}

/// The settings of `itsup agent` beyond the ones every deployment sets.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Tuning {
    /// PEM CA bundle trusted for `ssl` backends instead of the system roots [env: ITSUP_AGENT_CA_FILE]
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// How long the rest of a started request line may take to arrive [env: ITSUP_AGENT_READ_TIMEOUT_MS] [default: 250]
    #[arg(long, value_name = "N")]
    pub read_timeout_ms: Option<u64>,
    /// How long a connection may wait idle for its next request line [env: ITSUP_AGENT_IDLE_TIMEOUT_MS] [default: 5000]
    #[arg(long, value_name = "N")]
    pub idle_timeout_ms: Option<u64>,
    /// Seconds an unused gRPC channel is kept [env: ITSUP_AGENT_CHANNEL_IDLE_SECS] [default: 300]
    #[arg(long, value_name = "N")]
    pub channel_idle_secs: Option<u64>,
    /// Most agent-check connections open at once; more are closed at once [env: ITSUP_AGENT_MAX_CONNECTIONS] [default: 4096]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Log format: json or pretty [env: ITSUP_AGENT_LOG_FORMAT] [default: json]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `itsup=debug`) [env: ITSUP_AGENT_LOG_LEVEL, else ITSUP_LOG] [default: info]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            _ => Err("expected json or pretty".into()),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        })
    }
}

/// Keys of the TOML file; unknown keys are errors so a typo doesn't silently do nothing.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    timeout_ms: Option<u64>,
    drain_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    channel_idle_secs: Option<u64>,
    max_connections: Option<usize>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::File => "file",
            Source::Default => "default",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{var}={value:?}: {message}")]
    Env {
        var: String,
        value: String,
        message: String,
    },
    #[error("{key} ({source_}) = {value}: {message}")]
    Invalid {
        key: &'static str,
        source_: Source,
        value: String,
        message: String,
    },
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub config_file: Option<PathBuf>,
    pub timeout: Duration,
    pub drain_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub channel_idle: Duration,
    pub max_connections: usize,
    pub log_format: LogFormat,
    pub log_level: String,
    /// `key=source` for each key, for the start-up log line.
    pub sources: Vec<(&'static str, Source)>,
}

fn from_env<T: FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: fmt::Display,
{
    match env(var) {
        None => Ok(None),
        Some(value) => value
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|e| ConfigError::Env {
                var: var.to_owned(),
                value,
                message: e.to_string(),
            }),
    }
}

struct Resolver<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    sources: Vec<(&'static str, Source)>,
}

impl Resolver<'_> {
    fn pick<T: FromStr>(
        &mut self,
        key: &'static str,
        flag: Option<T>,
        file: Option<T>,
        default: Option<T>,
    ) -> Result<Option<(T, Source)>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let var = format!("ITSUP_AGENT_{}", key.to_ascii_uppercase());
        let env = from_env::<T>(self.env, &var)?;
        let picked = flag
            .map(|v| (v, Source::Flag))
            .or(env.map(|v| (v, Source::Env)))
            .or(file.map(|v| (v, Source::File)))
            .or(default.map(|v| (v, Source::Default)));
        if let Some((_, source)) = &picked {
            self.sources.push((key, *source));
        }
        Ok(picked)
    }

    /// Like [`pick`](Self::pick) for keys that always have a default.
    fn value<T: FromStr + fmt::Display>(
        &mut self,
        key: &'static str,
        flag: Option<T>,
        file: Option<T>,
        default: T,
    ) -> Result<(T, Source), ConfigError>
    where
        T::Err: fmt::Display,
    {
        Ok(self.pick(key, flag, file, None)?.unwrap_or_else(|| {
            self.sources.push((key, Source::Default));
            (default, Source::Default)
        }))
    }
}

fn in_range(
    key: &'static str,
    (value, source): (u64, Source),
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            key,
            source_: source,
            value: value.to_string(),
            message: format!("must be between {} and {}", range.start(), range.end()),
        })
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Merges flags, environment (read through `env`), file and defaults, then validates.
pub fn resolve(
    args: AgentArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut r = Resolver {
        env,
        sources: Vec::new(),
    };
    let config_file = r
        .pick::<PathBuf>("config", args.config, None, None)?
        .map(|(p, _)| p);
    let file = match &config_file {
        Some(path) => load_file(path)?,
        None => FileConfig::default(),
    };

    let listen = r.value(
        "listen",
        args.listen,
        file.listen,
        SocketAddr::from(([0, 0, 0, 0], 5555)),
    )?;
    let metrics_listen = r.value(
        "metrics_listen",
        args.metrics_listen,
        file.metrics_listen,
        SocketAddr::from(([127, 0, 0, 1], 9090)),
    )?;
    if listen.0 == metrics_listen.0 && listen.0.port() != 0 {
        return Err(ConfigError::Invalid {
            key: "metrics_listen",
            source_: metrics_listen.1,
            value: metrics_listen.0.to_string(),
            message: "must differ from listen".into(),
        });
    }
    let timeout_ms = in_range(
        "timeout_ms",
        r.value("timeout_ms", args.timeout_ms, file.timeout_ms, 1500)?,
        10..=60_000,
    )?;
    let read_timeout_ms = in_range(
        "read_timeout_ms",
        r.value(
            "read_timeout_ms",
            args.tuning.read_timeout_ms,
            file.read_timeout_ms,
            250,
        )?,
        10..=10_000,
    )?;
    let idle_timeout_ms = in_range(
        "idle_timeout_ms",
        r.value(
            "idle_timeout_ms",
            args.tuning.idle_timeout_ms,
            file.idle_timeout_ms,
            5000,
        )?,
        100..=3_600_000,
    )?;
    let channel_idle_secs = in_range(
        "channel_idle_secs",
        r.value(
            "channel_idle_secs",
            args.tuning.channel_idle_secs,
            file.channel_idle_secs,
            300,
        )?,
        1..=86_400,
    )?;
    let (max_connections, max_source) = r.value(
        "max_connections",
        args.tuning.max_connections,
        file.max_connections,
        4096,
    )?;
    if max_connections == 0 {
        return Err(ConfigError::Invalid {
            key: "max_connections",
            source_: max_source,
            value: "0".into(),
            message: "must be at least 1".into(),
        });
    }
    let drain_file = r
        .pick("drain_file", args.drain_file, file.drain_file, None)?
        .map(|(p, _)| p);
    let ca_file = r
        .pick("ca_file", args.tuning.ca_file, file.ca_file, None)?
        .map(|(p, _)| p);
    let log_format = r
        .value(
            "log_format",
            args.tuning.log_format,
            file.log_format,
            LogFormat::Json,
        )?
        .0;
    let (log_level, level_source) = r.value(
        "log_level",
        args.tuning.log_level,
        file.log_level,
        // The one logging variable, when the agent's own is not set.
        env(crate::logging::ENV).unwrap_or_else(|| "info".to_owned()),
    )?;
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log_level) {
        return Err(ConfigError::Invalid {
            key: "log_level",
            source_: level_source,
            value: log_level,
            message: e.to_string(),
        });
    }

    Ok(Config {
        listen: listen.0,
        metrics_listen: metrics_listen.0,
        config_file,
        timeout: Duration::from_millis(timeout_ms),
        drain_file,
        ca_file,
        read_timeout: Duration::from_millis(read_timeout_ms),
        idle_timeout: Duration::from_millis(idle_timeout_ms),
        channel_idle: Duration::from_secs(channel_idle_secs),
        max_connections,
        log_format,
        log_level,
        sources: r.sources,
    })
}

impl Config {
    /// `key=source` pairs joined by spaces, for the start-up log.
    pub fn sources_summary(&self) -> String {
        self.sources
            .iter()
            .map(|(k, s)| format!("{k}={s}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults() {
        let cfg = resolve(AgentArgs::default(), &env_of(&[])).expect("defaults are valid");
        assert_eq!(cfg.listen.to_string(), "0.0.0.0:5555");
        assert_eq!(cfg.metrics_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(cfg.timeout, Duration::from_millis(1500));
        assert_eq!(cfg.drain_file, None);
        assert!(cfg.sources.iter().all(|(_, s)| *s == Source::Default));
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("agent.toml");
        std::fs::write(
            &file,
            "timeout_ms = 900\nread_timeout_ms = 300\nidle_timeout_ms = 700\n",
        )
        .expect("write");
        let args = AgentArgs {
            config: Some(file),
            timeout_ms: Some(1000),
            ..AgentArgs::default()
        };
        let env = env_of(&[
            ("ITSUP_AGENT_TIMEOUT_MS", "1100"),
            ("ITSUP_AGENT_READ_TIMEOUT_MS", "400"),
        ]);
        let cfg = resolve(args, &env).expect("valid");
        assert_eq!(cfg.timeout, Duration::from_millis(1000), "flag beats env");
        assert_eq!(
            cfg.read_timeout,
            Duration::from_millis(400),
            "env beats file"
        );
        assert_eq!(
            cfg.idle_timeout,
            Duration::from_millis(700),
            "file beats default"
        );
        assert_eq!(cfg.channel_idle, Duration::from_secs(300));
        let summary = cfg.sources_summary();
        for want in [
            "timeout_ms=flag",
            "read_timeout_ms=env",
            "idle_timeout_ms=file",
            "channel_idle_secs=default",
        ] {
            assert!(summary.contains(want), "{summary}");
        }
    }

    #[test]
    fn errors_name_the_culprit() {
        let err = resolve(
            AgentArgs::default(),
            &env_of(&[("ITSUP_AGENT_TIMEOUT_MS", "soon")]),
        )
        .expect_err("bad env");
        assert!(err.to_string().contains("ITSUP_AGENT_TIMEOUT_MS"), "{err}");

        let err = resolve(
            AgentArgs {
                timeout_ms: Some(5),
                ..AgentArgs::default()
            },
            &env_of(&[]),
        )
        .expect_err("too small");
        assert!(err.to_string().contains("timeout_ms (flag)"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("agent.toml");
        std::fs::write(&file, "timeout = 5\n").expect("write");
        let err = resolve(
            AgentArgs {
                config: Some(file),
                ..AgentArgs::default()
            },
            &env_of(&[]),
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("unknown field"), "{err}");

        let err = resolve(
            AgentArgs::default(),
            &env_of(&[("ITSUP_AGENT_LOG_LEVEL", "itsup=loud")]),
        )
        .expect_err("bad filter");
        assert!(err.to_string().contains("log_level"), "{err}");
    }

    #[test]
    fn log_level_falls_back_to_the_one_logging_variable() {
        let level = |pairs: &[(&str, &str)]| {
            resolve(AgentArgs::default(), &env_of(pairs))
                .expect("valid")
                .log_level
        };
        assert_eq!(level(&[]), "info");
        assert_eq!(level(&[("ITSUP_LOG", "debug")]), "debug");
        assert_eq!(
            level(&[("ITSUP_LOG", "debug"), ("ITSUP_AGENT_LOG_LEVEL", "warn")]),
            "warn"
        );
    }
}
