//! The `grapevine` command line.

pub mod codec;
pub mod config;
pub mod ini;
pub mod run;
pub mod status;

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

pub use codec::CliError;

/// Exit status for a usage or configuration error (clap's own status for bad arguments).
pub const EXIT_USAGE: u8 = 2;
/// Exit status for a failure at run time: a port that cannot be bound, a store that cannot be
/// opened, a node that stopped by itself, a status API that cannot be reached.
pub const EXIT_RUNTIME: u8 = 1;

/// Why a command failed, which decides its exit status.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments, input or configuration: exit [`EXIT_USAGE`].
    Usage(String),
    /// The command was right but could not be carried out: exit [`EXIT_RUNTIME`].
    Runtime(String),
}

impl Failure {
    /// The process exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Runtime(_) => EXIT_RUNTIME,
        }
    }

    fn runtime(e: CliError) -> Self {
        Failure::Runtime(e.0)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Runtime(m) => f.write_str(m),
        }
    }
}

impl From<CliError> for Failure {
    fn from(e: CliError) -> Self {
        Failure::Usage(e.0)
    }
}

/// A BitShares (graphene) peer-to-peer node.
#[derive(Debug, Parser)]
#[command(name = "grapevine", version, about, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode a framed message (or raw message data with --type) from hex into the reference's JSON.
    Inspect {
        /// Hex of one or more frames, or of raw message data with --type; stdin when absent or "-".
        hex: Option<String>,
        /// Treat the input as the data of one message of this type (e.g. 5006 for hello).
        #[arg(long = "type", value_name = "N")]
        msg_type: Option<u32>,
    },
    /// Run a node (until SIGINT or SIGTERM).
    Run(Box<run::RunArgs>),
    /// Show a running node's status (from its --rpc-endpoint).
    Info {
        /// The node's status API.
        #[arg(long, value_name = "IP:PORT", default_value = status::DEFAULT_RPC_ENDPOINT)]
        rpc_endpoint: SocketAddr,
    },
    /// List a running node's connections (from its --rpc-endpoint).
    Peers {
        /// The node's status API.
        #[arg(long, value_name = "IP:PORT", default_value = status::DEFAULT_RPC_ENDPOINT)]
        rpc_endpoint: SocketAddr,
    },
    /// List the addresses a running node has banned (from its --rpc-endpoint).
    Bans {
        /// The node's status API.
        #[arg(long, value_name = "IP:PORT", default_value = status::DEFAULT_RPC_ENDPOINT)]
        rpc_endpoint: SocketAddr,
    },
    /// Lift a running node's ban on an address (from its --rpc-endpoint).
    Unban {
        /// The banned IPv4 address.
        ip: std::net::Ipv4Addr,
        /// The node's status API.
        #[arg(long, value_name = "IP:PORT", default_value = status::DEFAULT_RPC_ENDPOINT)]
        rpc_endpoint: SocketAddr,
    },
    /// Hand a transaction (1000) or block (1001) to a running node, which relays it. Prints the
    /// node's answer (JSON: id, outcome, missing_parent, error); exits 0 only when the item was
    /// accepted, 1 when it was held, a duplicate, rejected or failed.
    Broadcast {
        /// 1000 for a transaction, 1001 for a block.
        #[arg(long = "type", value_name = "N")]
        msg_type: u32,
        /// Hex of the message data; stdin when absent or "-".
        hex: Option<String>,
        /// The node's status API.
        #[arg(long, value_name = "IP:PORT", default_value = status::DEFAULT_RPC_ENDPOINT)]
        rpc_endpoint: SocketAddr,
    },
    /// Encode the JSON printed by `inspect` back into hex.
    Encode {
        /// The JSON document (or array of documents); stdin when absent or "-".
        json: Option<String>,
        /// Print only the message data, without frame header and padding.
        #[arg(long)]
        data: bool,
    },
}

/// Runs a parsed command line. The caller prints a failure as one line and exits with its
/// [`Failure::exit_code`]; `broadcast` itself exits 1 when the node did not accept the item.
pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Info { rpc_endpoint } => {
            print!("{}", status::info(rpc_endpoint).map_err(Failure::runtime)?);
            Ok(())
        }
        Command::Peers { rpc_endpoint } => {
            print!("{}", status::peers(rpc_endpoint).map_err(Failure::runtime)?);
            Ok(())
        }
        Command::Bans { rpc_endpoint } => {
            print!("{}", status::bans(rpc_endpoint).map_err(Failure::runtime)?);
            Ok(())
        }
        Command::Unban { ip, rpc_endpoint } => {
            print!(
                "{}",
                status::unban(rpc_endpoint, ip).map_err(Failure::runtime)?
            );
            Ok(())
        }
        Command::Broadcast {
            msg_type,
            hex,
            rpc_endpoint,
        } => {
            if msg_type != 1000 && msg_type != 1001 {
                return Err(Failure::Usage(format!(
                    "--type must be 1000 or 1001, not {msg_type}"
                )));
            }
            let data = codec::parse_hex(&codec::arg_or_stdin(hex)?)?;
            let body = serde_json::json!({ "type": msg_type, "data": hex::encode(data) });
            let (code, answer) = status::post_json_any_status(rpc_endpoint, "/broadcast", &body)
                .map_err(Failure::runtime)?;
            let Some(outcome) = answer["outcome"].as_str() else {
                let detail = answer["error"].as_str().unwrap_or_default();
                return Err(Failure::Runtime(format!(
                    "status API answered {code} for /broadcast: {detail}"
                )));
            };
            println!("{answer}");
            if outcome != "accepted" {
                // The node did not take the item: a runtime outcome, exit 1.
                let why = answer["error"].as_str().unwrap_or_default();
                return Err(Failure::Runtime(format!("{outcome}: {why}")));
            }
            Ok(())
        }
        Command::Inspect { hex, msg_type } => {
            let bytes = codec::parse_hex(&codec::arg_or_stdin(hex)?)?;
            let doc = codec::inspect(&bytes, msg_type)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).map_err(CliError::from)?
            );
            Ok(())
        }
        Command::Encode { json, data } => {
            let text = codec::arg_or_stdin(json)?;
            let doc: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Failure::Usage(format!("input is not JSON: {e}")))?;
            println!("{}", hex::encode(codec::encode(&doc, data)?));
            Ok(())
        }
    }
}
