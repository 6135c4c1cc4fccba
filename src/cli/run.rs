//! `grapevine run`: settings from flags and an optional TOML file (same key names), then the
//! node until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use tracing::info;

use super::CliError;
use crate::node::{AdvertiseAlgorithm, NodeConfig};
use crate::runtime::{self, RuntimeConfig};
use crate::wire::types::{Endpoint, Sha256};

/// Default listening endpoint for peers (witness_node's default port).
pub const DEFAULT_P2P_ENDPOINT: &str = "0.0.0.0:1776";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "grapevine-data";

/// Flags of `grapevine run`. Every one can also be set in `--config FILE` under the same name.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// TOML file with any of these settings (flags given on the command line win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the node key and the peer database [default: grapevine-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Endpoint to listen on for peers [default: 0.0.0.0:1776].
    #[arg(long, value_name = "IP:PORT")]
    pub p2p_endpoint: Option<SocketAddr>,
    /// A peer to connect to at start and retry whatever happens (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    pub seed_node: Vec<String>,
    /// Seed nodes as a JSON list, e.g. '["127.0.0.1:1776"]'.
    #[arg(long, value_name = "JSON")]
    pub seed_nodes: Option<String>,
    /// Chain id in hex [default: the BitShares mainnet].
    #[arg(long, value_name = "HEX")]
    pub chain_id: Option<String>,
    /// Connections to keep [default: 20].
    #[arg(long, value_name = "N")]
    pub desired_connections: Option<usize>,
    /// Connections never exceeded [default: 200].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Accept connections from peers [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub accept_incoming_connections: Option<bool>,
    /// Dial peers learnt from others [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub connect_to_new_peers: Option<bool>,
    /// Which peers to advertise: all, nothing, list or exclude_list [default: all].
    #[arg(long, value_name = "ALGORITHM")]
    pub p2p_advertise_peer_algorithm: Option<String>,
    /// Endpoints for the list and exclude_list algorithms (repeatable).
    #[arg(long, value_name = "IP:PORT")]
    pub p2p_advertise_peer_list: Vec<String>,
    /// Serve the status API (HTTP) here, e.g. 127.0.0.1:8090.
    #[arg(long, value_name = "IP:PORT")]
    pub rpc_endpoint: Option<SocketAddr>,
    /// Let clients on other hosts POST and DELETE on the status API [default: false, loopback
    /// clients only].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub rpc_allow_remote: Option<bool>,
    /// How long an address that misbehaved past the threshold stays banned; 0 disables bans
    /// [default: 86400].
    #[arg(long, value_name = "SECONDS")]
    pub ban_seconds: Option<u64>,
    /// How often a changed peer database is written [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub peer_db_save_seconds: Option<u64>,
    /// error, warn, info, debug or trace (RUST_LOG, when set, wins) [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

fn key_error(key: &str, e: impl std::fmt::Display) -> CliError {
    CliError(format!("invalid value for {key}: {e}"))
}

fn string_list(key: &str, v: &toml::Value) -> Result<Vec<String>, CliError> {
    match v {
        toml::Value::String(s) => Ok(vec![s.clone()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| key_error(key, "expected strings"))
            })
            .collect(),
        _ => Err(key_error(key, "expected a string or a list of strings")),
    }
}

