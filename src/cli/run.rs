//! `grapevine run`: settings from flags, a `--config FILE` (INI or TOML) and
//! `<data-dir>/config.ini` (witness_node's syntax), then the node until SIGINT or SIGTERM.
//!
//! The P2P options carry witness_node's names and value syntax (bitshares-core's
//! `application.cpp`); grapevine's own options keep theirs. Every option is also a config file
//! key of the same name. Precedence: command line, then `--config`, then `<data-dir>/config.ini`,
//! then the built-in defaults; a source that sets a list option replaces the lists below it.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use clap::Args;
use tracing::{info, warn};

use super::config::{self, Loaded};
use super::{CliError, Failure};
use crate::node::{AdvertiseAlgorithm, NodeConfig};
use crate::runtime::{self, RuntimeConfig};
use crate::wire::types::{Endpoint, Sha256};

/// Default listening endpoint for peers (witness_node's default port).
pub const DEFAULT_P2P_ENDPOINT: &str = "0.0.0.0:1776";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "grapevine-data";
/// Where a bare `--rpc-endpoint` serves the status API (witness_node's implicit value).
pub const IMPLICIT_RPC_ENDPOINT: &str = super::status::DEFAULT_RPC_ENDPOINT;
/// The advertise algorithms, as witness_node spells them.
pub const ADVERTISE_ALGORITHMS: [&str; 4] = ["all", "nothing", "list", "exclude_list"];
/// Log levels `--log-level` takes.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Flags of `grapevine run`. Every one can also be set in a config file under the same name.
#[derive(Clone, Debug, Args, Default)]
pub struct RunArgs {
    /// A config file with any of these settings: INI as witness_node's config.ini, or TOML
    /// (chosen by the .ini/.toml extension, else by content). It wins over
    /// <data-dir>/config.ini; the command line wins over both.
    // The help text shows <data-dir> as written; it is not HTML.
    #[allow(rustdoc::invalid_html_tags)]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding the node key, the peer database, the store and config.ini
    /// [default: grapevine-data].
    #[arg(short = 'd', long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Local IP address and port to listen on for peers; 0.0.0.0 listens on every address
    /// [default: 0.0.0.0:1776].
    #[arg(long, value_name = "IP:PORT", value_parser = parse_listen_endpoint)]
    pub p2p_endpoint: Option<SocketAddr>,
    /// External IP address and port peers should dial, told to them in hello; with the address
    /// 0.0.0.0, each connection's local address is told with this port
    /// [default: the listening port].
    #[arg(long, value_name = "IP:PORT")]
    pub p2p_inbound_endpoint: Option<SocketAddrV4>,
    /// A peer (host name or IP, and port) to connect to at start and retry whatever happens
    /// (repeatable).
    #[arg(short = 's', long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub seed_node: Vec<String>,
    /// Seed nodes as a JSON array, e.g. '["127.0.0.1:1776"]'.
    #[arg(long, value_name = "JSON", value_parser = parse_seed_nodes)]
    pub seed_nodes: Option<String>,
    /// Chain id in hex [default: the BitShares mainnet].
    #[arg(long, value_name = "HEX", value_parser = parse_chain_id)]
    pub chain_id: Option<String>,
    /// Connections to keep [default: 20].
    #[arg(long, value_name = "N")]
    pub desired_connections: Option<usize>,
    /// Connections never exceeded [default: 200].
    #[arg(long, value_name = "N", value_parser = parse_at_least_one::<usize>)]
    pub max_connections: Option<usize>,
    /// Whether to accept connections from peers; alone it means true [default: true].
    #[arg(
        long,
        alias = "accept-incoming-connections",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = parse_bool
    )]
    pub p2p_accept_incoming_connections: Option<bool>,
    /// Whether to dial peers that other peers tell us about; alone it means true
    /// [default: true].
    #[arg(
        long,
        alias = "connect-to-new-peers",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = parse_bool
    )]
    pub p2p_connect_to_new_peers: Option<bool>,
    /// Which peers to tell others about: all, nothing, only the --p2p-advertise-peer-endpoint
    /// list, or all but the --p2p-exclude-peer-endpoint list; alone it means all
    /// [default: all].
    #[arg(
        long,
        value_name = "ALGORITHM",
        num_args = 0..=1,
        default_missing_value = "all",
        value_parser = ADVERTISE_ALGORITHMS
    )]
    pub p2p_advertise_peer_algorithm: Option<String>,
    /// A peer endpoint advertised by the list algorithm (repeatable).
    #[arg(long, value_name = "IP:PORT", value_parser = parse_peer_endpoint)]
    pub p2p_advertise_peer_endpoint: Vec<String>,
    /// A peer endpoint never advertised by the exclude_list algorithm (repeatable).
    #[arg(long, value_name = "IP:PORT", value_parser = parse_peer_endpoint)]
    pub p2p_exclude_peer_endpoint: Vec<String>,
    /// Endpoints for whichever of list and exclude_list is chosen (grapevine's older name).
    #[arg(long, hide = true, value_name = "IP:PORT", value_parser = parse_peer_endpoint)]
    pub p2p_advertise_peer_list: Vec<String>,
    /// Serve grapevine's status API (HTTP and JSON, not witness_node's websocket API) here;
    /// alone it means 127.0.0.1:8090 [default: off].
    #[arg(
        long,
        value_name = "IP:PORT",
        num_args = 0..=1,
        default_missing_value = IMPLICIT_RPC_ENDPOINT
    )]
    pub rpc_endpoint: Option<SocketAddr>,
    /// Let clients on other hosts POST and DELETE on the status API [default: false, loopback
    /// clients only].
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = parse_bool
    )]
    pub rpc_allow_remote: Option<bool>,
    /// How long an address that misbehaved past the threshold stays banned; 0 disables bans
    /// [default: 86400].
    #[arg(long, value_name = "SECONDS")]
    pub ban_seconds: Option<u64>,
    /// How often a changed peer database is written [default: 30].
    #[arg(long, value_name = "SECONDS", value_parser = parse_at_least_one::<u64>)]
    pub peer_db_save_seconds: Option<u64>,
    /// error, warn, info, debug or trace (RUST_LOG, when set, wins) [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// The default a config file shows for an option, if it has one.
