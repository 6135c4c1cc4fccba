//! The `grapevine` command line.

pub mod codec;
pub mod run;
pub mod status;

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

pub use codec::CliError;

/// A BitShares (graphene) peer-to-peer node.
#[derive(Debug, Parser)]
#[command(name = "grapevine", version, about)]
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

/// Runs a parsed command line. Errors are reported by the caller as one line with exit 2;
/// `broadcast` itself exits 1 when the node did not accept the item.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Info { rpc_endpoint } => {
            print!("{}", status::info(rpc_endpoint)?);
            Ok(())
        }
        Command::Peers { rpc_endpoint } => {
            print!("{}", status::peers(rpc_endpoint)?);
            Ok(())
        }
        Command::Bans { rpc_endpoint } => {
            print!("{}", status::bans(rpc_endpoint)?);
            Ok(())
        }
        Command::Unban { ip, rpc_endpoint } => {
            print!("{}", status::unban(rpc_endpoint, ip)?);
            Ok(())
        }
        Command::Broadcast {
            msg_type,
            hex,
            rpc_endpoint,
        } => {
            if msg_type != 1000 && msg_type != 1001 {
                return Err(CliError(format!(
                    "--type must be 1000 or 1001, not {msg_type}"
                )));
            }
            let data = codec::parse_hex(&codec::arg_or_stdin(hex)?)?;
            let body = serde_json::json!({ "type": msg_type, "data": hex::encode(data) });
            let (code, answer) = status::post_json_any_status(rpc_endpoint, "/broadcast", &body)?;
            let Some(outcome) = answer["outcome"].as_str() else {
                let detail = answer["error"].as_str().unwrap_or_default();
                return Err(CliError(format!(
                    "status API answered {code} for /broadcast: {detail}"
                )));
            };
            println!("{answer}");
            if outcome != "accepted" {
                // A runtime outcome, not a usage error: exit 1 (errors above exit 2).
                let why = answer["error"].as_str().unwrap_or_default();
                eprintln!("grapevine: {outcome}: {why}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Inspect { hex, msg_type } => {
            let bytes = codec::parse_hex(&codec::arg_or_stdin(hex)?)?;
            let doc = codec::inspect(&bytes, msg_type)?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
        Command::Encode { json, data } => {
            let text = codec::arg_or_stdin(json)?;
            let doc: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| CliError(format!("input is not JSON: {e}")))?;
            println!("{}", hex::encode(codec::encode(&doc, data)?));
            Ok(())
        }
    }
}