impl RunArgs {
    /// Fills settings not given as flags from the config file.
    pub fn merge_config_file(&mut self) -> Result<(), CliError> {
        let Some(path) = self.config.clone() else {
            return Ok(());
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError(format!("cannot read config file {}: {e}", path.display())))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            CliError(format!(
                "config file {} is not valid TOML: {}",
                path.display(),
                e.message()
            ))
        })?;
        for (key, v) in &table {
            let s = || {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| key_error(key, "expected a string"))
            };
            let n = || {
                v.as_integer()
                    .and_then(|i| usize::try_from(i).ok())
                    .ok_or_else(|| key_error(key, "expected a non-negative integer"))
            };
            let b = || {
                v.as_bool()
                    .ok_or_else(|| key_error(key, "expected true or false"))
            };
            let addr =
                || -> Result<SocketAddr, CliError> { s()?.parse().map_err(|e| key_error(key, e)) };
            match key.as_str() {
                "data-dir" => {
                    self.data_dir.get_or_insert(PathBuf::from(s()?));
                }
                "p2p-endpoint" => {
                    let a = addr()?;
                    self.p2p_endpoint.get_or_insert(a);
                }
                "seed-node" => {
                    if self.seed_node.is_empty() {
                        self.seed_node = string_list(key, v)?;
                    }
                }
                "seed-nodes" => {
                    let json = match v {
                        toml::Value::String(s) => s.clone(),
                        other => serde_json::to_string(&string_list(key, other)?)
                            .map_err(|e| key_error(key, e))?,
                    };
                    self.seed_nodes.get_or_insert(json);
                }
                "chain-id" => {
                    self.chain_id.get_or_insert(s()?);
                }
                "desired-connections" => {
                    let x = n()?;
                    self.desired_connections.get_or_insert(x);
                }
                "max-connections" => {
                    let x = n()?;
                    self.max_connections.get_or_insert(x);
                }
                "accept-incoming-connections" => {
                    let x = b()?;
                    self.accept_incoming_connections.get_or_insert(x);
                }
                "connect-to-new-peers" => {
                    let x = b()?;
                    self.connect_to_new_peers.get_or_insert(x);
                }
                "p2p-advertise-peer-algorithm" => {
                    self.p2p_advertise_peer_algorithm.get_or_insert(s()?);
                }
                "p2p-advertise-peer-list" => {
                    if self.p2p_advertise_peer_list.is_empty() {
                        self.p2p_advertise_peer_list = string_list(key, v)?;
                    }
                }
                "rpc-endpoint" => {
                    let a = addr()?;
                    self.rpc_endpoint.get_or_insert(a);
                }
                "rpc-allow-remote" => {
                    let x = b()?;
                    self.rpc_allow_remote.get_or_insert(x);
                }
                "ban-seconds" => {
                    let x = n()? as u64;
                    self.ban_seconds.get_or_insert(x);
                }
                "peer-db-save-seconds" => {
                    let x = n()? as u64;
                    self.peer_db_save_seconds.get_or_insert(x);
                }
                "log-level" => {
                    self.log_level.get_or_insert(s()?);
                }
                other => {
                    return Err(CliError(format!(
                        "unknown key {other} in config file {}",
                        path.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The runtime settings these flags describe.
    pub fn to_runtime_config(&self) -> Result<RuntimeConfig, CliError> {
        let mut node = NodeConfig::default();
        if let Some(c) = &self.chain_id {
            node.chain_id = c
                .parse::<Sha256>()
                .map_err(|e| key_error("--chain-id", e))?;
        }
        if let Some(n) = self.max_connections {
            if n == 0 {
                return Err(key_error("--max-connections", "must be at least 1"));
            }
            node.max_connections = n;
        }
        if let Some(n) = self.desired_connections {
            node.desired_connections = n;
        }
        // As the reference does: desired never above max.
        node.desired_connections = node.desired_connections.min(node.max_connections);
        if let Some(b) = self.accept_incoming_connections {
            node.accept_incoming_connections = b;
        }
        if let Some(b) = self.connect_to_new_peers {
            node.connect_to_new_peers = b;
        }
        let seconds_us = |key: &str, s: u64| {
            i64::try_from(s)
                .ok()
                .and_then(|s| s.checked_mul(crate::node::config::SECOND_US))
                .ok_or_else(|| key_error(key, "too large"))
        };
        if let Some(s) = self.ban_seconds {
            node.ban_duration_us = seconds_us("--ban-seconds", s)?;
        }
        if let Some(s) = self.peer_db_save_seconds {
            if s == 0 {
                return Err(key_error("--peer-db-save-seconds", "must be at least 1"));
            }
            node.peer_db_save_interval_us = seconds_us("--peer-db-save-seconds", s)?;
        }
        let list = self
            .p2p_advertise_peer_list
            .iter()
            .map(|e| {
                e.parse::<Endpoint>()
                    .map_err(|e| key_error("--p2p-advertise-peer-list", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        node.advertise = match self.p2p_advertise_peer_algorithm.as_deref() {
            None | Some("all") => AdvertiseAlgorithm::All,
            Some("nothing") => AdvertiseAlgorithm::Nothing,
            Some(alg @ ("list" | "exclude_list")) => {
                if list.is_empty() {
                    return Err(key_error(
                        "--p2p-advertise-peer-algorithm",
                        format!("{alg} needs --p2p-advertise-peer-list"),
                    ));
                }
                if alg == "list" {
                    AdvertiseAlgorithm::List(list)
                } else {
                    AdvertiseAlgorithm::ExcludeList(list)
                }
            }
            Some(other) => {
                return Err(key_error(
                    "--p2p-advertise-peer-algorithm",
                    format!("{other:?} is not one of all, nothing, list, exclude_list"),
                ));
            }
        };
        let mut seed_nodes = self.seed_node.clone();
        if let Some(json) = &self.seed_nodes {
            let more: Vec<String> =
                serde_json::from_str(json).map_err(|e| key_error("--seed-nodes", e))?;
            seed_nodes.extend(more);
        }
        for s in &seed_nodes {
            if !s
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Err(key_error("--seed-node", format!("{s:?} is not host:port")));
            }
        }
        let p2p_endpoint = match self.p2p_endpoint {
            Some(a) => a,
            None => DEFAULT_P2P_ENDPOINT
                .parse()
                .map_err(|e| key_error("--p2p-endpoint", e))?,
        };
        Ok(RuntimeConfig {
            node,
            data_dir: self
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            p2p_endpoint,
            seed_nodes,
        })
    }
}

fn init_logging(level: Option<&str>) -> Result<(), CliError> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v).map_err(|e| key_error("RUST_LOG", e))?,
        _ => {
            let level = level.unwrap_or("info");
            if !["error", "warn", "info", "debug", "trace"].contains(&level) {
                return Err(key_error(
                    "--log-level",
                    format!("{level:?} is not a log level"),
                ));
            }
            EnvFilter::new(format!("grapevine={level},warn"))
        }
    };
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}

/// Runs a node until a signal.
pub fn run(mut args: RunArgs) -> Result<(), CliError> {
    args.merge_config_file()?;
    let config = args.to_runtime_config()?;
    init_logging(args.log_level.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let handle = runtime::start(config)
            .await
            .map_err(|e| CliError(e.to_string()))?;
        if let Some(addr) = args.rpc_endpoint {
            let options = crate::api::ApiOptions {
                allow_remote: args.rpc_allow_remote.unwrap_or(false),
            };
            let bound = crate::api::serve_with(addr, handle.controller(), options)
                .await
                .map_err(|e| CliError(format!("cannot serve the status API on {addr}: {e}")))?;
            info!(endpoint = %bound, "status API listening");
        }
        wait_for_signal().await;
        info!("shutting down");
        handle.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_config(text: &str, args: RunArgs) -> Result<RuntimeConfig, CliError> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).unwrap();
        let path = std::env::temp_dir().join(format!("grapevine-cfg-{}.toml", hex::encode(id)));
        std::fs::write(&path, text).unwrap();
        let mut args = RunArgs {
            config: Some(path.clone()),
            ..args
        };
        let result = args
            .merge_config_file()
            .and_then(|()| args.to_runtime_config());
        let _ = std::fs::remove_file(&path);
        result
    }

    #[test]
    fn ban_seconds_from_the_config_file_or_the_flag() {
        let us = |c: RuntimeConfig| c.node.ban_duration_us;
        let default = with_config("", RunArgs::default()).unwrap();
        assert_eq!(us(default), crate::node::config::DEFAULT_BAN_DURATION_US);
        let file = with_config("ban-seconds = 600", RunArgs::default()).unwrap();
        assert_eq!(us(file), 600_000_000);
        let flag = RunArgs {
            ban_seconds: Some(5),
            ..RunArgs::default()
        };
        assert_eq!(
            us(with_config("ban-seconds = 600", flag).unwrap()),
            5_000_000
        );
        let err = with_config("ban-seconds = -1", RunArgs::default()).unwrap_err();
        assert!(err.0.contains("ban-seconds"), "{}", err.0);
        let save = with_config("peer-db-save-seconds = 2", RunArgs::default()).unwrap();
        assert_eq!(save.node.peer_db_save_interval_us, 2_000_000);
    }
}