pub fn default_value(long: &str) -> Option<String> {
    let node = NodeConfig::default();
    let second = crate::node::config::SECOND_US;
    Some(match long {
        "p2p-endpoint" => DEFAULT_P2P_ENDPOINT.to_string(),
        "chain-id" => node.chain_id.to_string(),
        "desired-connections" => node.desired_connections.to_string(),
        "max-connections" => node.max_connections.to_string(),
        "p2p-accept-incoming-connections" => node.accept_incoming_connections.to_string(),
        "p2p-connect-to-new-peers" => node.connect_to_new_peers.to_string(),
        "p2p-advertise-peer-algorithm" => "all".to_string(),
        "ban-seconds" => (node.ban_duration_us / second).to_string(),
        "peer-db-save-seconds" => (node.peer_db_save_interval_us / second).to_string(),
        "log-level" => "info".to_string(),
        _ => return None,
    })
}

/// witness_node's booleans (boost::program_options): true, yes, on, 1 or nothing; false, no,
/// off or 0; in any case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("expected true or false (or yes/no, on/off, 1/0)".into()),
    }
}

/// An IPv4 address and port to listen on (the graphene protocol has no IPv6 endpoints).
fn parse_listen_endpoint(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddrV4>()
        .map(SocketAddr::V4)
        .map_err(|e| format!("expected an IPv4 address and port such as 0.0.0.0:1776: {e}"))
}

/// A peer's IPv4 endpoint, kept as written.
fn parse_peer_endpoint(s: &str) -> Result<String, String> {
    s.parse::<Endpoint>().map(|_| s.to_string())
}

/// `host:port`, the host a name or an IPv4 address, as the reference splits it.
fn parse_host_port(s: &str) -> Result<String, String> {
    match s.split_once(':') {
        Some((host, port)) if !host.trim().is_empty() && port.parse::<u16>().is_ok() => {
            Ok(s.to_string())
        }
        _ => Err(format!("{s:?} is not host:port")),
    }
}

/// A JSON array of `host:port` strings, kept as written.
fn parse_seed_nodes(s: &str) -> Result<String, String> {
    let seeds: Vec<String> =
        serde_json::from_str(s).map_err(|e| format!("expected a JSON array of strings: {e}"))?;
    for seed in &seeds {
        parse_host_port(seed)?;
    }
    Ok(s.to_string())
}

/// 32 bytes of hex, kept as written.
fn parse_chain_id(s: &str) -> Result<String, String> {
    s.parse::<Sha256>()
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// A count or interval that must not be 0.
fn parse_at_least_one<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialEq + From<u8>,
    T::Err: std::fmt::Display,
{
    let n: T = s.parse().map_err(|e: T::Err| e.to_string())?;
    if n == T::from(0) {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

fn key_error(key: &str, e: impl std::fmt::Display) -> CliError {
    CliError(format!("invalid value for {key}: {e}"))
}

/// What reading config files found that is worth telling the operator, once logging is up.
#[derive(Debug, Default)]
pub struct ConfigNotes {
    /// Logged as warnings (one line per file with ignored options).
    pub warnings: Vec<String>,
    /// Logged as information (skipped sections).
    pub infos: Vec<String>,
}

impl ConfigNotes {
    fn add(&mut self, loaded: &Loaded) {
        self.warnings.extend(loaded.ignored_note());
        self.infos.extend(loaded.sections_note());
    }

    fn extend(&mut self, other: ConfigNotes) {
        self.warnings.extend(other.warnings);
        self.infos.extend(other.infos);
    }

    /// Logs the notes.
    pub fn log(&self) {
        for w in &self.warnings {
            warn!("{w}");
        }
        for i in &self.infos {
            info!("{i}");
        }
    }
}

impl RunArgs {
    /// Takes the settings `other` has. Lists add up; `Err` when a single-valued setting is set
    /// in both (the same key twice in one file).
    pub(crate) fn absorb(&mut self, other: RunArgs) -> Result<(), ()> {
        fn one<T>(mine: &mut Option<T>, theirs: Option<T>) -> Result<(), ()> {
            match (mine.is_some(), theirs) {
                (true, Some(_)) => Err(()),
                (_, Some(v)) => {
                    *mine = Some(v);
                    Ok(())
                }
                (_, None) => Ok(()),
            }
        }
        let RunArgs {
            config,
            data_dir,
            p2p_endpoint,
            p2p_inbound_endpoint,
            seed_node,
            seed_nodes,
            chain_id,
            desired_connections,
            max_connections,
            p2p_accept_incoming_connections,
            p2p_connect_to_new_peers,
            p2p_advertise_peer_algorithm,
            p2p_advertise_peer_endpoint,
            p2p_exclude_peer_endpoint,
            p2p_advertise_peer_list,
            rpc_endpoint,
            rpc_allow_remote,
            ban_seconds,
            peer_db_save_seconds,
            log_level,
        } = other;
        one(&mut self.config, config)?;
        one(&mut self.data_dir, data_dir)?;
        one(&mut self.p2p_endpoint, p2p_endpoint)?;
        one(&mut self.p2p_inbound_endpoint, p2p_inbound_endpoint)?;
        self.seed_node.extend(seed_node);
        one(&mut self.seed_nodes, seed_nodes)?;
        one(&mut self.chain_id, chain_id)?;
        one(&mut self.desired_connections, desired_connections)?;
        one(&mut self.max_connections, max_connections)?;
        one(
            &mut self.p2p_accept_incoming_connections,
            p2p_accept_incoming_connections,
        )?;
        one(&mut self.p2p_connect_to_new_peers, p2p_connect_to_new_peers)?;
        one(
            &mut self.p2p_advertise_peer_algorithm,
            p2p_advertise_peer_algorithm,
        )?;
        self.p2p_advertise_peer_endpoint
            .extend(p2p_advertise_peer_endpoint);
        self.p2p_exclude_peer_endpoint
            .extend(p2p_exclude_peer_endpoint);
        self.p2p_advertise_peer_list.extend(p2p_advertise_peer_list);
        one(&mut self.rpc_endpoint, rpc_endpoint)?;
        one(&mut self.rpc_allow_remote, rpc_allow_remote)?;
        one(&mut self.ban_seconds, ban_seconds)?;
        one(&mut self.peer_db_save_seconds, peer_db_save_seconds)?;
        one(&mut self.log_level, log_level)?;
        Ok(())
    }

    /// Fills what is not set here from a source of lower precedence. A list set here replaces
    /// the lower source's list.
    pub fn fill_from(&mut self, lower: RunArgs) {
        fn one<T>(mine: &mut Option<T>, lower: Option<T>) {
            if mine.is_none() {
                *mine = lower;
            }
        }
        fn list<T>(mine: &mut Vec<T>, lower: Vec<T>) {
            if mine.is_empty() {
                *mine = lower;
            }
        }
        let RunArgs {
            config,
            data_dir,
            p2p_endpoint,
            p2p_inbound_endpoint,
            seed_node,
            seed_nodes,
            chain_id,
            desired_connections,
            max_connections,
            p2p_accept_incoming_connections,
            p2p_connect_to_new_peers,
            p2p_advertise_peer_algorithm,
            p2p_advertise_peer_endpoint,
            p2p_exclude_peer_endpoint,
            p2p_advertise_peer_list,
            rpc_endpoint,
            rpc_allow_remote,
            ban_seconds,
            peer_db_save_seconds,
            log_level,
        } = lower;
        one(&mut self.config, config);
        one(&mut self.data_dir, data_dir);
        one(&mut self.p2p_endpoint, p2p_endpoint);
        one(&mut self.p2p_inbound_endpoint, p2p_inbound_endpoint);
        list(&mut self.seed_node, seed_node);
        one(&mut self.seed_nodes, seed_nodes);
        one(&mut self.chain_id, chain_id);
        one(&mut self.desired_connections, desired_connections);
        one(&mut self.max_connections, max_connections);
        one(
            &mut self.p2p_accept_incoming_connections,
            p2p_accept_incoming_connections,
        );
        one(&mut self.p2p_connect_to_new_peers, p2p_connect_to_new_peers);
        one(
            &mut self.p2p_advertise_peer_algorithm,
            p2p_advertise_peer_algorithm,
        );
        list(
            &mut self.p2p_advertise_peer_endpoint,
            p2p_advertise_peer_endpoint,
        );
        list(
            &mut self.p2p_exclude_peer_endpoint,
            p2p_exclude_peer_endpoint,
        );
        list(&mut self.p2p_advertise_peer_list, p2p_advertise_peer_list);
        one(&mut self.rpc_endpoint, rpc_endpoint);
        one(&mut self.rpc_allow_remote, rpc_allow_remote);
        one(&mut self.ban_seconds, ban_seconds);
        one(&mut self.peer_db_save_seconds, peer_db_save_seconds);
        one(&mut self.log_level, log_level);
    }

    /// Fills settings not given as flags from `--config FILE` (INI or TOML).
    pub fn merge_config_file(&mut self) -> Result<ConfigNotes, CliError> {
        let mut notes = ConfigNotes::default();
        if let Some(path) = self.config.clone() {
            let loaded = config::read_config_file(&path)?;
            notes.add(&loaded);
            self.fill_from(loaded.args);
        }
        Ok(notes)
    }

    /// Fills settings given neither as flags nor in `--config` from `<data-dir>/config.ini`,
    /// when it exists.
    pub fn merge_data_dir_config(&mut self) -> Result<ConfigNotes, CliError> {
        let mut notes = ConfigNotes::default();
        if let Some(loaded) = config::read_data_dir_config(&self.data_dir())? {
            notes.add(&loaded);
            self.fill_from(loaded.args);
        }
        Ok(notes)
    }

    /// Both config files, in precedence order.
    pub fn load_config_files(&mut self) -> Result<ConfigNotes, CliError> {
        let mut notes = self.merge_config_file()?;
        notes.extend(self.merge_data_dir_config()?);
        Ok(notes)
    }

    /// The data directory these settings name.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// Settings that are valid but have no effect, worth a warning.
    pub fn ineffective_settings(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let algorithm = self
            .p2p_advertise_peer_algorithm
            .as_deref()
            .unwrap_or("all");
        if !self.p2p_advertise_peer_endpoint.is_empty() && algorithm != "list" {
            notes.push(format!(
                "p2p-advertise-peer-endpoint has no effect with p2p-advertise-peer-algorithm \
                 {algorithm} (only with list)"
            ));
        }
        if !self.p2p_exclude_peer_endpoint.is_empty() && algorithm != "exclude_list" {
            notes.push(format!(
                "p2p-exclude-peer-endpoint has no effect with p2p-advertise-peer-algorithm \
                 {algorithm} (only with exclude_list)"
            ));
        }
        if self.p2p_inbound_endpoint.is_some()
            && self.p2p_accept_incoming_connections == Some(false)
        {
            notes.push(
                "p2p-inbound-endpoint has no effect when p2p-accept-incoming-connections is \
                 false (hello then says we do not listen)"
                    .into(),
            );
        }
        notes
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
        if let Some(b) = self.p2p_accept_incoming_connections {
            node.accept_incoming_connections = b;
        }
        if let Some(b) = self.p2p_connect_to_new_peers {
            node.connect_to_new_peers = b;
        }
        node.inbound_endpoint = self.p2p_inbound_endpoint.map(Endpoint::from);
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
        let endpoints = |key: &str, lists: [&Vec<String>; 2]| {
            lists
                .into_iter()
                .flatten()
                .map(|e| e.parse::<Endpoint>().map_err(|e| key_error(key, e)))
                .collect::<Result<Vec<_>, _>>()
        };
        node.advertise = match self.p2p_advertise_peer_algorithm.as_deref() {
            None | Some("all") => AdvertiseAlgorithm::All,
            Some("nothing") => AdvertiseAlgorithm::Nothing,
            Some("list") => {
                let key = "--p2p-advertise-peer-endpoint";
                let list = endpoints(
                    key,
                    [
                        &self.p2p_advertise_peer_endpoint,
                        &self.p2p_advertise_peer_list,
                    ],
                )?;
                if list.is_empty() {
                    // As the reference: the list must not be empty.
                    return Err(key_error(
                        "--p2p-advertise-peer-algorithm",
                        format!("list needs {key}"),
                    ));
                }
                AdvertiseAlgorithm::List(list)
            }
            Some("exclude_list") => {
                let key = "--p2p-exclude-peer-endpoint";
                let list = endpoints(
                    key,
                    [
                        &self.p2p_exclude_peer_endpoint,
                        &self.p2p_advertise_peer_list,
                    ],
                )?;
                if list.is_empty() {
                    return Err(key_error(
                        "--p2p-advertise-peer-algorithm",
                        format!("exclude_list needs {key}"),
                    ));
                }
                AdvertiseAlgorithm::ExcludeList(list)
            }
            Some(other) => {
                return Err(key_error(
                    "--p2p-advertise-peer-algorithm",
                    format!(
                        "{other:?} is not one of {}",
                        ADVERTISE_ALGORITHMS.join(", ")
                    ),
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
            parse_host_port(s).map_err(|e| key_error("--seed-node", e))?;
        }
        let p2p_endpoint = match self.p2p_endpoint {
            Some(a) => a,
            None => DEFAULT_P2P_ENDPOINT
                .parse()
                .map_err(|e| key_error("--p2p-endpoint", e))?,
        };
        if !p2p_endpoint.is_ipv4() {
            return Err(key_error(
                "--p2p-endpoint",
                "the graphene protocol has IPv4 endpoints only",
            ));
        }
        Ok(RuntimeConfig {
            node,
            data_dir: self.data_dir(),
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

/// Runs a node until a signal. Usage and configuration errors come back before anything is
/// created on disk; so do a busy P2P or status API port.
pub fn run(mut args: RunArgs) -> Result<(), Failure> {
    let notes = args.load_config_files()?;
    let config = args.to_runtime_config()?;
    init_logging(args.log_level.as_deref())?;
    notes.log();
    for w in args.ineffective_settings() {
        warn!("{w}");
    }
    // Hold the status API's port from before the node starts, so a busy port fails the start
    // before the data directory is created; it is let go just before the API binds it.
    let rpc_claim = match args.rpc_endpoint {
        Some(addr) => Some(std::net::TcpListener::bind(addr).map_err(|e| {
            Failure::Runtime(format!("cannot serve the status API on {addr}: {e}"))
        })?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the async runtime: {e}")))?;
    let data_dir = config.data_dir.clone();
    rt.block_on(async move {
        let handle = runtime::start(config)
            .await
            .map_err(|e| Failure::Runtime(e.to_string()))?;
        if let Some(addr) = args.rpc_endpoint {
            drop(rpc_claim);
            let options = crate::api::ApiOptions {
                allow_remote: args.rpc_allow_remote.unwrap_or(false),
            };
            match crate::api::serve_with(addr, handle.controller(), options).await {
                Ok(bound) => info!(rpc_endpoint = %bound, "status API listening"),
                Err(e) => {
                    handle.shutdown().await;
                    return Err(Failure::Runtime(format!(
                        "cannot serve the status API on {addr}: {e}"
                    )));
                }
            }
        }
        match config::write_default_config_ini(&data_dir) {
            Ok(Some(path)) => info!(path = %path.display(), "wrote a default config file"),
            Ok(None) => {}
            Err(e) => warn!(data_dir = %data_dir.display(), error = %e, "cannot write config.ini"),
        }
        let stopped_by_itself = tokio::select! {
            () = wait_for_signal() => false,
            () = handle.stopped() => true,
        };
        if !stopped_by_itself {
            info!("shutting down");
        }
        handle.shutdown().await;
        if stopped_by_itself {
            return Err(Failure::Runtime("the node stopped unexpectedly".into()));
        }
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
        with_config_named("toml", text, args)
    }

    fn with_config_named(ext: &str, text: &str, args: RunArgs) -> Result<RuntimeConfig, CliError> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).unwrap();
        let path = std::env::temp_dir().join(format!("grapevine-cfg-{}.{ext}", hex::encode(id)));
        std::fs::write(&path, text).unwrap();
        let mut args = RunArgs {
            config: Some(path.clone()),
            ..args
        };
        let result = args
            .merge_config_file()
            .and_then(|_| args.to_runtime_config());
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

    fn parse(argv: &[&str]) -> Result<RunArgs, clap::Error> {
        use clap::Parser;
        let cli = super::super::Cli::try_parse_from(
            ["grapevine", "run"].iter().chain(argv.iter()).copied(),
        )?;
        match cli.command {
            super::super::Command::Run(args) => Ok(*args),
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn witness_node_names_short_options_and_implicit_values() {
        let a = parse(&[
            "-d",
            "/tmp/x",
            "-s",
            "seed.example:1776",
            "--seed-node",
            "127.0.0.1:1777",
            "--p2p-accept-incoming-connections",
            "--p2p-connect-to-new-peers=false",
            "--p2p-advertise-peer-algorithm",
            "--p2p-inbound-endpoint",
            "0.0.0.0:4000",
            "--rpc-endpoint",
        ])
        .unwrap();
        assert_eq!(a.data_dir, Some(PathBuf::from("/tmp/x")));
        assert_eq!(a.seed_node, ["seed.example:1776", "127.0.0.1:1777"]);
        assert_eq!(a.p2p_accept_incoming_connections, Some(true));
        assert_eq!(a.p2p_connect_to_new_peers, Some(false));
        assert_eq!(a.p2p_advertise_peer_algorithm.as_deref(), Some("all"));
        assert_eq!(a.rpc_endpoint, Some(IMPLICIT_RPC_ENDPOINT.parse().unwrap()));
        let c = a.to_runtime_config().unwrap();
        assert_eq!(
            c.node.inbound_endpoint,
            Some("0.0.0.0:4000".parse().unwrap())
        );
        assert!(!c.node.connect_to_new_peers);
    }

    #[test]
    fn booleans_as_witness_node_spells_them() {
        for (text, value) in [
            ("true", true),
            ("YES", true),
            ("on", true),
            ("1", true),
            ("", true),
            ("false", false),
            ("No", false),
            ("off", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool(text), Ok(value), "{text:?}");
        }
        assert!(parse_bool("maybe").is_err());
        let a = parse(&["--p2p-accept-incoming-connections", "off"]).unwrap();
        assert_eq!(a.p2p_accept_incoming_connections, Some(false));
    }

    #[test]
    fn old_names_are_hidden_aliases() {
        let a = parse(&[
            "--accept-incoming-connections",
            "false",
            "--connect-to-new-peers",
            "false",
            "--p2p-advertise-peer-algorithm",
            "exclude_list",
            "--p2p-advertise-peer-list",
            "10.0.0.1:1776",
        ])
        .unwrap();
        let c = a.to_runtime_config().unwrap();
        assert!(!c.node.accept_incoming_connections);
        assert!(!c.node.connect_to_new_peers);
        assert_eq!(
            c.node.advertise,
            AdvertiseAlgorithm::ExcludeList(vec!["10.0.0.1:1776".parse().unwrap()])
        );
        use clap::CommandFactory;
        let mut cmd = super::super::Cli::command();
        let help = cmd
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        for old in [
            "--accept-incoming-connections",
            "--connect-to-new-peers",
            "--p2p-advertise-peer-list",
        ] {
            assert!(!help.contains(old), "{old} shown in help");
        }
        for new in [
            "--p2p-accept-incoming-connections",
            "--p2p-connect-to-new-peers",
            "--p2p-advertise-peer-endpoint",
            "--p2p-exclude-peer-endpoint",
            "--p2p-inbound-endpoint",
            "-s, --seed-node",
            "-d, --data-dir",
        ] {
            assert!(help.contains(new), "{new} missing from help");
        }
    }

    #[test]
    fn list_and_exclude_list_take_their_own_endpoints() {
        let a = parse(&[
            "--p2p-advertise-peer-algorithm",
            "list",
            "--p2p-advertise-peer-endpoint",
            "10.0.0.1:1776",
            "--p2p-exclude-peer-endpoint",
            "10.0.0.2:1776",
        ])
        .unwrap();
        assert_eq!(
            a.to_runtime_config().unwrap().node.advertise,
            AdvertiseAlgorithm::List(vec!["10.0.0.1:1776".parse().unwrap()])
        );
        assert_eq!(a.ineffective_settings().len(), 1);
        let a = parse(&["--p2p-advertise-peer-algorithm=exclude_list"]).unwrap();
        let err = a.to_runtime_config().unwrap_err();
        assert!(err.0.contains("--p2p-exclude-peer-endpoint"), "{}", err.0);
        let err = parse(&["--p2p-advertise-peer-algorithm", "some"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("[possible values: all, nothing, list, exclude_list]"),
            "{err}"
        );
    }

    #[test]
    fn seed_nodes_as_a_json_array_of_host_names_or_addresses() {
        let a = parse(&["--seed-nodes", r#"["seed.example:1776", "127.0.0.1:1777"]"#]).unwrap();
        assert_eq!(
            a.to_runtime_config().unwrap().seed_nodes,
            ["seed.example:1776", "127.0.0.1:1777"]
        );
        assert!(parse(&["--seed-nodes", r#"["no-port"]"#]).is_err());
        assert!(parse(&["--seed-nodes", "127.0.0.1:1777"]).is_err());
        assert!(parse(&["-s", "127.0.0.1"]).is_err());
        assert!(parse(&["--p2p-endpoint", "[::1]:1776"]).is_err());
        assert!(parse(&["--max-connections", "0"]).is_err());
    }

    #[test]
    fn ini_config_file_and_precedence() {
        let text = "\
p2p-endpoint = 127.0.0.1:2000
seed-node = 127.0.0.1:2001
seed-node = 127.0.0.1:2002
max-connections = 7
p2p-accept-incoming-connections =
plugins = witness
";
        let c = with_config_named("ini", text, RunArgs::default()).unwrap();
        assert_eq!(c.p2p_endpoint, "127.0.0.1:2000".parse().unwrap());
        assert_eq!(c.seed_nodes, ["127.0.0.1:2001", "127.0.0.1:2002"]);
        assert_eq!(c.node.max_connections, 7);
        assert!(c.node.accept_incoming_connections);
        // The command line wins, and its list replaces the file's.
        let flags = parse(&["--max-connections", "9", "-s", "127.0.0.1:3000"]).unwrap();
        let c = with_config_named("ini", text, flags).unwrap();
        assert_eq!(c.node.max_connections, 9);
        assert_eq!(c.seed_nodes, ["127.0.0.1:3000"]);
        // Errors name the file, the line and the key.
        let err = with_config_named("ini", "\n\nmax-connections = many\n", RunArgs::default())
            .unwrap_err();
        assert!(err.0.contains(".ini line 3"), "{}", err.0);
        assert!(err.0.contains("max-connections"), "{}", err.0);
        let err = with_config_named(
            "ini",
            "ban-seconds = 1\nban-seconds = 2\n",
            RunArgs::default(),
        )
        .unwrap_err();
        assert!(
            err.0.contains("line 2") && err.0.contains("ban-seconds"),
            "{}",
            err.0
        );
    }

    #[test]
    fn toml_keeps_working_with_old_and_new_names() {
        let text = r#"
accept-incoming-connections = false
p2p-connect-to-new-peers = false
seed-node = ["127.0.0.1:2001", "host.example:2002"]
seed-nodes = ["127.0.0.1:2003"]
max-connections = 50
p2p-advertise-peer-algorithm = "exclude_list"
p2p-advertise-peer-list = ["10.0.0.1:1776"]
"#;
        let c = with_config(text, RunArgs::default()).unwrap();
        assert!(!c.node.accept_incoming_connections);
        assert!(!c.node.connect_to_new_peers);
        assert_eq!(
            c.seed_nodes,
            ["127.0.0.1:2001", "host.example:2002", "127.0.0.1:2003"]
        );
        assert_eq!(c.node.max_connections, 50);
        assert_eq!(
            c.node.advertise,
            AdvertiseAlgorithm::ExcludeList(vec!["10.0.0.1:1776".parse().unwrap()])
        );
        // Unknown keys in TOML stay errors, with their line.
        let err = with_config("\nno-such-key = 1\n", RunArgs::default()).unwrap_err();
        assert!(
            err.0.contains("no-such-key") && err.0.contains("line 2"),
            "{}",
            err.0
        );
        // A file without extension that is not TOML is read as INI.
        let c = with_config_named(
            "conf",
            "p2p-endpoint = 127.0.0.1:2000\n",
            RunArgs::default(),
        )
        .unwrap();
        assert_eq!(c.p2p_endpoint, "127.0.0.1:2000".parse().unwrap());
    }
}
